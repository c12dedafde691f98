// Real-browser tests of Sekimori's login page: headless Debian Chromium driven by
// playwright-core. Run through ./run.sh, which starts a throw-away Sekimori with demo data
// and passes its URL (http://localhost:<port>, the issuer) and two demo logins in the environment.
import { test, before, after, beforeEach, afterEach } from 'node:test';
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
const LOGIN = env('SEKIMORI_TEST_LOGIN');
const PASSWORD = env('SEKIMORI_TEST_PASSWORD');
const LOGIN2 = env('SEKIMORI_TEST_LOGIN2');
const PASSWORD2 = env('SEKIMORI_TEST_PASSWORD2');
const CLIENT_ID = 'toshokan';
const CLIENT_NAME = '図書館システム';
const REDIRECT_URI = 'http://127.0.0.1:9002/callback';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const TIMEOUT = 15_000;

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A fresh authorization request for the public demo client, with PKCE S256. */
function authorizationRequest(extra = {}) {
  const verifier = b64url(randomBytes(32));
  const request = {
    state: b64url(randomBytes(16)),
    nonce: b64url(randomBytes(16)),
    verifier,
    challenge: b64url(createHash('sha256').update(verifier).digest()),
  };
  const url = new URL(`${PUBLIC}/authorize`);
  const params = {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile',
    state: request.state,
    nonce: request.nonce,
    code_challenge: request.challenge,
    code_challenge_method: 'S256',
    ...extra,
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  request.url = url.toString();
  return request;
}

/** A short description of the focused element, for focus-order assertions. */
function focused(page) {
  return page.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body) return 'body';
    if (e.id) return `#${e.id}`;
    if (e.tagName === 'A') return `a:${e.textContent.trim()}`;
    return `${e.tagName.toLowerCase()}:${e.textContent.trim()}`;
  });
}

/** Whether the focused element shows a focus indicator and is inside the viewport. */
function focusIsVisible(page) {
  return page.evaluate(() => {
    const e = document.activeElement;
    const style = getComputedStyle(e);
    const r = e.getBoundingClientRect();
    const onScreen = r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0
      && r.left < innerWidth && r.top < innerHeight;
    return onScreen && style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
  });
}

let browser;
let context;
let page;
let catcher; // stands in for the consuming system at the redirect URI
let callbacks; // every callback URL the browser reached

// Why not page.route('http://127.0.0.1:9002/**')? Playwright never routes a request that
// continues a redirect (its Chromium network manager sends Fetch.continueRequest for any
// request with redirectedFrom), and the callback is reached through Sekimori's 303 after
// the login POST: a route would never fire and Chromium would get "connection refused".
// Instead a tiny HTTP server on a free port plays the consuming system, and Chromium's
// --host-resolver-rules sends 127.0.0.1:9002 there. The browser follows the real 303, the
// address bar shows the real redirect URI, and nothing needs port 9002.
async function startCatcher() {
  const server = createServer((req, res) => {
    const url = new URL(req.url, REDIRECT_URI);
    if (url.pathname === new URL(REDIRECT_URI).pathname) callbacks.push(url.href);
    res.writeHead(url.pathname === '/favicon.ico' ? 404 : 200, { 'content-type': 'text/html; charset=utf-8' });
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
  callbacks = [];
  catcher = await startCatcher();
  const redirect = new URL(REDIRECT_URI);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    // Without the background-networking flags Chromium stalls on a closed network.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=MAP ${redirect.host} 127.0.0.1:${catcher.address().port}`],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
  catcher?.closeAllConnections?.();
  await new Promise((resolve) => (catcher ? catcher.close(resolve) : resolve()));
});

beforeEach(async () => {
  // A new context per test: no cookies (session, CSRF, language) carry over.
  context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  callbacks.length = 0;
});

afterEach(async () => {
  await context?.close();
});

/** Opens the authorization URL and checks it lands on the login page. */
async function openLogin(request) {
  const response = await page.goto(request.url);
  assert.equal(response.status(), 200);
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.ok(new URL(page.url()).searchParams.get('request'), 'the login page carries the pending request');
}

async function waitForCallback() {
  await page.waitForURL((url) => url.href.startsWith(REDIRECT_URI));
  await page.getByText('callback reached').waitFor();
  assert.equal(callbacks.length, 1, 'exactly one request to the consuming system');
  assert.equal(page.url(), callbacks[0]);
  // The browser now holds an SSO session cookie, out of scripts' reach.
  const session = (await context.cookies(PUBLIC)).find((c) => c.name === 'sekimori_session');
  assert.ok(session, 'a session cookie is set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  return new URL(callbacks[0]);
}

/** Redeems the code as the public client would, and returns the ID token's claims. */
async function redeem(code, request) {
  const response = await fetch(`${PUBLIC}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID,
      code_verifier: request.verifier,
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, `token endpoint answered ${JSON.stringify(body)}`);
  assert.ok(body.id_token, 'an ID token is issued');
  const [, payload] = body.id_token.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

test('Japanese first, labelled fields, and a login done with the keyboard only', async () => {
  const request = authorizationRequest();
  await openLogin(request);

  // Japanese by default, with the page's structure a screen reader relies on.
  assert.equal(await page.getAttribute('html', 'lang'), 'ja');
  assert.match(await page.title(), /ログイン/);
  await page.getByRole('heading', { level: 1, name: 'ログイン' }).waitFor();
  assert.match(await page.locator('main').innerText(), new RegExp(CLIENT_NAME));
  await page.getByRole('navigation', { name: '言語を切り替える' }).waitFor();
  const loginId = page.getByLabel('ログインID', { exact: true });
  const password = page.getByLabel('パスワード', { exact: true });
  assert.equal(await loginId.getAttribute('autocomplete'), 'username');
  assert.equal(await password.getAttribute('type'), 'password');
  assert.equal(await loginId.getAttribute('aria-invalid'), null);

  // The login ID field has autofocus, so a keyboard user can type at once.
  assert.equal(await focused(page), '#login_id');

  // The whole tab order: Tab round the page from the login ID field back to it. After the
  // button focus leaves the document (Chromium reports <body>) and comes back at the top.
  const cycle = [];
  for (let i = 0; i < 8 && cycle.at(-1) !== '#login_id'; i++) {
    await page.keyboard.press('Tab');
    const now = await focused(page);
    if (now !== 'body') cycle.push(now);
  }
  assert.deepEqual(cycle,
    ['#password', 'button:ログイン', 'a:ICカード・セキュリティキーでログイン', 'a:本文へ移動', 'a:English', '#login_id'],
    'tab order: skip link, language link, login ID, password, button, card login link, and nothing else');

  // Backwards from there: the language link, then the skip link first in the page.
  await page.keyboard.press('Shift+Tab');
  assert.equal(await focused(page), 'a:English');
  assert.ok(await focusIsVisible(page), 'the language link shows focus');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await focused(page), 'a:本文へ移動');
  assert.ok(await focusIsVisible(page), 'the focused skip link is on screen with a focus outline');

  // The skip link moves focus to <main>; from there Tab reaches the fields and the button.
  await page.keyboard.press('Enter');
  assert.equal(await focused(page), '#main');
  const order = [];
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press('Tab');
    order.push(await focused(page));
    assert.ok(await focusIsVisible(page), `${order.at(-1)} shows focus`);
  }
  assert.deepEqual(order, ['#login_id', '#password', 'button:ログイン']);

  // Fill in and submit with the keyboard alone.
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await focused(page), '#login_id');
  await page.keyboard.type(LOGIN);
  await page.keyboard.press('Tab');
  assert.equal(await focused(page), '#password');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');

  const callback = await waitForCallback();
  assert.equal(callback.origin + callback.pathname, REDIRECT_URI);
  assert.ok(callback.searchParams.get('code'), 'a code is returned');
  assert.equal(callback.searchParams.get('state'), request.state);
  assert.equal(callback.searchParams.get('iss'), PUBLIC);
  assert.equal(callback.searchParams.get('error'), null);

  // The code is good: the PKCE verifier checks out and the ID token answers this request.
  const claims = await redeem(callback.searchParams.get('code'), request);
  assert.equal(claims.iss, PUBLIC);
  assert.equal(claims.aud === CLIENT_ID || (Array.isArray(claims.aud) && claims.aud.includes(CLIENT_ID)), true);
  assert.equal(claims.nonce, request.nonce);
});

test('a wrong password shows an alert, marks the fields invalid, and does not redirect', async () => {
  const request = authorizationRequest();
  await openLogin(request);
  await page.getByLabel('ログインID', { exact: true }).fill(LOGIN2);
  await page.getByLabel('パスワード', { exact: true }).fill(`${PASSWORD2}-wrong`);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/login'),
    page.getByRole('button', { name: 'ログイン' }).click(),
  ]);
  await page.waitForLoadState('domcontentloaded');
  assert.equal(response.status(), 401);

  const alert = page.getByRole('alert');
  // The message may go on (e.g. with a lockout warning), but it starts with this sentence.
  const message = (await alert.innerText()).trim();
  assert.ok(message.startsWith('ログインIDまたはパスワードが正しくありません。'), `alert says: ${message}`);
  assert.equal(await page.getAttribute('html', 'lang'), 'ja');
  const loginId = page.getByLabel('ログインID', { exact: true });
  const password = page.getByLabel('パスワード', { exact: true });
  for (const field of [loginId, password]) {
    assert.equal(await field.getAttribute('aria-invalid'), 'true');
    // The error is announced with the field: aria-describedby points at the alert.
    assert.equal(await field.getAttribute('aria-describedby'), 'login-error');
  }
  assert.equal(await loginId.inputValue(), LOGIN2, 'the login ID is kept');
  assert.equal(await password.inputValue(), '', 'the password is not sent back');
  // The ID is filled in already: the cursor waits in the password field.
  assert.equal(await focused(page), '#password');

  await page.screenshot({ path: join(ARTIFACTS, 'login-error.png'), fullPage: true });

  // No redirect to the consuming system happened.
  assert.equal(new URL(page.url()).origin, PUBLIC);
  assert.deepEqual(callbacks, []);

  // The same page still works: the right password now completes the login.
  await password.fill(PASSWORD2);
  await password.press('Enter');
  const callback = await waitForCallback();
  assert.ok(callback.searchParams.get('code'));
  assert.equal(callback.searchParams.get('state'), request.state);
  assert.equal(callback.searchParams.get('iss'), PUBLIC);
});

test('the English link switches the page to English and keeps the login request', async () => {
  const request = authorizationRequest();
  await openLogin(request);
  const requestId = new URL(page.url()).searchParams.get('request');

  await page.getByRole('link', { name: 'English', exact: true }).click();
  await page.waitForURL((url) => url.searchParams.get('lang') === 'en');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  assert.equal(new URL(page.url()).searchParams.get('request'), requestId);
  await page.getByRole('heading', { level: 1, name: 'Log in' }).waitFor();
  await page.getByLabel('Login ID', { exact: true }).waitFor();
  await page.getByLabel('Password', { exact: true }).waitFor();
  assert.match(await page.locator('main').innerText(), new RegExp(CLIENT_NAME));
  // The link back names Japanese in Japanese, marked as such for screen readers.
  const back = page.getByRole('link', { name: '日本語', exact: true });
  assert.equal(await back.getAttribute('lang'), 'ja');
  await page.screenshot({ path: join(ARTIFACTS, 'login-en.png'), fullPage: true });

  // The choice is remembered (cookie) for the next page load without ?lang.
  await page.goto(`${PUBLIC}/login?request=${encodeURIComponent(requestId)}`);
  assert.equal(await page.getAttribute('html', 'lang'), 'en');

  // And a login from the English page works.
  await page.getByLabel('Login ID', { exact: true }).fill(LOGIN);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  const callback = await waitForCallback();
  assert.ok(callback.searchParams.get('code'));
  assert.equal(callback.searchParams.get('state'), request.state);
});

test('screenshot of the login page, wide and narrow', async () => {
  await openLogin(authorizationRequest());
  await page.getByRole('heading', { level: 1, name: 'ログイン' }).waitFor();
  // The stylesheet loaded (the header's accent border is there), so the shot shows the real page.
  const border = await page.locator('.site-header').evaluate((e) => getComputedStyle(e).borderBottomWidth);
  assert.equal(border, '3px');
  await page.screenshot({ path: join(ARTIFACTS, 'login.png'), fullPage: true });

  // Reflow (WCAG 1.4.10): at a phone's width nothing scrolls sideways.
  await page.setViewportSize({ width: 320, height: 640 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 320px viewport`);
  await page.screenshot({ path: join(ARTIFACTS, 'login-narrow.png'), fullPage: true });
});

test('the password field lets password managers fill it (WCAG 3.3.8)', async () => {
  await openLogin(authorizationRequest());
  assert.equal(await page.getByLabel('パスワード', { exact: true }).getAttribute('autocomplete'), 'current-password');
});

test('the focus outline has 3:1 contrast against the page (WCAG 1.4.11)', async () => {
  await openLogin(authorizationRequest());
  const [outline, background] = await page.locator('#login_id').evaluate((e) => [
    getComputedStyle(e).outlineColor, getComputedStyle(document.body).backgroundColor]);
  const ratio = contrast(outline, background);
  assert.ok(ratio >= 3, `focus outline ${outline} on ${background} has contrast ${ratio.toFixed(2)}:1`);
});

/** WCAG contrast ratio of two CSS rgb() colours. */
function contrast(a, b) {
  const luminance = (css) => {
    const [r, g, bl] = css.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((v) => {
      const c = v / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
