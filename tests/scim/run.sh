#!/usr/bin/env bash
# The SCIM 2.0 service (/scim/v2 on the admin listener) checked by scim2-tester (PyPI), an
# independent SCIM compliance tester: discovery, then create, read, list, search with
# attributes, replace, delete and PATCH add/remove/replace on every attribute of Users and
# Groups, against a throw-away Sekimori (SQLite in a temp dir, demo data, free ports) with an
# HR feed token. Fails on any check that does not succeed.
#
# Builds nothing: build the binary first (`cargo build`), or point SEKIMORI_BIN at one.
#
# Needs: scim2-tester with its httpx2 extra (`pip install "scim2-tester[httpx2]==0.5.2"`), node, curl.
#
# Env: SEKIMORI_BIN       the sekimori binary (default ../../target/debug/sekimori)
#      KEEP_TMP=1         keep the temp dir (database, logs) for inspection
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/server.sh
source "$here/../lib/server.sh"

find_sekimori_bin
require_commands python3 node curl
python3 -c 'import scim2_tester' 2>/dev/null || die 'scim2-tester is not installed (pip install "scim2-tester[httpx2]==0.5.2")'

make_temp_dir sekimori-scim
choose_free_ports public_port admin_port
public_url="http://127.0.0.1:$public_port"
admin_url="http://127.0.0.1:$admin_port"
export_server_env "$public_url"
seed_demo
start_server
bootstrap_admin_token "scim2-tester"
# The HR feed's token belongs to the person who owns the feed (人事連携担当).
grant_admin_role ito.naoko hr_feed_owner
owned_token feed_token ito.naoko "HR feed (scim2-tester)" hr:feed
echo "run.sh: SCIM service on $admin_url/scim/v2 (pid $server_pid)" >&2

timeout 600 python3 "$here/check.py" "$admin_url/scim/v2" "$feed_token"
