// The front door in a real browser: the logged-out top page, the direct login (no consuming
// system), マイページ, ending another session (its token is then refused at userinfo), the
// password change reached from マイページ, logging out, and the logged-out pages that lead
// back to the login. Screenshots of each page go to artifacts/. Run through ./run.sh.
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
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
const LOGIN = env('SEKIMORI_TEST_LOGIN5');
const PASSWORD = env('SEKIMORI_TEST_PASSWORD5');
const NEW_PASSWORD = 'yuuyake-no-kanata-ni-kaeru-tsubame';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const TIMEOUT = 15_000;

let browser;
let context;
let page;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
});

beforeEach(async () => {
  context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
});

afterEach(async () => {
  await context?.close();
});

const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

function focused(p) {
  return p.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body) return 'body';
    return e.id ? `#${e.id}` : `${e.tagName.toLowerCase()}:${e.textContent.trim()}`;
  });
}

/** Logs in on the page the browser is on (the login form) with the keyboard. */
async function typeLogin(p, password) {
  await p.getByLabel('ログインID', { exact: true }).fill(LOGIN);
  await p.getByLabel('パスワード', { exact: true }).fill(password);
  await p.getByLabel('パスワード', { exact: true }).press('Enter');
}

/** In a second browser, logs in to the demo library system and returns its access token. */
async function signInToLibrary() {
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL(`${PUBLIC}/authorize`);
  const redirectUri = 'http://127.0.0.1:9002/callback';
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: 'toshokan', redirect_uri: redirectUri, scope: 'openid profile',
    state: 's', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
  })) url.searchParams.set(k, v);
  // The library system is not running: the code is read off the redirect's request (which
  // then fails to connect; that does not matter here).
  await otherPage.goto(url.toString());
  const [callback] = await Promise.all([
    otherPage.waitForRequest((r) => r.url().startsWith(redirectUri)),
    typeLogin(otherPage, PASSWORD),
  ]).catch(async (e) => { throw new Error(`${e.message} at ${otherPage.url()}`); });
  const code = new URL(callback.url()).searchParams.get('code');
  assert.ok(code, `a code for the library system: ${callback.url()}`);
  const response = await fetch(`${PUBLIC}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: 'toshokan', code_verifier: verifier,
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  await other.close();
  return body.access_token;
}

const userinfoStatus = async (token) =>
  (await fetch(`${PUBLIC}/userinfo`, { headers: { authorization: `Bearer ${token}` } })).status;

test('logged out: the top page and Sekimori\'s own pages lead to the login', async () => {
  await page.goto(`${PUBLIC}/`);
  assert.equal(await page.getAttribute('html', 'lang'), 'ja');
  assert.equal(await page.title(), 'ホーム - 関守 統合認証', 'the product name once');
  await page.getByRole('heading', { level: 1, name: '関守 統合認証' }).waitFor();
  await shot('front-door-home');
  await page.getByRole('link', { name: 'ログインする' }).click();
  await page.waitForURL((url) => url.pathname === '/login');
  await page.getByText('マイページにログインします。').waitFor();
  assert.equal(await focused(page), '#login_id', 'the cursor starts in the login ID');
  await shot('front-door-login');
  for (const path of ['/my', '/password', '/authenticators']) {
    const response = await page.goto(`${PUBLIC}${path}`);
    assert.equal(response.status(), 200);
    assert.equal(new URL(page.url()).pathname, '/login', `${path} leads to the login`);
    assert.equal(new URL(page.url()).searchParams.get('next'), path);
  }
  // An address that does not exist: Sekimori's page, with a way back.
  const missing = await page.goto(`${PUBLIC}/no-such-page`);
  assert.equal(missing.status(), 404);
  await page.getByRole('link', { name: 'トップページへ' }).waitFor();
});

test('direct login, マイページ, ending another session, changing the password, logging out', async () => {
  // Someone (the person, at another desk) is signed in to the library system.
  const libraryToken = await signInToLibrary();
  assert.equal(await userinfoStatus(libraryToken), 200);

  await page.goto(`${PUBLIC}/my`);
  await page.waitForURL((url) => url.pathname === '/login');
  // A wrong password first: the alert says that failures pause logins; focus on the password.
  await typeLogin(page, `${PASSWORD}-wrong`);
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /しばらく/);
  assert.equal(await focused(page), '#password');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.pathname === '/my');

  assert.equal(await page.title(), 'マイページ - 関守 統合認証');
  await page.getByRole('heading', { level: 1, name: 'マイページ' }).waitFor();
  for (const name of ['アカウント', 'パスワード', 'ICカード・セキュリティキー', 'ログイン中の端末', '最近のログイン']) {
    await page.getByRole('heading', { level: 2, name }).waitFor();
  }
  const account = await page.getByRole('region', { name: 'アカウント' }).innerText();
  assert.ok(account.includes(LOGIN), `the login ID is shown: ${account}`);
  const password = await page.getByRole('region', { name: 'パスワード' }).innerText();
  assert.match(password, /最終変更日\s+\d{4}-\d{2}-\d{2}/);
  assert.match(password, /有効期限\s+\d{4}-\d{2}-\d{2}/);
  const sessions = page.getByRole('table', { name: 'ログイン中の端末' });
  const rows = sessions.getByRole('row');
  assert.equal(await rows.count(), 3, 'a header and two sessions');
  const libraryRow = rows.filter({ hasText: '図書館システム' });
  assert.equal(await libraryRow.count(), 1, 'the other session names the system it signed in to');
  const recent = await page.getByRole('table', { name: '最近のログイン' }).innerText();
  assert.ok(recent.includes('失敗') && recent.includes('成功'), `recent sign-ins: ${recent}`);
  await shot('front-door-my-page');

  // End the other session with the keyboard: its button is named for screen readers.
  const end = libraryRow.getByRole('button', { name: /^終了する: / });
  await end.focus();
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.pathname === '/my' && url.searchParams.get('ended') === '1');
  await page.getByRole('status').filter({ hasText: 'ログインを終了しました' }).waitFor();
  assert.equal(await page.getByRole('table', { name: 'ログイン中の端末' }).getByRole('row').count(), 2);
  assert.equal(await userinfoStatus(libraryToken), 401, 'the ended session\'s token is refused');
  await shot('front-door-session-ended');

  // English too.
  await page.getByRole('link', { name: 'English' }).click();
  await page.getByRole('heading', { level: 1, name: 'My page' }).waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await shot('front-door-my-page-en');
  await page.getByRole('link', { name: '日本語' }).click();
  await page.getByRole('heading', { level: 1, name: 'マイページ' }).waitFor();

  // The password page is one link away, and leads back.
  await page.getByRole('link', { name: 'パスワードを変更する' }).click();
  await page.waitForURL((url) => url.pathname === '/password');
  await page.getByLabel('現在のパスワード').fill(PASSWORD);
  await page.getByLabel('新しいパスワード', { exact: true }).fill(NEW_PASSWORD);
  await page.getByLabel('新しいパスワード（確認）').fill(NEW_PASSWORD);
  await shot('front-door-password');
  await page.getByRole('button', { name: '変更する' }).click();
  await page.getByText('パスワードを変更しました').waitFor();
  await page.getByRole('link', { name: 'マイページに戻る' }).click();
  await page.waitForURL((url) => url.pathname === '/my');

  // Log out: the logged-out page offers the login, and the pages lead there again.
  await page.getByRole('region', { name: 'アカウント' }).getByRole('button', { name: 'ログアウト' }).click();
  await page.getByText('ログアウトしました。').waitFor();
  await page.getByRole('link', { name: 'ログインする' }).waitFor();
  await shot('front-door-logged-out');
  await page.goto(`${PUBLIC}/my`);
  assert.equal(new URL(page.url()).pathname, '/login');
  // The new password works.
  await typeLogin(page, NEW_PASSWORD);
  await page.waitForURL((url) => url.pathname === '/my');
});
