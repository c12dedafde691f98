// The admin console in a real browser, with CDP virtual authenticators as IC cards: the
// security manager (named with the bootstrap token, for a month) logs in with a card and
// grants the hotline role and the auditor's role from the console; the operator logs in with
// their card and stops another person's card; the auditor logs in and reads the events,
// operator's report included. Pages are driven by role and label (what a screen reader
// announces) and the language switch is checked; screenshots go to artifacts/. Run through
// ./run.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through run.sh`);
  return value;
}

const PUBLIC = env('SEKIMORI_TEST_URL').replace(/\/$/, '');
const ADMIN = env('SEKIMORI_TEST_ADMIN_URL').replace(/\/$/, '');
const ADMIN_TOKEN = env('SEKIMORI_TEST_ADMIN_TOKEN');
const MANAGER = { login: env('SEKIMORI_TEST_CONSOLE_MANAGER'), password: env('SEKIMORI_TEST_CONSOLE_MANAGER_PASSWORD') };
const OPERATOR = { login: env('SEKIMORI_TEST_CONSOLE_OPERATOR'), password: env('SEKIMORI_TEST_CONSOLE_OPERATOR_PASSWORD') };
const AUDITOR = { login: env('SEKIMORI_TEST_CONSOLE_AUDITOR'), password: env('SEKIMORI_TEST_CONSOLE_AUDITOR_PASSWORD') };
const HOLDER = { login: env('SEKIMORI_TEST_CONSOLE_HOLDER'), password: env('SEKIMORI_TEST_CONSOLE_HOLDER_PASSWORD') };
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const TIMEOUT = 15_000;

const japanDay = (days) => new Date(Date.now() + 9 * 3600_000 + days * 86_400_000).toISOString().slice(0, 10);
const UNTIL = japanDay(30);

async function admin(method, path, json) {
  const response = await fetch(`${ADMIN}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(json ? { 'content-type': 'application/json' } : {}) },
    body: json ? JSON.stringify(json) : undefined,
  });
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  return { status: response.status, data, describe: `${method} ${path} → ${response.status} ${text.slice(0, 400)}` };
}

async function personId(login) {
  const found = await admin('GET', `/api/v1/people?q=${encodeURIComponent(login)}`);
  assert.equal(found.status, 200, found.describe);
  assert.equal(found.data.items.length, 1, found.describe);
  return found.data.items[0].id;
}

let browser;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
});
after(async () => {
  await browser?.close();
});

/** A browser of its own with a virtual FIDO2 authenticator: one person and their card. */
async function openTab() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, locale: 'ja-JP' });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { context, page };
}

/** Password login to マイページ, then a card enrolled with a code the counter issued. */
async function withCard(who, label, number) {
  const tab = await openTab();
  const { page } = tab;
  await page.goto(`${PUBLIC}/my`);
  await page.getByLabel('ログインID', { exact: true }).fill(who.login);
  await page.getByLabel('パスワード', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'ログイン', exact: true }).click();
  await page.waitForURL((url) => url.pathname === '/my');
  const id = await personId(who.login);
  const issued = await admin('POST', `/api/v1/people/${id}/enrollment-codes`);
  assert.equal(issued.status, 201, issued.describe);
  await page.goto(`${PUBLIC}/authenticators`);
  await page.getByLabel(/^名前/).fill(label);
  await page.getByLabel(/^管理番号/).fill(number);
  await page.getByLabel('登録コード', { exact: true }).fill(issued.data.code);
  await page.getByRole('button', { name: '登録を始める', exact: true }).click();
  await page.getByRole('button', { name: 'ICカード・セキュリティキーを使う', exact: true }).click();
  await page.waitForURL((url) => url.pathname === '/authenticators' && url.searchParams.get('enrolled') === '1');
  return { ...tab, id };
}

/** From the console's front page through the issuer's card step-up, back to the console. */
async function consoleLogin(tab) {
  const { page } = tab;
  const first = await page.goto(`${ADMIN}/console`);
  assert.equal(first.status(), 401);
  await page.getByRole('link', { name: 'ICカードでログイン' }).click();
  // The console asks for a card: the issuer's card page, answered by the virtual authenticator.
  await page.getByRole('button', { name: 'ICカード・セキュリティキーを使う', exact: true }).click();
  await page.waitForURL((url) => url.origin === ADMIN && url.pathname === '/console');
  await page.getByRole('heading', { level: 1, name: '管理コンソール' }).waitFor();
}

const shot = (page, name) => page.screenshot({ path: join(ARTIFACTS, `console-${name}.png`), fullPage: true });

test('the security manager grants roles; the operator stops a card; the auditor reads it', async () => {
  const manager = await withCard(MANAGER, '職員証', 'K-C001');
  const operator = await withCard(OPERATOR, '職員証', 'K-C002');
  const auditor = await withCard(AUDITOR, '職員証', 'K-C003');
  const holder = await withCard(HOLDER, '紛失予定の職員証', 'K-C004');

  // The bootstrap token names the first security manager, for a month.
  const named = await admin('POST', '/api/v1/admin-roles/grants',
    { person_id: manager.id, role: 'security_manager', end_date: UNTIL, reason: '初代の統括情報セキュリティ責任者' });
  assert.equal(named.status, 201, named.describe);

  // Someone without a role cannot get in: the issuer refuses the console for them.
  {
    const { page } = holder;
    await page.goto(`${ADMIN}/console/login`);
    const refused = page.getByRole('heading', { level: 1, name: '権限がありません' });
    const card = page.getByRole('button', { name: 'ICカード・セキュリティキーを使う', exact: true });
    await refused.or(card).waitFor();
    if (await card.isVisible()) await card.click();
    await refused.waitFor();
    assert.ok((await page.locator('body').innerText()).includes('管理者権限がない'), 'told why');
  }

  // The security manager, with the card.
  const mp = manager.page;
  await consoleLogin(manager);
  const menu = mp.getByRole('navigation', { name: '管理メニュー' });
  assert.ok(await menu.getByRole('link', { name: '管理者権限' }).isVisible());
  assert.equal(await menu.getByRole('link', { name: 'アクセス記録' }).count(), 0, 'no access records for the manager');
  await shot(mp, 'home');
  await menu.getByRole('link', { name: '管理者権限' }).click();
  for (const [who, role] of [[OPERATOR, '紛失受付担当'], [AUDITOR, '監査担当']]) {
    // By keyboard: the fields are reached with Tab and named by their labels.
    await mp.getByLabel('ログインID', { exact: true }).fill(who.login);
    await mp.getByLabel('権限', { exact: true }).selectOption({ label: role });
    await mp.getByLabel(/^期限/).fill(UNTIL);
    await mp.getByLabel('理由', { exact: true }).fill('担当に指名');
    await mp.getByLabel('理由', { exact: true }).press('Enter');
    await mp.getByRole('status').filter({ hasText: role }).waitFor();
  }
  const table = mp.getByRole('table', { name: '有効な管理者権限' });
  assert.ok(await table.getByRole('row').count() >= 1 + 3, 'the three administrators are listed');
  await shot(mp, 'roles');
  // The same page in English.
  await mp.getByRole('link', { name: 'English' }).click();
  await mp.getByRole('heading', { level: 1, name: 'Administrative roles' }).waitFor();
  await shot(mp, 'roles-en');
  await mp.getByRole('link', { name: '日本語' }).click();
  await mp.getByRole('heading', { level: 1, name: '管理者権限' }).waitFor();

  // The operator: the hotline and nothing else.
  const op = operator.page;
  await consoleLogin(operator);
  const opMenu = op.getByRole('navigation', { name: '管理メニュー' });
  assert.deepEqual(await opMenu.getByRole('link').allInnerTexts(), ['ホーム', '紛失受付']);
  assert.equal((await op.goto(`${ADMIN}/console/audit`)).status(), 403);
  assert.equal((await op.goto(`${ADMIN}/console/people`)).status(), 403);
  await op.goto(`${ADMIN}/console/hotline`);
  await op.getByLabel(/^職員番号・ログインID・氏名/).fill(HOLDER.login);
  await op.getByRole('button', { name: '検索', exact: true }).click();
  const person = op.getByRole('region').filter({ hasText: '紛失予定の職員証' });
  await person.getByLabel('届出者').fill('本人（電話）');
  await person.getByLabel('状況').fill('通勤中に紛失');
  await person.getByRole('button', { name: 'このカードを停止: 紛失予定の職員証' }).click();
  const stopped = op.getByRole('status').filter({ hasText: 'カードを停止しました' });
  await stopped.waitFor();
  const reference = (await stopped.locator('.reference').innerText()).trim();
  assert.match(reference, /\S{4,}/, `a reference number to read to the caller: ${reference}`);
  await shot(op, 'hotline-stopped');

  // The auditor reads what happened; the reading is itself recorded.
  const ap = auditor.page;
  await consoleLogin(auditor);
  const auMenu = ap.getByRole('navigation', { name: '管理メニュー' });
  assert.deepEqual(await auMenu.getByRole('link').allInnerTexts(), ['ホーム', 'アクセス記録', '報告']);
  await auMenu.getByRole('link', { name: 'アクセス記録' }).click();
  // A card stopped is a revocation of `authenticator:<id>`, by the operator in person.
  await ap.getByLabel(/^操作/).fill('revoke');
  await ap.getByRole('button', { name: '検索', exact: true }).click();
  const records = ap.getByRole('table', { name: /^アクセス記録/ });
  const lost = records.getByRole('row').filter({ hasText: `person:${operator.id}` });
  assert.ok((await lost.count()) >= 1, 'the operator\'s report is in the log, under their own name');
  await shot(ap, 'audit');
  await ap.getByLabel(/^操作/).fill('audit.read');
  await ap.getByRole('button', { name: '検索', exact: true }).click();
  const reads = records.getByRole('row').filter({ hasText: `person:${auditor.id}` });
  assert.ok((await reads.count()) >= 1, 'the auditor\'s own reading is recorded');

  // The self-inspection report, opened from the console with the auditor's session.
  await auMenu.getByRole('link', { name: '報告' }).click();
  await ap.getByRole('link', { name: '印刷用（A4）' }).click();
  await ap.getByRole('heading', { level: 1 }).first().waitFor();
  assert.ok((await ap.locator('body').innerText()).includes('自己点検'), 'the compliance report opens');
  await shot(ap, 'compliance-report');

  for (const tab of [manager, operator, auditor, holder]) await tab.context.close();
});
