// Real-browser tests of IC cards and security keys: headless Chromium with a CDP virtual
// authenticator (a FIDO2 key that answers by itself), driven by playwright-core. Run through
// ./run.sh, which starts a throw-away Sekimori with demo data at http://localhost:<port> (WebAuthn
// needs a domain) and passes the URLs, demo logins and an administrator's API token.
//
// The main story runs as consecutive tests sharing one browser tab and its authenticator:
// enroll a card on the self-service page, log in with password + card, log in with the card
// alone, have the hotline report the card lost, and check that everything obtained with the
// card has ended. The operators' hotline page has a test of its own with another person.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
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
// The card holder of the main story, and the person whose card the hotline page stops.
const HOLDER = { login: env('SEKIMORI_TEST_LOGIN3'), password: env('SEKIMORI_TEST_PASSWORD3'), name: env('SEKIMORI_TEST_NAME3') };
const OTHER = { login: env('SEKIMORI_TEST_LOGIN4'), password: env('SEKIMORI_TEST_PASSWORD4'), name: env('SEKIMORI_TEST_NAME4') };
const CLIENT_ID = 'toshokan';
const REDIRECT_URI = 'http://127.0.0.1:9002/callback';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const TIMEOUT = 15_000;
const ACR_HWK = 'urn:sekimori:acr:hwk';
const CARD_BUTTON = 'ICカード・セキュリティキーを使う';
const CARD_LOGIN_LINK = 'ICカード・セキュリティキーでログイン';

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

/** An HTTP call outside the browser; `describe` says what was asked and answered, for messages. */
async function call(method, url, { token, json, form } = {}) {
  const headers = {};
  let body;
  if (token) headers.authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  if (form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form);
  }
  const response = await fetch(url, { method, headers, body, redirect: 'manual' });
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  const sent = json !== undefined ? ` ${JSON.stringify(json)}` : form ? ` ${new URLSearchParams(form)}` : '';
  const wwwAuth = response.headers.get('www-authenticate');
  return {
    status: response.status,
    data,
    text,
    headers: response.headers,
    describe: `${method} ${url}${sent} → ${response.status}${wwwAuth ? ` (WWW-Authenticate: ${wwwAuth})` : ''} ${text.slice(0, 600)}`,
  };
}

const admin = (method, path, json, token = ADMIN_TOKEN) => call(method, `${ADMIN}${path}`, { token, json });

/** The one person the hotline search finds by this exact name (as the demo prints it). */
async function findPerson(name, token) {
  token ??= await hotlineToken();
  const found = await admin('GET', `/api/v1/hotline/people?q=${encodeURIComponent(name)}`, undefined, token);
  assert.equal(found.status, 200, found.describe);
  const people = found.data.items.filter((p) => p.name === name);
  assert.equal(people.length, 1, `exactly one person named ${name}: ${found.describe}`);
  return people[0];
}

async function enrollmentCode(personId) {
  const issued = await admin('POST', `/api/v1/people/${encodeURIComponent(personId)}/enrollment-codes`);
  assert.equal(issued.status, 201, issued.describe);
  assert.ok(issued.data.code, `an enrollment code: ${issued.describe}`);
  assert.ok(issued.data.expires_at > Date.now() / 1000, `the code is not already expired: ${issued.describe}`);
  return issued.data.code;
}

/** A hotline operator's token (scope hotline only, owned by the operator), made by run.sh. */
async function hotlineToken() {
  return env('SEKIMORI_TEST_HOTLINE_TOKEN');
}

async function redeem(code, request) {
  const answer = await call('POST', `${PUBLIC}/token`, {
    form: {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID,
      code_verifier: request.verifier,
    },
  });
  assert.equal(answer.status, 200, answer.describe);
  assert.ok(answer.data.id_token, `an ID token is issued: ${answer.describe}`);
  assert.ok(answer.data.access_token, `an access token is issued: ${answer.describe}`);
  const claims = JSON.parse(Buffer.from(answer.data.id_token.split('.')[1], 'base64url').toString('utf8'));
  return { tokens: answer.data, claims };
}

const userinfo = (accessToken) => call('GET', `${PUBLIC}/userinfo`, { token: accessToken });

let browser;
let catcher; // stands in for the consuming system at the redirect URI
const callbacks = []; // every callback URL the browser reached

// Like login.test.mjs: a tiny server plays the consuming system, and Chromium's
// --host-resolver-rules sends 127.0.0.1:9002 to it (Playwright routes never see a request
// that continues a redirect).
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
  await browser?.close();
  catcher?.closeAllConnections?.();
  await new Promise((resolve) => (catcher ? catcher.close(resolve) : resolve()));
});

/**
 * A browser tab with a virtual FIDO2 authenticator (USB, resident keys, user verification
 * that always succeeds, touch simulated), and a log of what happened in it for diagnostics.
 */
async function openTab() {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  const events = [];
  const note = (line) => events.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
  page.on('console', (m) => note(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => note(`page error: ${e.message}`));
  page.on('requestfailed', (r) => note(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('framenavigated', (f) => f === page.mainFrame() && note(`navigated to ${f.url()}`));
  page.on('response', async (r) => {
    const path = new URL(r.url()).pathname;
    if (!(path.startsWith('/webauthn/') || r.status() >= 400 || r.request().method() === 'POST')) return;
    let body = '';
    if (path.startsWith('/webauthn/') || r.status() >= 400) body = await r.text().then((t) => t.slice(0, 300), () => '');
    note(`${r.request().method()} ${r.url()} → ${r.status()} ${body}`);
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'usb',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { context, page, cdp, authenticatorId, events };
}

async function credentialsOf(tab) {
  const { credentials } = await tab.cdp.send('WebAuthn.getCredentials', { authenticatorId: tab.authenticatorId });
  return credentials;
}

/** Runs a step; if it fails, adds what the browser showed and did to the error, and a screenshot. */
async function step(tab, name, fn) {
  try {
    return await fn();
  } catch (error) {
    const lines = [`---- diagnostics: ${name} ----`, `page URL: ${tab.page.url()}`];
    try {
      const text = await tab.page.locator('body').innerText({ timeout: 2_000 });
      lines.push(`page text: ${text.replace(/\s+/g, ' ').trim().slice(0, 1200)}`);
    } catch (e) {
      lines.push(`page text: (unavailable: ${e.message.split('\n')[0]})`);
    }
    lines.push(`callbacks reached: ${JSON.stringify(callbacks)}`);
    try {
      const cookies = await tab.context.cookies();
      lines.push(`cookies: ${cookies.map((c) => `${c.name}@${c.domain}`).join(', ') || '(none)'}`);
      const creds = await credentialsOf(tab);
      lines.push(`virtual authenticator: ${creds.length} credential(s)${creds.map((c) =>
        ` [rpId=${c.rpId} resident=${c.isResidentCredential} signCount=${c.signCount}]`).join('')}`);
    } catch (e) {
      lines.push(`(browser state unavailable: ${e.message.split('\n')[0]})`);
    }
    lines.push('browser events (last 25):', ...tab.events.slice(-25).map((l) => `  ${l}`));
    const shot = join(ARTIFACTS, `cards-failure-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.png`);
    try {
      await tab.page.screenshot({ path: shot, fullPage: true, timeout: 5_000 });
      lines.push(`screenshot: ${shot}`);
    } catch {
      /* the page may be gone */
    }
    error.message = `${error.message}\n${lines.join('\n')}`;
    throw error;
  }
}

/** Waits until the browser is at the consuming system's callback, and returns that URL. */
async function waitForCallback(page) {
  await page.waitForURL((url) => url.href.startsWith(REDIRECT_URI));
  await page.getByText('callback reached').waitFor();
  assert.equal(callbacks.length, 1, `exactly one request to the consuming system: ${JSON.stringify(callbacks)}`);
  return new URL(callbacks[0]);
}

function assertCode(callback, request) {
  assert.equal(callback.searchParams.get('error'), null,
    `no error at the callback: ${callback.searchParams.get('error')} ${callback.searchParams.get('error_description') ?? ''}`);
  assert.ok(callback.searchParams.get('code'), `a code at the callback: ${callback.href}`);
  assert.equal(callback.searchParams.get('state'), request.state);
  assert.equal(callback.searchParams.get('iss'), PUBLIC);
  return callback.searchParams.get('code');
}

/** Opens the authorization URL (fresh request) and fills in the password form. */
async function passwordLogin(page, who, request) {
  const response = await page.goto(request.url);
  assert.equal(response.status(), 200, `GET ${request.url} → ${response.status()}`);
  assert.equal(new URL(page.url()).pathname, '/login');
  await page.getByLabel('ログインID', { exact: true }).fill(who.login);
  await page.getByLabel('パスワード', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'ログイン', exact: true }).click();
}

/** The card page is showing: press its button, and the virtual authenticator answers. */
async function useCard(page, title) {
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
  await page.getByRole('button', { name: CARD_BUTTON, exact: true }).click();
}

/** On the self-service page (logged in), enrolls the tab's authenticator with a code. */
async function enrollCard(tab, { label, number, code }) {
  const { page } = tab;
  const response = await page.goto(`${PUBLIC}/authenticators`);
  assert.equal(response.status(), 200, `GET /authenticators → ${response.status()}`);
  await page.getByRole('heading', { level: 1, name: 'ICカード・セキュリティキー', exact: true }).waitFor();
  await page.getByText('登録されているICカード・セキュリティキーはありません。').waitFor();
  // The fields are found by their labels, so this also checks that they are labelled.
  await page.getByLabel(/^名前/).fill(label);
  await page.getByLabel(/^管理番号/).fill(number);
  const codeField = page.getByLabel('登録コード', { exact: true });
  assert.equal(await codeField.getAttribute('autocomplete'), 'one-time-code');
  await codeField.fill(code);
  await page.getByRole('button', { name: '登録を始める', exact: true }).click();
  await useCard(page, 'ICカード・セキュリティキーの登録');
  await page.waitForURL((url) => url.pathname === '/authenticators' && url.searchParams.get('enrolled') === '1');
  const notice = page.getByRole('status').filter({ hasText: '登録しました' });
  await notice.waitFor();
  const item = page.getByRole('listitem').filter({ hasText: label });
  assert.equal(await item.count(), 1, 'the new card is listed once');
  const text = await item.innerText();
  assert.ok(text.includes(number), `the list shows the management number: ${text}`);
  assert.ok(text.includes('使用中'), `the card is in use: ${text}`);
  // Its "report lost" link names the card for screen readers, and asks before stopping it.
  const report = item.getByRole('link', { name: `紛失を届け出る: ${label}`, exact: true });
  await report.click();
  await page.getByRole('heading', { level: 1, name: '紛失の届け出' }).waitFor();
  await page.getByText('届け出ますか。').waitFor();
  await page.getByRole('button', { name: '紛失を届け出て使用停止にする' }).waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'cards-lost-confirm.png'), fullPage: true });
  await page.getByRole('link', { name: '届け出ずに戻る' }).click();
  await page.waitForURL((url) => url.pathname === '/authenticators');
  const after = await page.getByRole('listitem').filter({ hasText: label }).innerText();
  assert.ok(after.includes('使用中'), `going back stopped nothing: ${after}`);
}

// ---- The main story --------------------------------------------------------------------

const story = {
  label: '職員証',
  number: `KB-${randomBytes(3).toString('hex').toUpperCase()}`,
};

function requireStory(...keys) {
  for (const key of keys) {
    if (story[key] === undefined) throw new Error(`an earlier test did not get as far as ${key}; see its failure`);
  }
}

test('a person logs in with a password and enrolls a card with a code on the self-service page', async () => {
  const tab = (story.tab = await openTab());
  const { page } = tab;

  await step(tab, 'password login before any card', async () => {
    callbacks.length = 0;
    const request = authorizationRequest();
    await passwordLogin(page, HOLDER, request);
    assertCode(await waitForCallback(page), request);
  });

  const person = await findPerson(HOLDER.name);
  assert.deepEqual(person.authenticators, [], 'the person has no card yet');
  story.personId = person.id;
  story.employeeNumber = person.employee_number;
  const code = await enrollmentCode(person.id);

  await step(tab, 'enrollment', async () => {
    await enrollCard(tab, { label: story.label, number: story.number, code });
    await page.screenshot({ path: join(ARTIFACTS, 'cards-enrolled.png'), fullPage: true });
  });

  // The authenticator made a discoverable credential for this relying party.
  const credentials = await credentialsOf(tab);
  assert.equal(credentials.length, 1, 'the virtual authenticator holds one credential');
  assert.equal(credentials[0].rpId, new URL(PUBLIC).hostname);
  assert.equal(credentials[0].isResidentCredential, true, 'the credential is discoverable (resident key)');

  // The API sees the same card.
  const after = await findPerson(HOLDER.name);
  assert.equal(after.authenticators.length, 1, `one card: ${JSON.stringify(after.authenticators)}`);
  const [card] = after.authenticators;
  assert.equal(card.label, story.label);
  assert.equal(card.management_number, story.number);
  assert.equal(card.status, 'active');
  story.cardId = card.id;

  // A code is good once.
  await step(tab, 'enrollment code reuse', async () => {
    await page.goto(`${PUBLIC}/authenticators`);
    await page.getByLabel(/^名前/).fill('予備');
    await page.getByLabel('登録コード', { exact: true }).fill(code);
    await page.getByRole('button', { name: '登録を始める', exact: true }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.innerText(), /登録コードが正しくないか/);
  });
});

test('with a card, the password login asks for it and the ID token says acr hwk', async () => {
  requireStory('tab', 'cardId');
  const { tab } = story;
  const { page, context } = tab;
  await context.clearCookies(); // a new visit; the authenticator keeps its credential
  callbacks.length = 0;
  const request = authorizationRequest();

  const callback = await step(tab, 'password then card', async () => {
    await passwordLogin(page, HOLDER, request);
    // The card page comes after the right password, before any session or callback.
    await page.getByRole('heading', { level: 1, name: 'ICカードによる確認' }).waitFor();
    assert.equal(new URL(page.url()).origin, PUBLIC);
    assert.deepEqual(callbacks, [], 'no redirect to the consuming system before the card');
    const session = (await context.cookies(PUBLIC)).find((c) => c.name === 'sekimori_session');
    assert.equal(session, undefined, 'no session before the card');
    await page.screenshot({ path: join(ARTIFACTS, 'cards-second-factor.png'), fullPage: true });
    await useCard(page, 'ICカードによる確認');
    return waitForCallback(page);
  });
  const { tokens, claims } = await redeem(assertCode(callback, request), request);
  assert.equal(claims.nonce, request.nonce);
  assert.equal(claims.acr, ACR_HWK, `acr: ${JSON.stringify(claims)}`);
  assert.ok(Array.isArray(claims.amr) && claims.amr.includes('hwk'), `amr includes hwk: ${JSON.stringify(claims.amr)}`);
  assert.ok(claims.amr.includes('pwd'), `amr includes pwd: ${JSON.stringify(claims.amr)}`);
  const info = await userinfo(tokens.access_token);
  assert.equal(info.status, 200, info.describe);
  assert.equal(info.data.sub, claims.sub);
  story.sub = claims.sub;
  story.tokens = tokens;
  console.log(`password + card login: amr ${JSON.stringify(claims.amr)}, refresh token issued: ${Boolean(tokens.refresh_token)}`);
});

test('the card alone logs in (passwordless, discoverable credential)', async () => {
  requireStory('tab', 'sub');
  const { tab } = story;
  const { page, context } = tab;
  await context.clearCookies();
  callbacks.length = 0;
  const request = authorizationRequest();

  const callback = await step(tab, 'passwordless login', async () => {
    await page.goto(request.url);
    assert.equal(new URL(page.url()).pathname, '/login');
    await page.getByRole('link', { name: CARD_LOGIN_LINK, exact: true }).click();
    await useCard(page, CARD_LOGIN_LINK);
    return waitForCallback(page);
  });
  const { tokens, claims } = await redeem(assertCode(callback, request), request);
  assert.equal(claims.sub, story.sub, 'the card says who it is: the same person');
  assert.equal(claims.acr, ACR_HWK);
  assert.ok(claims.amr.includes('hwk'), `amr includes hwk: ${JSON.stringify(claims.amr)}`);
  assert.ok(!claims.amr.includes('pwd'), `no password was used: ${JSON.stringify(claims.amr)}`);
  story.passwordlessTokens = tokens;

  // The browser now has a live session: a silent request gets a code.
  await step(tab, 'prompt=none with a live session', async () => {
    callbacks.length = 0;
    const silent = authorizationRequest({ prompt: 'none' });
    await page.goto(silent.url);
    assertCode(await waitForCallback(page), silent);
  });
  story.sessionLive = true;
});

test('the hotline stops the card: its access token is refused at once', async () => {
  requireStory('tokens', 'sessionLive');
  const operator = await hotlineToken();

  // The operator's token is for the hotline only.
  const refused = await admin('POST', `/api/v1/people/${story.personId}/enrollment-codes`, undefined, operator);
  assert.equal(refused.status, 403, `a hotline token cannot issue enrollment codes: ${refused.describe}`);

  const person = await findPerson(HOLDER.name, operator);
  assert.equal(person.employee_number, story.employeeNumber);
  const card = person.authenticators.find((c) => c.label === story.label);
  assert.ok(card, `the hotline sees the card: ${JSON.stringify(person.authenticators)}`);
  assert.equal(card.id, story.cardId);
  assert.equal(card.management_number, story.number);

  const lostUrl = `${ADMIN}/api/v1/authenticators/${encodeURIComponent(card.id)}/lost`;
  const report = { reported_by: '本人（電話）', reason: '紛失' };
  const lostResponse = await fetch(lostUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
    body: JSON.stringify(report),
  });
  const reportedAt = performance.now();
  const refusal = await userinfo(story.tokens.access_token);
  const refusedAt = performance.now();
  const lostText = await lostResponse.text();
  const lostDescribe = `POST ${lostUrl} ${JSON.stringify(report)} → ${lostResponse.status} ${lostText}`;
  console.log('revoke-to-refusal ms:', (refusedAt - reportedAt).toFixed(1));
  console.log(`hotline answer: ${lostText}`);

  assert.equal(lostResponse.status, 200, lostDescribe);
  const lost = JSON.parse(lostText);
  assert.equal(lost.authenticator.id, card.id);
  assert.notEqual(lost.authenticator.status, 'active', lostDescribe);
  assert.match(lost.loss_reference, /^L-\d{8}-[A-HJ-NP-Z2-9]{4}$/, `a reference number for the caller: ${lostDescribe}`);
  assert.equal(lost.already_reported, false, lostDescribe);
  assert.ok(lost.sessions_ended >= 2, `both card sessions (password + card, card alone) ended: ${lostDescribe}`);
  assert.ok(lost.access_tokens_revoked >= 2, `both logins' access tokens revoked: ${lostDescribe}`);

  assert.equal(refusal.status, 401, `userinfo right after the report: ${refusal.describe}`);
  const other = await userinfo(story.passwordlessTokens.access_token);
  assert.equal(other.status, 401, `the passwordless login's token too: ${other.describe}`);

  // Refresh tokens obtained with the card are dead too.
  for (const tokens of [story.tokens, story.passwordlessTokens]) {
    if (!tokens.refresh_token) {
      console.log('no refresh token was issued to toshokan; nothing to refresh');
      continue;
    }
    const refreshed = await call('POST', `${PUBLIC}/token`, {
      form: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: CLIENT_ID },
    });
    assert.equal(refreshed.status, 400, refreshed.describe);
    assert.equal(refreshed.data?.error, 'invalid_grant', refreshed.describe);
  }

  // A second report of the same card (the caller rings twice) hears the same reference number
  // and revokes nothing more.
  const again = await admin('POST', `/api/v1/authenticators/${encodeURIComponent(card.id)}/lost`, report, operator);
  assert.equal(again.status, 200, again.describe);
  assert.equal(again.data?.already_reported, true, again.describe);
  assert.equal(again.data?.loss_reference, lost.loss_reference, again.describe);
  assert.equal(again.data?.sessions_ended, 0, again.describe);
  assert.equal(again.data?.access_tokens_revoked, 0, again.describe);
  const listed = await findPerson(HOLDER.name, operator);
  assert.notEqual(listed.authenticators.find((c) => c.id === card.id)?.status, 'active');
  story.revoked = true;
});

test('after the report the card session is gone and the card no longer logs in', async () => {
  requireStory('revoked');
  const { tab } = story;
  const { page, context } = tab;

  // The same browser still sends the session cookie of the card login: it must not count.
  await step(tab, 'prompt=none after the report', async () => {
    assert.ok((await context.cookies(PUBLIC)).some((c) => c.name === 'sekimori_session'),
      'the browser still holds the old session cookie');
    callbacks.length = 0;
    const silent = authorizationRequest({ prompt: 'none' });
    await page.goto(silent.url);
    const callback = await waitForCallback(page);
    assert.equal(callback.searchParams.get('error'), 'login_required', `callback: ${callback.href}`);
    assert.equal(callback.searchParams.get('code'), null);
    assert.equal(callback.searchParams.get('state'), silent.state);
  });

  await step(tab, 'passwordless login with the stopped card', async () => {
    await context.clearCookies();
    callbacks.length = 0;
    const request = authorizationRequest();
    await page.goto(request.url);
    await page.getByRole('link', { name: CARD_LOGIN_LINK, exact: true }).click();
    // The authenticator does answer (it still holds the credential); the server refuses it.
    const [answer] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/webauthn/login'),
      useCard(page, CARD_LOGIN_LINK),
    ]);
    const answerText = await answer.text();
    assert.equal(answer.status(), 400, `POST /webauthn/login → ${answer.status()} ${answerText}`);
    assert.equal(JSON.parse(answerText).redirect, undefined, `no redirect: ${answerText}`);
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const message = await alert.innerText();
    assert.ok(message.includes('確認できませんでした'), `the alert says: ${message}`);
    await page.screenshot({ path: join(ARTIFACTS, 'cards-refused.png'), fullPage: true });
    await page.waitForTimeout(500);
    assert.deepEqual(callbacks, [], 'no redirect to the consuming system');
    assert.equal(new URL(page.url()).origin, PUBLIC);
  });

  // A stopped card does not leave the password alone: the replacement comes first.
  await step(tab, 'the password alone after the report asks for a replacement card', async () => {
    await context.clearCookies();
    callbacks.length = 0;
    const request = authorizationRequest();
    await passwordLogin(page, HOLDER, request);
    await page.getByRole('heading', { level: 1, name: '新しいカードの登録', exact: true }).waitFor();
    await page.waitForTimeout(300);
    assert.deepEqual(callbacks, [], 'no code for the password alone');
    // The person types the counter's code first: the field has the focus.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'enrollment_code');
    await page.screenshot({ path: join(ARTIFACTS, 'cards-replacement.png'), fullPage: true });
    const code = await enrollmentCode(story.personId);
    await page.keyboard.type(code);
    await page.getByLabel(/^名前/).fill('再発行の職員証');
    // The stopped card's number, typed in lower case, is the same number and free again.
    await page.getByLabel(/^管理番号/).fill(story.number.toLowerCase());
    await page.getByRole('button', { name: '新しいカードを登録する', exact: true }).click();
    await useCard(page, '新しいカードの登録');
    assertCode(await waitForCallback(page), request);
  });
  const replaced = await findPerson(HOLDER.name);
  const active = replaced.authenticators.filter((c) => c.status === 'active');
  assert.equal(active.length, 1, `one active card, the replacement: ${JSON.stringify(replaced.authenticators)}`);
  assert.equal(active[0].management_number, story.number, 'stored in one form');
  await tab.context.close();
});

// ---- The operators' page -----------------------------------------------------------------

test("the operators' hotline page finds a person and stops a card with the keyboard only", async () => {
  // Another person enrolls a card of their own.
  const holder = await openTab();
  const label = 'セキュリティキー';
  const number = `SK-${randomBytes(3).toString('hex').toUpperCase()}`;
  const person = await findPerson(OTHER.name);
  await step(holder, 'login and enrollment', async () => {
    callbacks.length = 0;
    const request = authorizationRequest();
    await passwordLogin(holder.page, OTHER, request);
    assertCode(await waitForCallback(holder.page), request);
    await enrollCard(holder, { label, number, code: await enrollmentCode(person.id) });
  });
  await holder.context.close();

  const operator = await hotlineToken();
  const desk = await openTab();
  const { page } = desk;
  const focused = () => page.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body) return 'body';
    if (e.id) return `#${e.id}`;
    if (e.name) return `[name=${e.name}]`;
    return `${e.tagName.toLowerCase()}:${e.textContent.trim().replace(/\s+/g, ' ')}`;
  });

  await step(desk, 'hotline page', async () => {
    const response = await page.goto(`${ADMIN}/hotline`);
    assert.equal(response.status(), 200);
    assert.equal(await page.getAttribute('html', 'lang'), 'ja');
    await page.getByRole('heading', { level: 1, name: /紛失届 受付/ }).waitFor();
    await page.getByLabel(/受付用APIトークン/).waitFor();
    await page.getByRole('search').getByLabel(/職員番号または氏名/).waitFor();

    // Keyboard only: the token, the search term, Enter.
    await page.keyboard.press('Tab');
    assert.equal(await focused(), '#api-token');
    await page.keyboard.type(operator);
    await page.keyboard.press('Tab');
    assert.equal(await focused(), '#q');
    await page.keyboard.type(person.employee_number);
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: '1 人見つかりました' }).waitFor();
    await page.getByRole('heading', { level: 2, name: new RegExp(person.employee_number) }).waitFor();
    const reportForm = page.getByRole('form', { name: `${label} の紛失届 (report ${label} lost)` });
    await reportForm.waitFor();
    assert.match(await page.getByRole('listitem').filter({ hasText: label }).innerText(), new RegExp(number));

    // On from the search field: its button, then the report form's fields.
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'button:検索 Search');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), '[name=reported_by]');
    assert.equal(await reportForm.getByLabel(/届け出た人/).evaluate((e) => e === document.activeElement), true,
      'the focused field is labelled 届け出た人');
    await page.keyboard.type('本人（電話）');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), '[name=reason]');
    await page.keyboard.type('盗難');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'button:このカードを停止する Stop this card');
    const [stopped] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/lost')),
      page.keyboard.press('Enter'),
    ]);
    assert.equal(stopped.status(), 200, `POST ${stopped.url()} → ${stopped.status()} ${await stopped.text()}`);
    // The page searches again and shows the card stopped, with the reference number the
    // operator reads to the caller, in the status and on the card.
    await page.getByRole('listitem').filter({ hasText: label }).filter({ hasText: '停止済み' }).waitFor();
    const reference = (await page.locator('#status').innerText()).match(/受付番号 (L-\d{8}-[A-HJ-NP-Z2-9]{4})/);
    assert.ok(reference, `the status gives the reference number: ${await page.locator('#status').innerText()}`);
    assert.match(await page.getByRole('listitem').filter({ hasText: label }).innerText(), new RegExp(reference[1]));
    console.log(`hotline page after stopping: status "${await page.locator('#status').innerText()}", focus on ${await focused()}`);
    assert.equal(await reportForm.count(), 0, 'a stopped card has no report form');
    await page.screenshot({ path: join(ARTIFACTS, 'hotline.png'), fullPage: true });
  });

  const after = await findPerson(OTHER.name, operator);
  const card = after.authenticators.find((c) => c.label === label);
  assert.ok(card && card.status !== 'active', `the card is stopped: ${JSON.stringify(after.authenticators)}`);
  await desk.context.close();
});
