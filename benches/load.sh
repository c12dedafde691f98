#!/usr/bin/env bash
# Side by side: the load tool (examples/load.rs) against Sekimori on SQLite, Sekimori on
# PostgreSQL, and a peer OpenID Provider anyone can install from npm (node-oidc-provider, in
# memory, one process: benches/peer/) with opaque and with JWT client_credentials tokens.
# The four runs alternate, LOAD_ROUNDS times; each starts its server fresh, registers the load
# client, runs every phase with --pid, and stops the server. At the end, per endpoint: the
# median requests/s of each server and the ratios Sekimori/peer, then p99 latency, errors and
# the servers' memory.
#
#   benches/load.sh                                   # release build, 32 connections, 10 s a phase
#   LOAD_SECONDS=20 LOAD_ROUNDS=3 benches/load.sh
#   LOAD_PROFILE=debug LOAD_SECONDS=2 LOAD_CONNECTIONS=4 benches/load.sh   # a quick check
#
# introspection_service is not run against peer-jwt, which does not introspect its JWT tokens.
#
# Env: LOAD_SECONDS (10), LOAD_CONNECTIONS (32), LOAD_ROUNDS (1),
#      LOAD_TARGETS ("sqlite postgres peer-opaque peer-jwt", any subset, in the order run),
#      LOAD_PHASES (the load tool's --phases; default all),
#      LOAD_PROFILE (release, or debug: which build of sekimori and the load tool),
#      LOAD_BUILD (1; 0 uses the binaries already built),
#      SEKIMORI_BIN (the sekimori binary to measure; default the build above),
#      LOAD_POSTGRES_URL (postgres://postgres@127.0.0.1:5432: the database sekimori_load there
#      is dropped and created anew for every PostgreSQL run), KEEP_TMP=1 keeps the temp dir.
# Needs: cargo, node >= 20.19 and npm, curl, psql (for the PostgreSQL runs).
# Exit status: 1 when a run had errors (the tables show them), 2 when a server could not be run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=../tests/lib/server.sh
source "$root/tests/lib/server.sh"
# Its messages, this script's name.
die() { echo "load.sh: $*" >&2; exit 2; }

seconds="${LOAD_SECONDS:-10}"
connections="${LOAD_CONNECTIONS:-32}"
rounds="${LOAD_ROUNDS:-1}"
targets="${LOAD_TARGETS:-sqlite postgres peer-opaque peer-jwt}"
phases="${LOAD_PHASES:-discovery,jwks,client_credentials,refresh,introspection,introspection_many,introspection_service,userinfo,password_login}"
profile="${LOAD_PROFILE:-release}"
postgres="${LOAD_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
redirect_uri="http://127.0.0.1:9009/callback"
service_scope="load.read"

case "$profile" in
  release) build_flag=(--release) ;;
  debug) build_flag=() ;;
  *) die "LOAD_PROFILE is release or debug" ;;
esac
require_commands cargo node curl
[[ "$targets" != *postgres* ]] || require_commands psql
if [[ "${LOAD_BUILD:-1}" == 1 ]]; then
  (cd "$root" && nice -n 10 cargo build "${build_flag[@]}" --bin sekimori --example load)
fi
# SEKIMORI_BIN may name another build (say, an earlier commit's) to measure it with the same tool.
SEKIMORI_BIN="${SEKIMORI_BIN:-$root/target/$profile/sekimori}"
find_sekimori_bin
load="$root/target/$profile/examples/load"
[[ -x "$load" ]] || die "no load tool at $load (run cargo build ${build_flag[*]} --example load)"
if [[ "$targets" == *peer* && ! -d "$here/peer/node_modules/oidc-provider" ]]; then
  echo "load.sh: installing oidc-provider from benches/peer/package-lock.json" >&2
  (cd "$here/peer" && npm ci --no-audit --no-fund >&2)
fi

make_temp_dir sekimori-load
results="$tmp/results"
mkdir -p "$results"
export SEKIMORI_LOG="${SEKIMORI_LOG:-warn}"
failed=0

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  kill "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# The load tool against the server now running; its JSON lines in $results/TARGET.ROUND.jsonl.
run_load() {
  local target="$1" round="$2" issuer="$3" secret="$4"
  shift 4
  local target_phases="$phases"
  if [[ "$target" == peer-jwt ]]; then
    # The peer does not introspect its JWT access tokens (400 unsupported_token_type, "Structured
    # JWT Tokens cannot be introspected"): the phase is left out there, and its cell shows "-".
    target_phases="$(tr ',' '\n' <<<"$phases" | grep -vx introspection_service | paste -sd, - || true)"
    [[ -n "$target_phases" ]] || { echo "load.sh: round $round, $target: no phase it supports" >&2; return 0; }
  fi
  echo "load.sh: round $round, $target: $connections connections, $seconds s a phase" >&2
  if ! LOAD_CLIENT_SECRET="$secret" "$load" --issuer "$issuer" --client-id load --redirect-uri "$redirect_uri" \
      --service-scope "$service_scope" --connections "$connections" --seconds "$seconds" --phases "$target_phases" \
      --pid "$server_pid" --json "$@" >"$results/$target.$round.jsonl"; then
    echo "load.sh: round $round, $target: the load tool reported errors (above)" >&2
    failed=1
  fi
}

# Sekimori on a fresh database: the demo municipality, the load client, serve, load, stop.
run_sekimori() {
  local target="$1" round="$2" run="$tmp/$1.$2" secret
  mkdir -p "$run"
  choose_free_ports public_port admin_port
  public_url="http://127.0.0.1:$public_port"
  export_server_env "$public_url"
  export SEKIMORI_MASTER_KEY_FILE="$run/master.key"
  if [[ "$target" == postgres ]]; then
    PGOPTIONS='-c client_min_messages=warning' psql -q -v ON_ERROR_STOP=1 "$postgres/postgres" -c 'DROP DATABASE IF EXISTS sekimori_load WITH (FORCE)' \
      -c 'CREATE DATABASE sekimori_load' >&2 || die "could not recreate the database sekimori_load at $postgres"
    export SEKIMORI_DATABASE_URL="$postgres/sekimori_load"
  else
    export SEKIMORI_DATABASE_URL="sqlite:$run/sekimori.db"
  fi
  seed_demo
  cp "$tmp/demo.txt" "$run/demo.txt"
  # ID tokens in ES256, as the peer's client (benches/peer/server.js) gets them: the same
  # signature work on both sides (RS256, the OIDC default, costs Sekimori ~0.5 ms a token here).
  if ! timeout 60 "$bin" client add --name "Load tool" --client-id load --redirect-uri "$redirect_uri" \
      --grant-type authorization_code --grant-type refresh_token --grant-type client_credentials \
      --service-scope "$service_scope" --scope openid --scope profile --access-token-ttl 3600 \
      --id-token-alg ES256 \
      >"$run/client.txt" 2>"$run/client.log"; then
    cat "$run/client.log" >&2
    die "'sekimori client add' failed"
  fi
  # "client_secret: <secret>   (shown only now)"
  secret="$(awk '$1 == "client_secret:" { print $2; exit }' "$run/client.txt")"
  [[ -n "$secret" ]] || die "no client_secret in the output of 'sekimori client add'"
  start_server
  run_load "$target" "$round" "$public_url" "$secret" --login sekimori --users "$run/demo.txt"
  stop_server
}

# The peer, in memory: its client is configured at start with a new secret.
run_peer() {
  local target="$1" round="$2" format="${1#peer-}" secret deadline peer_port=""
  choose_free_ports peer_port
  secret="$(node -e 'console.log(require("node:crypto").randomBytes(32).toString("base64url"))')"
  PEER_PORT="$peer_port" PEER_CLIENT_ID=load PEER_CLIENT_SECRET="$secret" PEER_REDIRECT_URI="$redirect_uri" \
    PEER_SERVICE_SCOPE="$service_scope" "$here/peer/run.sh" "$format" >"$tmp/server.out" 2>"$tmp/server.log" &
  server_pid=$!
  deadline=$((SECONDS + 30))
  until curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$peer_port/.well-known/openid-configuration" 2>/dev/null; do
    kill -0 "$server_pid" 2>/dev/null || die "the peer exited before it answered"
    ((SECONDS < deadline)) || die "the peer did not answer within 30 s"
    sleep 0.2
  done
  run_load "$target" "$round" "http://127.0.0.1:$peer_port" "$secret" --login oidc-provider-dev
  stop_server
}

for round in $(seq 1 "$rounds"); do
  for target in $targets; do
    case "$target" in
      sqlite | postgres) run_sekimori "$target" "$round" ;;
      peer-opaque | peer-jwt) run_peer "$target" "$round" ;;
      *) die "unknown target $target in LOAD_TARGETS (sqlite, postgres, peer-opaque, peer-jwt)" ;;
    esac
  done
done

# The tables, from every run's JSON lines: the median over the rounds.
node - "$results" "$targets" "$connections" "$seconds" "$rounds" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const [dir, targetList, connections, seconds, rounds] = process.argv.slice(2);
const targets = targetList.split(/\s+/).filter(Boolean);
const names = { sqlite: 'Sekimori SQLite', postgres: 'Sekimori PostgreSQL', 'peer-opaque': 'peer (opaque)', 'peer-jwt': 'peer (JWT)' };
const runs = {}; // runs[target][phase] = [objects]
for (const file of fs.readdirSync(dir)) {
  const target = file.split('.')[0];
  for (const line of fs.readFileSync(path.join(dir, file), 'utf8').split('\n').filter(Boolean)) {
    const run = JSON.parse(line);
    ((runs[target] ??= {})[run.phase] ??= []).push(run);
  }
}
const phases = [...new Set(Object.values(runs).flatMap((r) => Object.keys(r)))];
const order = ['discovery', 'jwks', 'client_credentials', 'refresh', 'introspection', 'introspection_many', 'introspection_service', 'userinfo', 'password_login'];
phases.sort((a, b) => order.indexOf(a) - order.indexOf(b));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : undefined;
};
const of = (target, phase, key) => median((runs[target]?.[phase] ?? []).map((r) => r[key]));
const errors = (target, phase) => (runs[target]?.[phase] ?? []).reduce((n, r) => n + r.errors, 0);
const rps = (target, phase) => {
  const v = of(target, phase, 'requests_per_second');
  if (v === undefined) return '-';
  const e = errors(target, phase);
  return `${v.toFixed(0)}${e ? ` (${e} errors)` : ''}`;
};
const sekimoris = targets.filter((t) => !t.startsWith('peer'));
const peers = targets.filter((t) => t.startsWith('peer'));
const ratios = sekimoris.flatMap((s) => peers.map((p) => [s, p]));
console.log(`\n${connections} connections, ${seconds} s a phase, ${rounds} round(s) alternating; medians over the rounds\n`);
const row = (cells) => console.log(`| ${cells.join(' | ')} |`);
const header = (cells) => { row(cells); row(cells.map(() => '---')); };
header(['endpoint', ...targets.map((t) => `${names[t]} req/s`), ...ratios.map(([s, p]) => `${names[s]} / ${names[p]}`)]);
for (const phase of phases) {
  const cells = ratios.map(([s, p]) => {
    const [a, b] = [of(s, phase, 'requests_per_second'), of(p, phase, 'requests_per_second')];
    return a === undefined || !b ? '-' : (a / b).toFixed(2);
  });
  row([phase, ...targets.map((t) => rps(t, phase)), ...cells]);
}
console.log('');
header(['endpoint', ...targets.map((t) => `${names[t]} p50 / p99`)]);
const ms = (v) => (v === undefined ? '-' : `${v.toFixed(1)} ms`);
for (const phase of phases) {
  row([phase, ...targets.map((t) => `${ms(of(t, phase, 'p50_ms'))} / ${ms(of(t, phase, 'p99_ms'))}`)]);
}
console.log('\nserver memory at the end of the last phase (median VmRSS / VmHWM):');
for (const t of targets) {
  const last = phases.filter((p) => runs[t]?.[p]).at(-1);
  const mib = (k) => (k === undefined ? '-' : `${(k / 1024).toFixed(0)} MiB`);
  console.log(`  ${names[t]}: ${mib(of(t, last, 'vm_rss_kib'))} / ${mib(of(t, last, 'vm_hwm_kib'))}`);
}
for (const t of targets) {
  for (const phase of phases) {
    for (const r of runs[t]?.[phase] ?? []) {
      if (r.errors) console.log(`errors: ${names[t]} ${phase}: ${r.errors}, e.g. ${r.error_samples.join(' | ')}`);
    }
  }
}
EOF
exit "$failed"
