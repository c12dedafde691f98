#!/usr/bin/env bash
# Real-browser end-to-end tests of Sekimori's login page and IC cards.
#
# Starts a throw-away Sekimori (SQLite in a temp dir, demo data, free ports), then drives
# headless Debian Chromium through the login flow (login.test.mjs), the direct login and
# マイページ (front_door.test.mjs), need-based access — a request, two approvals, the role in
# the token, a review that removes it (access.test.mjs) — and through card
# enrollment, card login and the lost-card hotline with a CDP virtual authenticator
# (cards.test.mjs), and through the admin console — a security manager granting roles, an
# operator stopping a card, an auditor reading the events, each logged in with a card
# (console.test.mjs), with playwright-core.
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
# shellcheck source=../lib/server.sh
source "$here/../lib/server.sh"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"

find_sekimori_bin
[[ -x "$chromium" ]] || die "no browser at $chromium (apt-get install -y chromium)"
require_commands node curl
if command -v fc-list >/dev/null && [[ -z "$(fc-list :lang=ja 2>/dev/null)" ]]; then
  echo "run.sh: warning: no Japanese font installed; screenshots will show boxes" \
       "(apt-get install -y fonts-ipafont-gothic, or fonts-noto-cjk)" >&2
fi
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "run.sh: installing playwright-core from package-lock.json" >&2
  # playwright-core downloads no browser; we use the system Chromium.
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi

make_temp_dir sekimori-browser
choose_free_ports public_port admin_port
# WebAuthn needs a domain as relying party ID, not an IP address: the issuer (and so the
# pages' origin) is http://localhost, which browsers also treat as a secure context.
public_url="http://localhost:$public_port"
admin_url="http://127.0.0.1:$admin_port"
export_server_env "$public_url"
seed_demo

# The login tests use the first two; the card tests enroll cards for the other two (a card
# makes every later password login ask for it, so they are kept apart).
login1=tanaka.kenichi
login2=sato.hanako
login3=suzuki.ichiro
login4=takahashi.misaki
# The front-door test changes this one's password.
login5=yoshida.osamu
# The access test: an employee of 福祉課 asks for a role on 税務課's tax inquiry system; the
# managers of both sections approve.
access_employee=matsumoto.sho
access_manager_b=yamamoto.mari
access_manager_a=watanabe.makoto
password1="$(password_of "$login1")"
password2="$(password_of "$login2")"
password3="$(password_of "$login3")"
password4="$(password_of "$login4")"
password5="$(password_of "$login5")"
name3="$(name_of "$login3")"
name4="$(name_of "$login4")"
if [[ -z "$password1" || -z "$password2" || -z "$password3" || -z "$password4" || -z "$password5" || -z "$name3" || -z "$name4" ]]; then
  die_showing_demo "could not find $login1, $login2, $login3 and $login4 (with their names) in the demo output above"
fi
grep -q 'client_id=toshokan .*redirect_uri=http://127.0.0.1:9002/callback' "$tmp/demo.txt" \
  || die "the demo did not register the public client toshokan with redirect_uri http://127.0.0.1:9002/callback"
# The console test: a security manager, a hotline operator, an auditor, and a card holder.
console_manager=yamada.taro
console_operator=kimura.takuya
console_auditor=ito.naoko
console_holder=hayashi.akemi
for who in console_manager console_operator console_auditor console_holder; do
  printf -v "${who}_password" '%s' "$(password_of "${!who}")"
  password_var="${who}_password"
  [[ -n "${!password_var}" ]] || die_showing_demo "could not find ${!who} in the demo output above"
done
access_employee_password="$(password_of "$access_employee")"
access_manager_b_password="$(password_of "$access_manager_b")"
access_manager_a_password="$(password_of "$access_manager_a")"
# The line after "client_id=kazei ..." is its secret.
kazei_secret="$(awk '/client_id=kazei / { getline; sub(/^ *client_secret=/, ""); print; exit }' "$tmp/demo.txt")"
if [[ -z "$access_employee_password" || -z "$access_manager_b_password" || -z "$access_manager_a_password" || -z "$kazei_secret" ]]; then
  die_showing_demo "could not find $access_employee, $access_manager_b, $access_manager_a and the secret of kazei in the demo output above"
fi

start_server
echo "run.sh: sekimori serving on $public_url, admin on $admin_url (pid $server_pid)" >&2

# The fresh database has no administrator: the bootstrap token (a day of setting up) makes the
# hotline operator and the first security manager of the tests.
bootstrap_admin_token "browser test"
# The hotline tests act as a hotline operator, with a token of their own.
grant_admin_role kobayashi.daisuke hotline_operator
owned_token hotline_token kobayashi.daisuke "hotline operator" hotline

run_tests \
  SEKIMORI_TEST_URL="$public_url" \
  SEKIMORI_TEST_LOGIN="$login1" SEKIMORI_TEST_PASSWORD="$password1" \
  SEKIMORI_TEST_LOGIN2="$login2" SEKIMORI_TEST_PASSWORD2="$password2" \
  SEKIMORI_TEST_LOGIN3="$login3" SEKIMORI_TEST_PASSWORD3="$password3" SEKIMORI_TEST_NAME3="$name3" \
  SEKIMORI_TEST_LOGIN4="$login4" SEKIMORI_TEST_PASSWORD4="$password4" SEKIMORI_TEST_NAME4="$name4" \
  SEKIMORI_TEST_LOGIN5="$login5" SEKIMORI_TEST_PASSWORD5="$password5" \
  SEKIMORI_TEST_ACCESS_EMPLOYEE="$access_employee" SEKIMORI_TEST_ACCESS_EMPLOYEE_PASSWORD="$access_employee_password" \
  SEKIMORI_TEST_ACCESS_MANAGER_B="$access_manager_b" SEKIMORI_TEST_ACCESS_MANAGER_B_PASSWORD="$access_manager_b_password" \
  SEKIMORI_TEST_ACCESS_MANAGER_A="$access_manager_a" SEKIMORI_TEST_ACCESS_MANAGER_A_PASSWORD="$access_manager_a_password" \
  SEKIMORI_TEST_KAZEI_SECRET="$kazei_secret" \
  SEKIMORI_TEST_CONSOLE_MANAGER="$console_manager" SEKIMORI_TEST_CONSOLE_MANAGER_PASSWORD="$console_manager_password" \
  SEKIMORI_TEST_CONSOLE_OPERATOR="$console_operator" SEKIMORI_TEST_CONSOLE_OPERATOR_PASSWORD="$console_operator_password" \
  SEKIMORI_TEST_CONSOLE_AUDITOR="$console_auditor" SEKIMORI_TEST_CONSOLE_AUDITOR_PASSWORD="$console_auditor_password" \
  SEKIMORI_TEST_CONSOLE_HOLDER="$console_holder" SEKIMORI_TEST_CONSOLE_HOLDER_PASSWORD="$console_holder_password" \
  SEKIMORI_TEST_ADMIN_URL="$admin_url" SEKIMORI_TEST_ADMIN_TOKEN="$admin_token" \
  SEKIMORI_TEST_HOTLINE_TOKEN="$hotline_token" \
  CHROMIUM_PATH="$chromium"
