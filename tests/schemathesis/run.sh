#!/usr/bin/env bash
# The admin API fuzzed from openapi.yaml with schemathesis (PyPI): thousands of generated
# requests, valid and invalid, against a throw-away Sekimori (SQLite in a temp dir, demo
# data, free ports), in two runs: the access records and reports with an auditor's token, everything else with
# the token of a person holding every other administrative role (the auditor's role is held
# alone: 江戸川区 基準 第30条). It fails on any 5xx, on a response
# (status, content type, headers, body) that openapi.yaml does not describe, and on a request
# that breaks the schema but is accepted.
#
# Not checked: "a schema-valid request was refused". The schema cannot say every rule (a
# password's strength, a kana reading, an org unit that must exist), and a documented 4xx for
# those is right.
#
# Builds nothing: build the binary first (`cargo build`), or point SEKIMORI_BIN at one.
#
# Needs: schemathesis (`pip install schemathesis==4.32.5`), node, curl.
#
# Env: SEKIMORI_BIN       the sekimori binary (default ../../target/debug/sekimori)
#      EXAMPLES           examples per operation (default 100)
#      KEEP_TMP=1         keep the temp dir (database, logs, report) for inspection
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/server.sh
source "$here/../lib/server.sh"

find_sekimori_bin
require_commands python3 node curl
# As a module: a fresh pip install may not have put its script on PATH yet (pyenv shims).
python3 -m schemathesis.cli --version >/dev/null 2>&1 || die "schemathesis is not installed (pip install schemathesis==4.32.5)"

make_temp_dir sekimori-schemathesis
choose_free_ports public_port admin_port
public_url="http://127.0.0.1:$public_port"
admin_url="http://127.0.0.1:$admin_port"
export_server_env "$public_url"
seed_demo
start_server
bootstrap_admin_token "schemathesis"
grant_admin_role yamada.taro security_manager system_admin directory_clerk hotline_operator hr_feed_owner
owned_token admin_token yamada.taro "schemathesis" directory:read directory:write clients:read clients:write \
  tokens:write passwords:reset keys:read keys:write hotline authenticators:enroll hr:admin access:admin \
  metrics:read admin-roles:grant emergency:stop
grant_admin_role ito.naoko auditor
owned_token auditor_token ito.naoko "schemathesis (auditor)" audit:read reports:read
echo "run.sh: sekimori admin API on $admin_url (pid $server_pid)" >&2

status=0
# In the temp dir, so that nothing schemathesis keeps lands in the checkout.
cd "$tmp"
fuzz() {
  local token="$1" report="$2"
  shift 2
  timeout 900 python3 -m schemathesis.cli run "$here/../../openapi.yaml" \
    --url "$admin_url" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --exclude-checks positive_data_acceptance,ignored_auth,ensure_resource_availability \
    --max-examples "${EXAMPLES:-100}" \
    --seed 20261201 \
    --no-color "$@" >"$report" 2>&1
}
# The auditor's run first: the other one may stop people and revoke tokens, the auditor's too.
fuzz "$auditor_token" "$tmp/report-audit.txt" --include-tag audit --include-tag reports || status=$?
# The reports name the token only as [Filtered].
tail -n 30 "$tmp/report-audit.txt"
fuzz "$admin_token" "$tmp/report.txt" --exclude-tag audit --exclude-tag reports || status=$?
grep -B2 -A25 '^_\+ ' "$tmp/report.txt" | head -n 150 || true
tail -n 60 "$tmp/report.txt"
exit "$status"
