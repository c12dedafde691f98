#!/usr/bin/env bash
# Real-browser end-to-end tests of Sekimori's login page and IC cards.
#
# Starts a throw-away Sekimori (SQLite in a temp dir, demo data, free ports), then drives
# headless Debian Chromium through the login flow (login.test.mjs) and through card
# enrollment, card login and the lost-card hotline with a CDP virtual authenticator
# (cards.test.mjs), with playwright-core.
# Builds nothing: build the binary first (`cargo build`), or point SEKIMORI_BIN at one.
#
# Needs: node >= 20 and npm, /usr/bin/chromium (`apt-get install -y chromium`), and for
# legible screenshots a Japanese font (`apt-get install -y fonts-ipafont-gothic`).
#
# Env: SEKIMORI_BIN       the sekimori binary (default ../../target/debug/sekimori)
#      CHROMIUM_PATH      the browser (default /usr/bin/chromium)
#      KEEP_TMP=1         keep the temp dir (database, logs) for inspection
# Exit status: the test run's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${SEKIMORI_BIN:-$here/../../target/debug/sekimori}"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"

die() { echo "run.sh: $*" >&2; exit 2; }

[[ -x "$bin" ]] || die "no sekimori binary at $bin (run 'cargo build' or set SEKIMORI_BIN)"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
[[ -x "$chromium" ]] || die "no browser at $chromium (apt-get install -y chromium)"
command -v node >/dev/null || die "node is not installed"
command -v curl >/dev/null || die "curl is not installed"
if command -v fc-list >/dev/null && [[ -z "$(fc-list :lang=ja 2>/dev/null)" ]]; then
  echo "run.sh: warning: no Japanese font installed; screenshots will show boxes" \
       "(apt-get install -y fonts-ipafont-gothic, or fonts-noto-cjk)" >&2
fi
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "run.sh: installing playwright-core from package-lock.json" >&2
  # playwright-core downloads no browser; we use the system Chromium.
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sekimori-browser.XXXXXX")"
server_pid=""
test_pid=""
cleanup() {
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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two free ports: bind to port 0 and let the kernel choose.
ports="$(node -e '
  const net = require("node:net");
  const grab = () => new Promise((ok) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => ok(s)); });
  Promise.all([grab(), grab()]).then((ss) => { console.log(ss.map((s) => s.address().port).join(" ")); ss.forEach((s) => s.close()); });
')" || die "could not find free ports"
read -r public_port admin_port <<<"$ports"
[[ -n "$public_port" && -n "$admin_port" ]] || die "could not find free ports"

export SEKIMORI_DATABASE_URL="sqlite:$tmp/s.db"
export SEKIMORI_MASTER_KEY_FILE="$tmp/master.key"
export SEKIMORI_PUBLIC_ADDR="127.0.0.1:$public_port"
export SEKIMORI_ADMIN_ADDR="127.0.0.1:$admin_port"
# WebAuthn needs a domain as relying party ID, not an IP address: the issuer (and so the
# pages' origin) is http://localhost, which browsers also treat as a secure context.
export SEKIMORI_ISSUER="http://localhost:$public_port"
unset SEKIMORI_CONFIG SEKIMORI_MASTER_KEY
export SEKIMORI_LOG="${SEKIMORI_LOG:-info,sqlx=warn}"
export NO_COLOR=1

# Seed the demo municipality; its stdout has the one-time passwords (kept in the temp dir only).
if ! timeout 120 "$bin" demo >"$tmp/demo.txt" 2>"$tmp/demo.log"; then
  cat "$tmp/demo.log" >&2
  die "'sekimori demo' failed"
fi
# Logins look like "  tanaka.kenichi       <password>  田中 健一".
password_of() {
  awk -v login="$1" '/^  [a-z0-9._-]+ +[^ ]+  / && $1 == login { print $2; exit }' "$tmp/demo.txt"
}
name_of() {
  awk -v login="$1" '/^  [a-z0-9._-]+ +[^ ]+  / && $1 == login { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' "$tmp/demo.txt"
}
# The login tests use the first two; the card tests enroll cards for the other two (a card
# makes every later password login ask for it, so they are kept apart).
login1=tanaka.kenichi
login2=sato.hanako
login3=suzuki.ichiro
login4=takahashi.misaki
password1="$(password_of "$login1")"
password2="$(password_of "$login2")"
password3="$(password_of "$login3")"
password4="$(password_of "$login4")"
name3="$(name_of "$login3")"
name4="$(name_of "$login4")"
if [[ -z "$password1" || -z "$password2" || -z "$password3" || -z "$password4" || -z "$name3" || -z "$name4" ]]; then
  sed -E 's/^(  [a-z0-9._-]+ +)[^ ]+/\1********/' "$tmp/demo.txt" >&2
  die "could not find $login1, $login2, $login3 and $login4 (with their names) in the demo output above"
fi
grep -q 'client_id=toshokan .*redirect_uri=http://127.0.0.1:9002/callback' "$tmp/demo.txt" \
  || die "the demo did not register the public client toshokan with redirect_uri http://127.0.0.1:9002/callback"

"$bin" serve >"$tmp/server.out" 2>"$tmp/server.log" &
server_pid=$!

public_url="http://localhost:$public_port"
admin_url="http://127.0.0.1:$admin_port"
deadline=$((SECONDS + 30))
# Health through the listening address itself, whatever "localhost" resolves to first.
until curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$public_port/health" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || die "'sekimori serve' exited before it was healthy"
  ((SECONDS < deadline)) || die "'sekimori serve' was not healthy on $public_url/health within 30 s"
  sleep 0.2
done
echo "run.sh: sekimori serving on $public_url, admin on $admin_url (pid $server_pid)" >&2

# The fresh database has no administrator: serve printed a one-time bootstrap code (the
# indented line after "No administrator yet"); exchange it for a token with every scope.
bootstrap_code="$(awk '/^No administrator yet/ { getline; sub(/^  /, ""); print; exit }' "$tmp/server.out")"
if [[ -z "$bootstrap_code" ]]; then
  cat "$tmp/server.out" >&2
  die "no bootstrap code in the output of 'sekimori serve' above"
fi
bootstrap_answer="$(curl -sS --max-time 10 -X POST "$admin_url/api/v1/bootstrap" \
  -H 'Content-Type: application/json' \
  -d "{\"code\":\"$bootstrap_code\",\"name\":\"browser test\"}")" \
  || die "POST $admin_url/api/v1/bootstrap failed"
admin_token="$(node -e '
  try { const t = JSON.parse(process.argv[1]).token; if (t) console.log(t); } catch {}
' "$bootstrap_answer")"
[[ -n "$admin_token" ]] || die "POST /api/v1/bootstrap answered without a token: $bootstrap_answer"

cd "$here"
# In the background so that a signal reaches the trap at once rather than after the tests.
SEKIMORI_TEST_URL="$public_url" \
SEKIMORI_TEST_LOGIN="$login1" SEKIMORI_TEST_PASSWORD="$password1" \
SEKIMORI_TEST_LOGIN2="$login2" SEKIMORI_TEST_PASSWORD2="$password2" \
SEKIMORI_TEST_LOGIN3="$login3" SEKIMORI_TEST_PASSWORD3="$password3" SEKIMORI_TEST_NAME3="$name3" \
SEKIMORI_TEST_LOGIN4="$login4" SEKIMORI_TEST_PASSWORD4="$password4" SEKIMORI_TEST_NAME4="$name4" \
SEKIMORI_TEST_ADMIN_URL="$admin_url" SEKIMORI_TEST_ADMIN_TOKEN="$admin_token" \
CHROMIUM_PATH="$chromium" \
  timeout 300 npm test --silent &
test_pid=$!
status=0
wait "$test_pid" || status=$?
test_pid=""
if [[ $status -eq 124 ]]; then
  echo "run.sh: the tests did not finish within 300 s" >&2
fi
exit "$status"
