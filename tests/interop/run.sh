#!/usr/bin/env bash
# Interoperability test of Sekimori's OAuth/OIDC token lifecycle with openid-client v6.
#
# Starts a throw-away Sekimori (SQLite in a temp dir, demo data, free ports), registers the
# confidential client interop-rp whose redirect, post-logout and back-channel logout URIs point
# at a relying party on another free port, and runs lifecycle.test.mjs: the test starts that
# relying party itself and drives code flow, refresh rotation, introspection, revocation,
# client_credentials and RP-initiated / back-channel logout with openid-client and jose.
# Builds nothing: build the binary first (`cargo build`), or point SEKIMORI_BIN at one.
#
# Needs: node >= 20 and npm, curl.
#
# Env: SEKIMORI_BIN       the sekimori binary (default ../../target/debug/sekimori)
#      KEEP_TMP=1         keep the temp dir (database, logs) for inspection
# Exit status: the test run's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${SEKIMORI_BIN:-$here/../../target/debug/sekimori}"

die() { echo "run.sh: $*" >&2; exit 2; }

[[ -x "$bin" ]] || die "no sekimori binary at $bin (run 'cargo build' or set SEKIMORI_BIN)"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
command -v node >/dev/null || die "node is not installed"
command -v curl >/dev/null || die "curl is not installed"
if [[ ! -d "$here/node_modules/openid-client" || ! -d "$here/node_modules/jose" ]]; then
  echo "run.sh: installing openid-client and jose from package-lock.json" >&2
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sekimori-interop.XXXXXX")"
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

# Three free ports (Sekimori's public and admin listeners, the test's relying party): bind to
# port 0 and let the kernel choose.
ports="$(node -e '
  const net = require("node:net");
  const grab = () => new Promise((ok) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => ok(s)); });
  Promise.all([grab(), grab(), grab()]).then((ss) => { console.log(ss.map((s) => s.address().port).join(" ")); ss.forEach((s) => s.close()); });
')" || die "could not find free ports"
read -r public_port admin_port rp_port <<<"$ports"
[[ -n "$public_port" && -n "$admin_port" && -n "$rp_port" ]] || die "could not find free ports"

export SEKIMORI_DATABASE_URL="sqlite:$tmp/s.db"
export SEKIMORI_MASTER_KEY_FILE="$tmp/master.key"
export SEKIMORI_PUBLIC_ADDR="127.0.0.1:$public_port"
export SEKIMORI_ADMIN_ADDR="127.0.0.1:$admin_port"
export SEKIMORI_ISSUER="http://127.0.0.1:$public_port"
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
login=tanaka.kenichi
password="$(password_of "$login")"
if [[ -z "$password" ]]; then
  sed -E 's/^(  [a-z0-9._-]+ +)[^ ]+/\1********/' "$tmp/demo.txt" >&2
  die "could not find $login in the demo output above"
fi

# The relying party under test: a confidential client (client_secret_basic) with every grant
# and URI the lifecycle needs.
rp_url="http://127.0.0.1:$rp_port"
if ! timeout 60 "$bin" client add --name "Interop RP" --client-id interop-rp \
      --redirect-uri "$rp_url/callback" \
      --post-logout-redirect-uri "$rp_url/logged-out" \
      --backchannel-logout-uri "$rp_url/backchannel" \
      --grant-type authorization_code --grant-type refresh_token --grant-type client_credentials \
      --scope openid --scope profile --scope email --scope offline_access \
      --service-scope interop.read \
      >"$tmp/client.txt" 2>"$tmp/client.log"; then
  cat "$tmp/client.log" >&2
  die "'sekimori client add' failed"
fi
# Lines look like "client_id:     interop-rp" and "client_secret: <secret>   (shown only now)".
client_id="$(awk '$1 == "client_id:" { print $2; exit }' "$tmp/client.txt")"
client_secret="$(awk '$1 == "client_secret:" { print $2; exit }' "$tmp/client.txt")"
if [[ "$client_id" != interop-rp || -z "$client_secret" ]]; then
  sed -E 's/^(client_secret: *)[^ ]+/\1********/' "$tmp/client.txt" >&2
  die "could not find client_id interop-rp and its client_secret in the output above"
fi

"$bin" serve >"$tmp/server.out" 2>"$tmp/server.log" &
server_pid=$!

public_url="http://127.0.0.1:$public_port"
deadline=$((SECONDS + 30))
until curl -fsS --max-time 2 -o /dev/null "$public_url/health" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || die "'sekimori serve' exited before it was healthy"
  ((SECONDS < deadline)) || die "'sekimori serve' was not healthy on $public_url/health within 30 s"
  sleep 0.2
done
echo "run.sh: sekimori serving on $public_url (pid $server_pid); relying party on $rp_url" >&2

cd "$here"
# In the background so that a signal reaches the trap at once rather than after the tests.
SEKIMORI_TEST_ISSUER="$public_url" \
SEKIMORI_TEST_CLIENT_ID="$client_id" SEKIMORI_TEST_CLIENT_SECRET="$client_secret" \
SEKIMORI_TEST_RP_PORT="$rp_port" \
SEKIMORI_TEST_LOGIN="$login" SEKIMORI_TEST_PASSWORD="$password" \
  timeout 300 npm test --silent &
test_pid=$!
status=0
wait "$test_pid" || status=$?
test_pid=""
if [[ $status -eq 124 ]]; then
  echo "run.sh: the tests did not finish within 300 s" >&2
fi
exit "$status"
