# Shared by tests/browser/run.sh and tests/interop/run.sh (and benches/load.sh): a throw-away
# Sekimori (SQLite in a temp dir, demo data, free ports) for a test run, and the cleanup that
# stops it.
#
# Sourced, not run: the caller has `set -euo pipefail` on and sets `here` (its own directory)
# before sourcing. Every message starts with "run.sh:", as the caller's own. The functions, in
# the order a run.sh calls them:
#
#   die MESSAGE...             print "run.sh: MESSAGE" on stderr and exit 2.
#   find_sekimori_bin          reads SEKIMORI_BIN (default $here/../../target/debug/sekimori);
#                              dies unless it is executable; sets `bin` to its absolute path.
#   require_commands CMD...    dies with "CMD is not installed" for the first CMD not on PATH.
#   make_temp_dir PREFIX       sets `tmp` to a new dir ${TMPDIR:-/tmp}/PREFIX.XXXXXX, sets
#                              `server_pid` and `test_pid` empty and traps EXIT (cleanup_on_exit),
#                              INT (exit 130) and TERM (exit 143).
#   cleanup_on_exit            the EXIT trap: stops the test run (`test_pid`), then the server
#                              (`server_pid`: TERM, up to 5 s, then KILL); on a non-zero status
#                              prints the last 40 lines of $tmp/server.log; removes `tmp` unless
#                              KEEP_TMP=1; exits with the status it was called with.
#   choose_free_ports VAR...   sets each VAR to a free port on 127.0.0.1 (node binds to port 0).
#   export_server_env ISSUER   exports the SEKIMORI_* environment of a server in `tmp` listening
#                              on `public_port` and `admin_port` with issuer ISSUER; unsets
#                              SEKIMORI_CONFIG and SEKIMORI_MASTER_KEY; keeps a caller's
#                              SEKIMORI_LOG; exports NO_COLOR=1.
#   seed_demo                  runs `$bin demo`: its output (one-time passwords) in $tmp/demo.txt.
#   password_of LOGIN          prints the demo password of LOGIN (nothing if not found).
#   name_of LOGIN              prints the demo display name of LOGIN (nothing if not found).
#   die_showing_demo MESSAGE   prints $tmp/demo.txt with the passwords masked, then dies.
#   start_server               starts `$bin serve` (stdout $tmp/server.out, stderr
#                              $tmp/server.log), sets `server_pid` and waits up to 30 s for
#                              http://127.0.0.1:$public_port/health; names `public_url` in its
#                              messages.
#   bootstrap_admin_token NAME exchanges the one-time bootstrap code that `serve` printed on a
#                              fresh database for the day-long bootstrap token (the security
#                              manager's rights and what setting up needs); sets `admin_token`.
#                              Needs `admin_url`.
#   grant_admin_role LOGIN ROLE... with `admin_token`, makes the demo person LOGIN hold each
#                              administrative ROLE (security_manager, auditor, …) for 30 days.
#   owned_token VAR LOGIN NAME SCOPE...  issues with `$bin token create` an API token owned by
#                              LOGIN carrying SCOPE...; sets VAR to it.
#   run_tests NAME=VALUE...    in `here`, runs `timeout 300 npm test --silent` with NAME=VALUE
#                              added to its environment, in the background (`test_pid`) so that
#                              a signal reaches the trap at once; exits with its status.

die() { echo "run.sh: $*" >&2; exit 2; }

find_sekimori_bin() {
  bin="${SEKIMORI_BIN:-$here/../../target/debug/sekimori}"
  [[ -x "$bin" ]] || die "no sekimori binary at $bin (run 'cargo build' or set SEKIMORI_BIN)"
  bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

require_commands() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || die "$cmd is not installed"
  done
}

make_temp_dir() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  server_pid=""
  test_pid=""
  trap cleanup_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

cleanup_on_exit() {
  local status=$?
  # The test run first (on a signal it may still be going), then the server.
  if [[ -n "$test_pid" ]] && kill -0 "$test_pid" 2>/dev/null; then
    kill "$test_pid" 2>/dev/null || true
    wait "$test_pid" 2>/dev/null || true
  fi
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    # Give it a few seconds to shut down cleanly, then insist.
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -s "$tmp/server.log" ]]; then
    echo "---- last lines of the server log ($tmp/server.log) ----" >&2
    tail -n 40 "$tmp/server.log" >&2 || true
  fi
  if [[ "${KEEP_TMP:-}" == 1 ]]; then
    echo "run.sh: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}

choose_free_ports() {
  local ports var
  # Bind $# servers to port 0 at once (so the ports differ), print the ports, close them.
  ports="$(node -e '
    const net = require("node:net");
    const grab = () => new Promise((ok) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => ok(s)); });
    Promise.all(Array.from({ length: Number(process.argv[1]) }, grab)).then((ss) => { console.log(ss.map((s) => s.address().port).join(" ")); ss.forEach((s) => s.close()); });
  ' "$#")" || die "could not find free ports"
  read -r "$@" <<<"$ports"
  for var in "$@"; do
    [[ -n "${!var}" ]] || die "could not find free ports"
  done
}

export_server_env() {
  export SEKIMORI_DATABASE_URL="sqlite:$tmp/s.db"
  export SEKIMORI_MASTER_KEY_FILE="$tmp/master.key"
  export SEKIMORI_PUBLIC_ADDR="127.0.0.1:$public_port"
  export SEKIMORI_ADMIN_ADDR="127.0.0.1:$admin_port"
  export SEKIMORI_ISSUER="$1"
  unset SEKIMORI_CONFIG SEKIMORI_MASTER_KEY
  export SEKIMORI_LOG="${SEKIMORI_LOG:-info,sqlx=warn}"
  export NO_COLOR=1
}

# Seed the demo municipality; its stdout has the one-time passwords (kept in the temp dir only).
seed_demo() {
  if ! timeout 120 "$bin" demo >"$tmp/demo.txt" 2>"$tmp/demo.log"; then
    cat "$tmp/demo.log" >&2
    die "'sekimori demo' failed"
  fi
}

# Logins look like "  tanaka.kenichi       <password>  田中 健一".
password_of() {
  awk -v login="$1" '/^  [a-z0-9._-]+ +[^ ]+  / && $1 == login { print $2; exit }' "$tmp/demo.txt"
}
name_of() {
  awk -v login="$1" '/^  [a-z0-9._-]+ +[^ ]+  / && $1 == login { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' "$tmp/demo.txt"
}
die_showing_demo() {
  sed -E 's/^(  [a-z0-9._-]+ +)[^ ]+/\1********/' "$tmp/demo.txt" >&2
  die "$@"
}

start_server() {
  local deadline
  "$bin" serve >"$tmp/server.out" 2>"$tmp/server.log" &
  server_pid=$!
  deadline=$((SECONDS + 30))
  # Health through the listening address itself, whatever the issuer's host resolves to first.
  until curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$public_port/health" 2>/dev/null; do
    kill -0 "$server_pid" 2>/dev/null || die "'sekimori serve' exited before it was healthy"
    ((SECONDS < deadline)) || die "'sekimori serve' was not healthy on $public_url/health within 30 s"
    sleep 0.2
  done
}

bootstrap_admin_token() {
  local code answer
  # The indented line after "No administrator yet" in serve's output.
  code="$(awk '/^No administrator yet/ { getline; sub(/^  /, ""); print; exit }' "$tmp/server.out")"
  if [[ -z "$code" ]]; then
    cat "$tmp/server.out" >&2
    die "no bootstrap code in the output of 'sekimori serve' above"
  fi
  answer="$(curl -sS --max-time 10 -X POST "$admin_url/api/v1/bootstrap" \
    -H 'Content-Type: application/json' -d "{\"code\":\"$code\",\"name\":\"$1\"}")" \
    || die "POST $admin_url/api/v1/bootstrap failed"
  admin_token="$(node -e '
    try { const t = JSON.parse(process.argv[1]).token; if (t) console.log(t); } catch {}
  ' "$answer")"
  [[ -n "$admin_token" ]] || die "POST /api/v1/bootstrap answered without a token: $answer"
}

run_tests() {
  local status=0
  cd "$here"
  # In the background so that a signal reaches the trap at once rather than after the tests.
  (export "$@"; exec timeout 300 npm test --silent) &
  test_pid=$!
  wait "$test_pid" || status=$?
  test_pid=""
  if [[ $status -eq 124 ]]; then
    echo "run.sh: the tests did not finish within 300 s" >&2
  fi
  exit "$status"
}

grant_admin_role() {
  local login="$1" role answer person end
  shift
  answer="$(curl -sS --max-time 10 "$admin_url/api/v1/people?q=$login" -H "Authorization: Bearer $admin_token")" \
    || die "GET /api/v1/people?q=$login failed"
  person="$(node -e '
    try { const p = JSON.parse(process.argv[1]).items[0]; if (p) console.log(p.id); } catch {}
  ' "$answer")"
  [[ -n "$person" ]] || die "no person with login ID $login: $answer"
  end="$(node -e 'console.log(new Date(Date.now() + 9 * 3600e3 + 30 * 86400e3).toISOString().slice(0, 10))')"
  for role in "$@"; do
    answer="$(curl -sS --max-time 10 -X POST "$admin_url/api/v1/admin-roles/grants" \
      -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' \
      -d "{\"person_id\":\"$person\",\"role\":\"$role\",\"end_date\":\"$end\",\"reason\":\"test run\"}")" \
      || die "POST /api/v1/admin-roles/grants failed"
    [[ "$answer" == *'"grant_id"'* || "$answer" == *"\"role\":\"$role\""* ]] || die "could not grant $role to $login: $answer"
  done
}

owned_token() {
  local var="$1" login="$2" name="$3" args=() output
  shift 3
  for scope in "$@"; do args+=(--scope "$scope"); done
  output="$(timeout 60 "$bin" token create --owner "$login" --name "$name" "${args[@]}" 2>&1)" \
    || die "'sekimori token create' for $login failed: $output"
  printf -v "$var" '%s' "$(awk '/^  skm_/ { print $1; exit }' <<<"$output")"
  [[ -n "${!var}" ]] || die "no token in the output of 'sekimori token create': $output"
}
