// Need-based access in a real browser, the whole path: an employee of the welfare section
// (福祉課) asks for a role on the tax inquiry system, which the taxation section (税務課) owns and
// which lets nobody in without a role; the manager of their own section and the manager of the
// owning section each approve it on their Approvals page; the employee's login to the system
// then carries the role in its ID token; the owning manager opens a review and removes the
// grant, and the employee's token is inactive at introspection. Errors are shown next to their
// fields and take the focus; every page is also looked at in English. Screenshots of each page
// go to artifacts/. Run through ./run.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through run.sh`);
  return value;
}

const PUBLIC = env('SEKIMORI_TEST_URL').replace(/\/$/, '');
// 松本 翔 (福祉課), 山本 真理 (福祉課長), 渡辺 誠 (税務課長).
const EMPLOYEE = { login: env('SEKIMORI_TEST_ACCESS_EMPLOYEE'), password: env('SEKIMORI_TEST_ACCESS_EMPLOYEE_PASSWORD') };
const MANAGER_B = { login: env('SEKIMORI_TEST_ACCESS_MANAGER_B'), password: env('SEKIMORI_TEST_ACCESS_MANAGER_B_PASSWORD') };
const MANAGER_A = { login: env('SEKIMORI_TEST_ACCESS_MANAGER_A'), password: env('SEKIMORI_TEST_ACCESS_MANAGER_A_PASSWORD') };
const CLIENT_ID = 'kazei';
const CLIENT_SECRET = env('SEKIMORI_TEST_KAZEI_SECRET');
const SYSTEM = '課税照会システム';
const ROLE = '課税状況の照会';
const REDIRECT_URI = 'http://127.0.0.1:9003/callback';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const TIMEOUT = 15_000;

/** A day `days` from today in Japan, YYYY-MM-DD. */
const japanDay = (days) => new Date(Date.now() + 9 * 3600_000 + days * 86_400_000).toISOString().slice(0, 10);
const LAST_DAY = japanDay(30);

let browser;
let catcher; // the tax inquiry system's redirect URI
const contexts = [];

// As in login.test.mjs: a tiny HTTP server plays the consuming system at its redirect URI,
// and Chromium's --host-resolver-rules sends 127.0.0.1:9003 there.
async function startCatcher() {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!DOCTYPE html><html lang="en"><title>callback</title><p>callback reached</p></html>');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  catcher = await startCatcher();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=MAP ${new URL(REDIRECT_URI).host} 127.0.0.1:${catcher.address().port}`],
    timeout: 30_000,
  });
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  catcher?.closeAllConnections?.();
  await new Promise((resolve) => (catcher ? catcher.close(resolve) : resolve()));
});

/** A browser of its own for `who`, logged in with the keyboard on the way to `path`. */
async function logIn(who, path) {
  // A Japanese desktop's language (Accept-Language, navigator.language).
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, locale: 'ja-JP' });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  await page.goto(`${PUBLIC}${path}`);
  await page.waitForURL((url) => url.pathname === '/login' && url.searchParams.get('next') === path);
  await page.getByLabel('ログインID', { exact: true }).fill(who.login);
  await page.getByLabel('パスワード', { exact: true }).fill(who.password);
  await page.getByLabel('パスワード', { exact: true }).press('Enter');
  await page.waitForURL((url) => url.pathname === path);
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

/** The focused element: `#id`, or the tag and text. */
const focused = (page) => page.evaluate(() => {
  const e = document.activeElement;
  if (!e || e === document.body) return 'body';
  return e.id ? `#${e.id}` : `${e.tagName.toLowerCase()}:${e.textContent.trim()}`;
});

/** The ids an element's aria-describedby names. */
const describedBy = async (locator) => ((await locator.getAttribute('aria-describedby')) || '').split(/\s+/);

/** Switches the page to English and back after `look` (the language is remembered per browser). */
async function inEnglish(page, heading, name, look = async () => {}) {
  await page.getByRole('link', { name: 'English' }).click();
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await look();
  await shot(page, name);
  await page.getByRole('link', { name: '日本語' }).click();
  await page.getByRole('heading', { level: 1 }).first().waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'ja');
}

/**
 * The consuming system's login in the employee's browser (already logged in to Sekimori, so
 * no login page): the authorization response's parameters, and the tokens when there is a code.
 */
async function loginToSystem(page) {
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL(`${PUBLIC}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: 'openid profile',
    state: randomBytes(8).toString('hex'), nonce: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
  })) url.searchParams.set(k, v);
  await page.goto(url.toString());
  await page.waitForURL((u) => u.href.startsWith(REDIRECT_URI));
  const answer = new URL(page.url()).searchParams;
  if (!answer.get('code')) return { error: answer.get('error') };
  const response = await fetch(`${PUBLIC}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: answer.get('code'), redirect_uri: REDIRECT_URI, code_verifier: verifier,
    }),
  });
  const tokens = await response.json();
  assert.equal(response.status, 200, JSON.stringify(tokens));
  return tokens;
}

async function introspect(token) {
  const response = await fetch(`${PUBLIC}/introspect`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token }),
  });
  assert.equal(response.status, 200);
  return response.json();
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

/** On a failure, what each browser showed. */
async function shootAll(prefix) {
  let n = 0;
  for (const context of contexts) {
    for (const page of context.pages()) await shot(page, `${prefix}-${(n += 1)}`).catch(() => {});
  }
}

test('a cross-section request, two approvals, the role in the token, a review removes it', async (t) => {
  try {
    await wholePath();
  } catch (e) {
    await shootAll(`failed-${t.name.split(' ')[0]}`);
    throw e;
  }
});

async function wholePath() {
  // ---- The employee: nothing held, and the system lets them not in without a role.
  const employee = await logIn(EMPLOYEE, '/my/access');
  await employee.getByRole('heading', { level: 1, name: '利用権限と申請' }).waitFor();
  assert.equal(await employee.title(), '利用権限と申請 - 関守 統合認証');
  const menu = employee.getByRole('navigation', { name: 'マイページのメニュー' });
  assert.equal(await menu.getByRole('link', { name: '利用権限と申請' }).getAttribute('aria-current'), 'page');
  assert.equal(await menu.getByRole('link', { name: /承認待ち/ }).count(), 0, 'no Approvals for a non-manager');
  await employee.getByText('保有している権限はありません。').waitFor();
  const refused = await loginToSystem(employee);
  assert.equal(refused.error, 'access_denied', 'the system needs a role the employee does not hold');
  await employee.goto(`${PUBLIC}/my/access`);
  await shot(employee, 'access-my-access-empty');

  // ---- Asking without a reason: the summary takes the focus and names the field.
  const form = employee.getByRole('region', { name: '権限を申請する' });
  const role = form.getByLabel('システムと権限');
  const options = await role.locator('optgroup').evaluateAll((groups) => groups.map((g) => g.label));
  assert.ok(options.some((label) => label.startsWith(SYSTEM) && label.includes('他課')), `groups: ${options}`);
  await role.selectOption({ label: `${ROLE}（一般）` });
  await form.getByRole('button', { name: '申請する' }).click();
  await employee.locator('#error-summary').waitFor();
  assert.equal(await focused(employee), '#error-summary', 'the error summary takes the focus');
  assert.match(await employee.title(), /^エラー: /);
  const reason = form.getByLabel('業務上の理由（必須）');
  assert.equal(await reason.getAttribute('aria-invalid'), 'true');
  assert.ok((await describedBy(reason)).includes('reason-error'));
  assert.match(await employee.locator('#reason-error').innerText(), /業務上の理由を1〜1000文字/);
  assert.equal(await role.inputValue() !== '', true, 'the chosen role is kept');

  // ---- A reason but no last day: another section's system always ends.
  await reason.fill('生活保護の決定にあたり、世帯の課税状況を照会するため。');
  await form.getByRole('button', { name: '申請する' }).click();
  await employee.locator('#end_date-error').waitFor();
  assert.equal(await focused(employee), '#error-summary');
  const lastDay = form.getByLabel('必要な最終日');
  assert.equal(await lastDay.getAttribute('aria-invalid'), 'true');
  assert.ok((await describedBy(lastDay)).includes('end_date-error'));
  assert.match(await employee.locator('#end_date-error').innerText(), /他課のシステム.*最終日/);
  assert.equal(await reason.inputValue(), '生活保護の決定にあたり、世帯の課税状況を照会するため。', 'the reason is kept');
  // The link in the summary leads to the field.
  await employee.locator('#error-summary').getByRole('link').first().click();
  await shot(employee, 'access-request-error');
  await inEnglish(employee, 'My access', 'access-my-access-en', async () => {
    await employee.getByRole('heading', { level: 2, name: 'Ask for a role' }).waitFor();
  });

  // ---- With the last day (the language switch reloaded the form): sent, and both steps wait.
  await role.selectOption({ label: `${ROLE}（一般）` });
  await reason.fill('生活保護の決定にあたり、世帯の課税状況を照会するため。');
  await lastDay.fill(LAST_DAY);
  await form.getByRole('button', { name: '申請する' }).click();
  await employee.waitForURL((url) => url.pathname === '/my/access' && url.searchParams.get('done') === 'requested');
  await employee.getByRole('status').filter({ hasText: '申請しました' }).waitFor();
  const requests = employee.getByRole('table', { name: '申請の状況' });
  const row = requests.getByRole('row').filter({ hasText: SYSTEM });
  assert.equal(await row.count(), 1);
  const rowText = await row.innerText();
  assert.match(rowText, /審査中/);
  assert.match(rowText, /所管課の承認（税務課）: 未決/);
  assert.match(rowText, /申請者の所属長の承認（福祉課）: 未決/);
  assert.ok(rowText.includes(LAST_DAY), rowText);
  await row.getByRole('button', { name: `取り下げる: ${SYSTEM} / ${ROLE}` }).waitFor();
  await shot(employee, 'access-my-access-requested');

  // ---- The employee's own manager (福祉課長): Approvals, a rejection needs a reason.
  const managerB = await logIn(MANAGER_B, '/my/approvals');
  const menuB = managerB.getByRole('navigation', { name: 'マイページのメニュー' });
  assert.match(await menuB.getByRole('link', { name: /承認待ちの申請/ }).innerText(), /1/);
  const card = managerB.getByRole('region', { name: new RegExp(`${SYSTEM} / ${ROLE}`) });
  const cardText = await card.innerText();
  assert.match(cardText, /他課からの申請/);
  assert.match(cardText, /世帯の課税状況を照会するため/);
  assert.match(cardText, /申請者の所属長の承認（福祉課）: 未決 — あなたの決裁/);
  assert.match(cardText, /所管課の承認（税務課）: 未決/);
  await card.getByRole('button', { name: /^却下する: / }).click();
  await managerB.locator('#error-summary').waitFor();
  assert.equal(await focused(managerB), '#error-summary');
  const decisionReason = managerB.getByLabel('理由（却下するときは必須）');
  assert.equal(await decisionReason.getAttribute('aria-invalid'), 'true');
  assert.match(await managerB.locator('.field-error').innerText(), /却下するときは理由/);
  await shot(managerB, 'access-approvals-reject-error');
  await inEnglish(managerB, 'Approvals', 'access-approvals-en');
  // Approve with the keyboard.
  await managerB.getByRole('button', { name: /^承認する: / }).focus();
  await managerB.keyboard.press('Enter');
  await managerB.waitForURL((url) => url.searchParams.get('done') === 'approved');
  await managerB.getByRole('status').filter({ hasText: '承認しました' }).waitFor();
  await managerB.getByText('承認待ちの申請はありません。').waitFor();
  await shot(managerB, 'access-approvals-done');

  // ---- The owning section's manager (税務課長): sees the first approval, approves.
  const managerA = await logIn(MANAGER_A, '/my/approvals');
  const cardA = managerA.getByRole('region', { name: new RegExp(`${SYSTEM} / ${ROLE}`) });
  assert.match(await cardA.innerText(), /申請者の所属長の承認（福祉課）: 承認/);
  assert.match(await cardA.innerText(), /所管課の承認（税務課）: 未決 — あなたの決裁/);
  await shot(managerA, 'access-approvals-owner');
  await cardA.getByLabel('理由（却下するときは必須）').fill('期間を限って認めます。');
  await cardA.getByRole('button', { name: /^承認する: / }).click();
  await managerA.waitForURL((url) => url.searchParams.get('done') === 'approved');

  // ---- The owning manager's systems: the grant, a direct grant refused, a deputy.
  await managerA.getByRole('navigation', { name: 'マイページのメニュー' }).getByRole('link', { name: '所管システム' }).click();
  await managerA.waitForURL((url) => url.pathname === '/my/systems');
  const system = managerA.getByRole('region', { name: new RegExp(SYSTEM) });
  await system.getByText('このシステムには、権限を持つ職員だけがログインできます。').waitFor();
  const holders = await system.getByRole('table', { name: '付与中の権限' }).innerText();
  assert.match(holders, /松本 翔/);
  assert.match(holders, /申請・承認/);
  const grantForm = managerA.getByRole('region', { name: '権限を直接付与する' });
  await grantForm.getByLabel('職員番号').fill('10013');
  await grantForm.getByLabel('システムと権限').selectOption({ label: '一括抽出（秘密・最長90日）' });
  await grantForm.getByLabel('業務上の理由（必須）').fill('試験');
  await grantForm.getByRole('button', { name: '付与する' }).click();
  await managerA.locator('#grant-employee-error').waitFor();
  assert.match(await managerA.locator('#grant-employee-error').innerText(), /他課の職員には直接付与できません/);
  assert.equal(await focused(managerA), '#error-summary');
  const deputies = managerA.getByRole('region', { name: '代理の指定' });
  await deputies.getByLabel('代理にする職員の職員番号').fill('10008');
  await deputies.getByLabel('開始日').fill(japanDay(0));
  await deputies.getByLabel('終了日').fill(japanDay(7));
  await deputies.getByRole('button', { name: '代理を指定する' }).click();
  await managerA.waitForURL((url) => url.searchParams.get('done') === 'designated');
  const deputyRow = managerA.getByRole('region', { name: '代理の指定' }).getByRole('row').filter({ hasText: '中村 由美' });
  assert.match(await deputyRow.innerText(), /有効/);
  await shot(managerA, 'access-systems');
  await inEnglish(managerA, "My section's systems", 'access-systems-en');
  await deputyRow.getByRole('button', { name: '指定を終える: 中村 由美' }).click();
  await managerA.waitForURL((url) => url.searchParams.get('done') === 'deputy-ended');
  await managerA.getByText('指定中の代理はいません。').waitFor();

  // ---- The employee holds the role, was told, and the system's token says so.
  await employee.goto(`${PUBLIC}/my/access`);
  const held = await employee.getByRole('table', { name: '保有している権限' }).innerText();
  assert.match(held, new RegExp(`${SYSTEM}\\s+${ROLE}\\s+一般`));
  assert.ok(held.includes(LAST_DAY), held);
  assert.match(await requests.getByRole('row').filter({ hasText: SYSTEM }).innerText(), /承認済み/);
  const badge = employee.getByRole('navigation', { name: 'マイページのメニュー' }).getByRole('link', { name: /お知らせ/ });
  assert.match(await badge.innerText(), /\d/, 'unread notices are counted');
  await shot(employee, 'access-my-access-granted');
  await badge.click();
  await employee.waitForURL((url) => url.pathname === '/my/notices');
  await employee.getByRole('heading', { level: 2, name: /利用申請が承認されました/ }).waitFor();
  await shot(employee, 'access-notices');
  await inEnglish(employee, 'Notices', 'access-notices-en');
  assert.doesNotMatch(await employee.getByRole('navigation', { name: 'マイページのメニュー' }).innerText(), /\d/,
    'shown notices are read');
  const tokens = await loginToSystem(employee);
  const idToken = claimsOf(tokens.id_token);
  assert.deepEqual(idToken.roles, ['inquiry'], `roles in the ID token: ${JSON.stringify(idToken)}`);
  const active = await introspect(tokens.access_token);
  assert.equal(active.active, true);
  assert.deepEqual(active.roles, ['inquiry']);

  // ---- The owning manager reviews the system and removes the grant (a reason is needed).
  await managerA.goto(`${PUBLIC}/my/reviews`);
  await managerA.getByText('進行中の棚卸しはありません。').waitFor();
  const open = managerA.getByRole('region', { name: '棚卸しを始める' });
  await open.getByLabel('システム').selectOption({ label: SYSTEM });
  await open.getByRole('button', { name: '棚卸しを始める' }).click();
  await managerA.waitForURL((url) => url.searchParams.get('done') === 'opened');
  const review = managerA.getByRole('region', { name: SYSTEM });
  const item = review.getByRole('row').filter({ hasText: '松本 翔' });
  await item.getByRole('button', { name: /^削除する: 松本 翔/ }).click();
  await managerA.locator('#error-summary').waitFor();
  assert.equal(await focused(managerA), '#error-summary');
  assert.match(await managerA.locator('.field-error').innerText(), /削除するときは理由/);
  await shot(managerA, 'access-reviews-error');
  await inEnglish(managerA, 'Reviews', 'access-reviews-en');
  const again = managerA.getByRole('region', { name: SYSTEM }).getByRole('row').filter({ hasText: '松本 翔' });
  await again.getByLabel('理由（削除するときは必須）').fill('照会業務が終わったため。');
  await again.getByRole('button', { name: /^削除する: 松本 翔/ }).click();
  await managerA.waitForURL((url) => url.searchParams.get('done') === 'removed');
  await managerA.getByRole('status').filter({ hasText: '削除しました' }).waitFor();
  assert.match(await managerA.getByRole('region', { name: SYSTEM }).innerText(), /削除/);
  await shot(managerA, 'access-reviews-done');

  // ---- The token the system holds is dead, and the employee holds nothing.
  assert.deepEqual(await introspect(tokens.access_token), { active: false });
  await employee.goto(`${PUBLIC}/my/access`);
  await employee.getByText('保有している権限はありません。').waitFor();
  await employee.goto(`${PUBLIC}/my/notices`);
  await employee.getByRole('heading', { level: 2, name: /利用権限が終了しました/ }).waitFor();
  assert.equal((await loginToSystem(employee)).error, 'access_denied', 'no role, no login');

  // ---- マイページ links to the access pages.
  await employee.goto(`${PUBLIC}/my`);
  await employee.getByRole('navigation', { name: 'マイページのメニュー' }).getByRole('link', { name: '利用権限と申請' }).click();
  await employee.waitForURL((url) => url.pathname === '/my/access');
  await managerA.goto(`${PUBLIC}/my`);
  const menuA = managerA.getByRole('navigation', { name: 'マイページのメニュー' });
  for (const name of ['承認待ちの申請', '所管システム', '棚卸し']) await menuA.getByRole('link', { name }).waitFor();
  await shot(managerA, 'access-my-page-manager');
}

test('a role already asked for is refused beside its field; a pending request is withdrawn', async (t) => {
  try {
    const employee = await logIn(EMPLOYEE, '/my/access');
    const form = employee.getByRole('region', { name: '権限を申請する' });
    const ask = async () => {
      // A secret-class role with a longest grant: no last day is needed even from another section.
      await form.getByLabel('システムと権限').selectOption({ label: '一括抽出（秘密・最長90日）' });
      await form.getByLabel('業務上の理由（必須）').fill('年次の統計資料の作成のため。');
      await form.getByRole('button', { name: '申請する' }).click();
    };
    await ask();
    await employee.waitForURL((url) => url.searchParams.get('done') === 'requested');
    const row = employee.getByRole('table', { name: '申請の状況' }).getByRole('row').filter({ hasText: '一括抽出' });
    assert.match(await row.innerText(), /審査中/);
    await ask();
    await employee.locator('#role-error').waitFor();
    assert.match(await employee.locator('#role-error').innerText(), /すでに保有しているか、申請中/);
    assert.equal(await focused(employee), '#error-summary');
    assert.equal(await form.getByLabel('システムと権限').getAttribute('aria-invalid'), 'true');
    await row.getByRole('button', { name: '取り下げる: 課税照会システム / 一括抽出' }).click();
    await employee.waitForURL((url) => url.searchParams.get('done') === 'withdrawn');
    await employee.getByRole('status').filter({ hasText: '申請を取り下げました。' }).waitFor();
    assert.match(await row.innerText(), /取り下げ/);
    assert.match(await row.innerText(), /所管課の承認（税務課）: 決裁なし/, 'a finished request waits for nobody');
    assert.equal(await row.getByRole('button').count(), 0, 'a withdrawn request has nothing to press');
    await shot(employee, 'access-withdrawn');
  } catch (e) {
    await shootAll(`failed-${t.name.split(' ')[0]}`);
    throw e;
  }
});
