#!/usr/bin/env bash
# Starts the peer OpenID Provider (node-oidc-provider, in memory, one process) in the foreground,
# installing it from package-lock.json first if needed. The process becomes node itself (exec),
# so its pid is the server's (for the load tool's --pid).
#
#   PEER_CLIENT_SECRET=… benches/peer/run.sh            # opaque access tokens
#   PEER_CLIENT_SECRET=… benches/peer/run.sh jwt        # client_credentials tokens as JWTs
#
# Env: see server.js (PEER_PORT, PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_REDIRECT_URI,
# PEER_SERVICE_SCOPE). Needs node >= 20.19 and npm (oidc-provider warns that it prefers 22).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v node >/dev/null || { echo "run.sh: node is not installed" >&2; exit 2; }
if [[ ! -d "$here/node_modules/oidc-provider" ]]; then
  echo "run.sh: installing oidc-provider from package-lock.json" >&2
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi
case "${1:-opaque}" in
  opaque | jwt) export PEER_ACCESS_TOKEN_FORMAT="${1:-opaque}" ;;
  *) echo "run.sh: the argument is opaque or jwt" >&2; exit 2 ;;
esac
cd "$here"
exec node server.js
