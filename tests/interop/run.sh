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
# shellcheck source=../lib/server.sh
source "$here/../lib/server.sh"

find_sekimori_bin
require_commands node curl
if [[ ! -d "$here/node_modules/openid-client" || ! -d "$here/node_modules/jose" ]]; then
  echo "run.sh: installing openid-client and jose from package-lock.json" >&2
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi

make_temp_dir sekimori-interop
# Sekimori's public and admin listeners, and the test's relying party.
choose_free_ports public_port admin_port rp_port
public_url="http://127.0.0.1:$public_port"
export_server_env "$public_url"
seed_demo

login=tanaka.kenichi
password="$(password_of "$login")"
[[ -n "$password" ]] || die_showing_demo "could not find $login in the demo output above"

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

start_server
echo "run.sh: sekimori serving on $public_url (pid $server_pid); relying party on $rp_url" >&2

run_tests \
  SEKIMORI_TEST_ISSUER="$public_url" \
  SEKIMORI_TEST_CLIENT_ID="$client_id" SEKIMORI_TEST_CLIENT_SECRET="$client_secret" \
  SEKIMORI_TEST_RP_PORT="$rp_port" \
  SEKIMORI_TEST_LOGIN="$login" SEKIMORI_TEST_PASSWORD="$password"
