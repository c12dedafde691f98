// Interoperability test of Sekimori's whole token lifecycle with an independent, certified
// relying-party library: openid-client v6 (on oauth4webapi) does discovery, the code flow,
// refresh, introspection, revocation, client_credentials and RP-initiated logout exactly as a
// consuming system would; jose verifies access tokens and back-channel logout tokens against
// the published JWKS. Run through ./run.sh, which starts a throw-away Sekimori with demo data,
// registers the confidential client `interop-rp` and passes everything in the environment.
//
// The "browser" is a fetch with a tiny cookie jar: Sekimori's login page is a plain HTML form
// and works without JavaScript, so following redirects by hand and posting the form is
// exactly what a browser does, minus the rendering.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import * as client from 'openid-client';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through run.sh`);
  return value;
}

const ISSUER = env('SEKIMORI_TEST_ISSUER').replace(/\/$/, '');
const CLIENT_ID = env('SEKIMORI_TEST_CLIENT_ID');
const CLIENT_SECRET = env('SEKIMORI_TEST_CLIENT_SECRET');
const RP_PORT = Number(env('SEKIMORI_TEST_RP_PORT'));
const LOGIN = env('SEKIMORI_TEST_LOGIN');
const PASSWORD = env('SEKIMORI_TEST_PASSWORD');

const RP = `http://127.0.0.1:${RP_PORT}`;
const REDIRECT_URI = `${RP}/callback`;
const POST_LOGOUT_REDIRECT_URI = `${RP}/logged-out`;
// Scopes of a browser login. No offline_access: its refresh tokens are bound to the browser
// session, which is what lets logout and refresh-token reuse end them.
const SCOPE = 'openid profile email';
const SERVICE_SCOPE = 'interop.read';
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
// The outbox worker delivers logout notices "within a few seconds".
const BACKCHANNEL_WAIT_MS = 15_000;
const HTTP_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// One discovered configuration for every test. Discovery goes through openid-client itself
// (test 1 checks the metadata); allowInsecureRequests because the throw-away issuer is plain
// http on 127.0.0.1, enableNonRepudiationChecks so that openid-client also verifies the ID
// token's signature against the JWKS instead of trusting the TLS channel alone.

let discovered;
function configuration() {
  discovered ??= client.discovery(new URL(ISSUER), CLIENT_ID, undefined, client.ClientSecretBasic(CLIENT_SECRET), {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });
  return discovered;
}

let jwks;
async function keySet() {
  const config = await configuration();
  jwks ??= createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri));
  return jwks;
}

// ---------------------------------------------------------------------------------------------
// A browser without a screen: manual redirects and a cookie jar for the issuer's origin.

class Browser {
  /** @type {Map<string, string>} cookie name → value */
  cookies = new Map();

  constructor(cookies) {
    if (cookies) this.cookies = new Map(cookies);
  }

  /** A copy with the same cookies, e.g. to replay an SSO cookie after the browser dropped it. */
  clone() {
    return new Browser(this.cookies);
  }

  async request(url, init = {}) {
    url = new URL(url);
    // Only the issuer gets cookies; this jar knows no domains or paths (all of Sekimori's are '/').
    if (url.origin !== new URL(ISSUER).origin) throw new Error(`the browser would leave the issuer for ${url}`);
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const response = await fetch(url, {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    this.store(response);
    return response;
  }

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const expired = attributes.some((a) => {
        const [k, v = ''] = a.split('=');
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  get(url) {
    return this.request(url);
  }

  post(url, fields) {
    return this.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

const isRedirect = (status) => [301, 302, 303, 307, 308].includes(status);

/** What the server answered, for failure messages. */
async function describe(response, url) {
  const body = await response.text().catch((e) => `(unreadable body: ${e})`);
  const location = response.headers.get('location');
  return `${response.status} ${response.statusText} from ${url}`
    + (location ? `\nLocation: ${location}` : '')
    + `\n---- body ----\n${body.slice(0, 2000)}${body.length > 2000 ? '\n…' : ''}`;
}

/**
 * Follows the issuer's redirects until one leaves for the relying party (whose URL is
 * returned, never fetched) or a page is shown ({ page, url } is returned).
 */
async function follow(browser, response, url, trail = []) {
  for (let hops = 0; hops < 10; hops++) {
    if (!isRedirect(response.status)) return { page: response, url, trail };
    const location = response.headers.get('location');
    assert.ok(location, `a ${response.status} without Location from ${url}`);
    const next = new URL(location, url);
    trail.push(`${response.status} ${url} → ${next}`);
    if (next.origin === new URL(RP).origin) return { rp: next, trail };
    url = next;
    response = await browser.get(url);
  }
  assert.fail(`more than 10 redirects:\n${trail.join('\n')}`);
}

function htmlUnescape(s) {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The login form of a page: its action and every named input's value. */
function loginForm(html, pageUrl) {
  const form = /<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return null;
  const fields = {};
  for (const [input] of form[2].matchAll(/<input\b[^>]*>/gi)) {
    const name = /\bname="([^"]*)"/i.exec(input);
    const value = /\bvalue="([^"]*)"/i.exec(input);
    if (name) fields[htmlUnescape(name[1])] = value ? htmlUnescape(value[1]) : '';
  }
  return { action: new URL(htmlUnescape(form[1]), pageUrl), fields };
}

/**
 * Sends the browser to `authorizationUrl`, signs in with the demo login when Sekimori asks,
 * and returns the URL the browser is redirected to at the relying party.
 */
async function signIn(browser, authorizationUrl) {
  let result = await follow(browser, await browser.get(authorizationUrl), authorizationUrl);
  if (result.rp) return result.rp; // single sign-on: no login page
  const { page, url, trail } = result;
  const html = await page.text();
  const form = page.status === 200 ? loginForm(html, url) : null;
  assert.ok(
    form && 'csrf_token' in form.fields && 'request' in form.fields && 'password' in form.fields,
    `expected the login form after\n${trail.join('\n')}\nbut got ${page.status} from ${url}:\n${html.slice(0, 2000)}`,
  );
  assert.ok(browser.cookies.has('sekimori_csrf'), 'the login page set no sekimori_csrf cookie');
  const fields = { ...form.fields, login_id: LOGIN, password: PASSWORD };
  result = await follow(browser, await browser.post(form.action, fields), form.action, [...trail, `POST ${form.action}`]);
  if (result.page) {
    assert.fail(`the login did not lead back to the relying party:\n${result.trail.join('\n')}\n`
      + await describe(result.page, result.url));
  }
  assert.ok(browser.cookies.has('sekimori_session'), 'a successful login set no sekimori_session (SSO) cookie');
  return result.rp;
}

/** A fresh authorization request: PKCE S256, state and nonce, as openid-client builds them. */
async function authorizationRequest(config, extra = {}) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const expectedState = client.randomState();
  const expectedNonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state: expectedState,
    nonce: expectedNonce,
    ...extra,
  });
  return { url, checks: { pkceCodeVerifier, expectedState, expectedNonce } };
}

/** A person signs in through a (new) browser; the relying party redeems the code. */
async function login(config, browser = new Browser()) {
  const { url, checks } = await authorizationRequest(config);
  const callback = await signIn(browser, url);
  assert.equal(callback.origin + callback.pathname, REDIRECT_URI, `redirected to ${callback}, not to the redirect_uri`);
  assert.equal(callback.searchParams.get('error'), null,
    `the authorization failed: ${callback.searchParams.get('error')}: ${callback.searchParams.get('error_description')}`);
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  return { browser, callback, tokens, claims: tokens.claims() };
}

/** An OAuth error answer, whichever way openid-client reports it. */
async function oauthFailure(promise) {
  try {
    await promise;
  } catch (err) {
    if (err instanceof client.ResponseBodyError) {
      return { status: err.status, error: err.error, description: err.error_description, challenges: [] };
    }
    // RFC 6749 §5.2: a 401 to a client that used HTTP authentication carries WWW-Authenticate,
    // which openid-client reports as a challenge; the OAuth error is still in the body.
    if (err instanceof client.WWWAuthenticateChallengeError) {
      const body = await err.response.json().catch(() => ({}));
      return { status: err.status, error: body.error, description: body.error_description, challenges: err.cause };
    }
    throw err;
  }
  assert.fail('expected an OAuth error response, but the request succeeded');
}

async function assertActive(config, token, what) {
  const info = await client.tokenIntrospection(config, token);
  assert.equal(info.active, true, `${what} should introspect active: ${JSON.stringify(info)}`);
  return info;
}

async function assertInactive(config, token, what) {
  const info = await client.tokenIntrospection(config, token);
  assert.deepEqual(info, { active: false }, `${what} should introspect as just {active:false}`);
}

/** Verifies an RFC 9068 access token with the published keys and returns its claims. */
async function verifyAccessToken(token) {
  const config = await configuration();
  const { payload, protectedHeader } = await jwtVerify(token, await keySet(), {
    issuer: config.serverMetadata().issuer,
    typ: 'at+jwt',
    requiredClaims: ['iss', 'sub', 'aud', 'client_id', 'exp', 'iat', 'jti', 'scope'],
  });
  assert.equal(payload.client_id, CLIENT_ID);
  return { payload, protectedHeader };
}

// ---------------------------------------------------------------------------------------------
// The relying party's back-channel logout endpoint (OpenID Back-Channel Logout 1.0 §2.5, §2.6).

/** Every notice received: { sid, claims, header } when valid, { sid, error } when not. */
const notices = [];
let rpServer;

async function receiveLogoutToken(logoutToken) {
  const config = await configuration();
  const { payload, protectedHeader } = await jwtVerify(logoutToken, await keySet(), {
    issuer: config.serverMetadata().issuer,
    audience: CLIENT_ID,
    typ: 'logout+jwt',
    requiredClaims: ['iat', 'jti', 'events', 'sid', 'sub'],
  });
  assert.equal(protectedHeader.typ, 'logout+jwt', 'logout token header typ');
  assert.equal(typeof payload.iat, 'number', 'logout token iat');
  assert.equal(typeof payload.jti, 'string', 'logout token jti');
  assert.ok(payload.events && typeof payload.events === 'object', 'logout token events');
  assert.deepEqual(payload.events[BACKCHANNEL_EVENT], {}, `logout token events.${BACKCHANNEL_EVENT}`);
  assert.ok(!('nonce' in payload), 'a logout token must not contain a nonce (§2.4)');
  return { claims: payload, header: protectedHeader };
}

function startRelyingParty() {
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/backchannel') {
      res.writeHead(404).end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const type = req.headers['content-type'] ?? '';
      let logoutToken = null;
      let sid;
      try {
        assert.match(type, /^application\/x-www-form-urlencoded\b/, 'the notice content-type');
        logoutToken = new URLSearchParams(body).get('logout_token');
        assert.ok(logoutToken, `no logout_token in the notice body: ${body.slice(0, 200)}`);
        // Unverified, only to say which session a bad notice was about.
        sid = (() => { try { return decodeJwt(logoutToken).sid; } catch { return undefined; } })();
        const { claims, header } = await receiveLogoutToken(logoutToken);
        notices.push({ sid: claims.sid, claims, header });
        res.writeHead(200, { 'cache-control': 'no-store' }).end();
      } catch (err) {
        notices.push({ sid, error: err, body });
        res.writeHead(400, { 'content-type': 'application/json', 'cache-control': 'no-store' })
          .end(JSON.stringify({ error: 'invalid_request', error_description: String(err.message) }));
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(RP_PORT, '127.0.0.1', () => resolve(server));
  });
}

/** Waits for the back-channel logout notice of session `sid`; returns its verified claims. */
async function waitForLogoutNotice(sid) {
  const deadline = Date.now() + BACKCHANNEL_WAIT_MS;
  for (;;) {
    const bad = notices.find((n) => n.error && (n.sid === sid || n.sid === undefined));
    if (bad) assert.fail(`a back-channel logout notice failed verification: ${bad.error.message}\nbody: ${bad.body}`);
    const good = notices.find((n) => n.claims && n.sid === sid);
    if (good) return good.claims;
    if (Date.now() > deadline) {
      assert.fail(`no back-channel logout notice for sid ${sid} within ${BACKCHANNEL_WAIT_MS / 1000} s; `
        + `received: ${JSON.stringify(notices.map((n) => n.sid))}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  rpServer = await startRelyingParty();
});

after(async () => {
  if (!rpServer) return;
  // The server's delivery worker may keep a connection alive; do not wait for it.
  rpServer.closeAllConnections();
  await new Promise((r) => rpServer.close(r));
});

// ---------------------------------------------------------------------------------------------

test('1. discovery through openid-client advertises the token lifecycle', async () => {
  const config = await configuration();
  const m = config.serverMetadata();
  assert.equal(new URL(m.issuer).href, new URL(ISSUER).href);
  assert.equal(m.token_endpoint, `${ISSUER}/token`);
  assert.equal(m.introspection_endpoint, `${ISSUER}/introspect`);
  assert.equal(m.revocation_endpoint, `${ISSUER}/revoke`);
  assert.equal(m.end_session_endpoint, `${ISSUER}/end_session`);
  assert.equal(m.backchannel_logout_supported, true);
  assert.equal(m.backchannel_logout_session_supported, true);
  for (const grant of ['authorization_code', 'refresh_token', 'client_credentials']) {
    assert.ok(m.grant_types_supported?.includes(grant), `grant_types_supported lacks ${grant}: ${m.grant_types_supported}`);
  }
  assert.ok(m.jwks_uri, 'no jwks_uri');
  assert.equal(config.clientMetadata().client_id, CLIENT_ID);
});

test('2. code flow with PKCE, state and nonce; ID token and userinfo', async () => {
  const config = await configuration();
  const { callback, tokens, claims } = await login(config);
  assert.equal(callback.searchParams.get('iss'), config.serverMetadata().issuer, 'iss in the authorization response (RFC 9207)');

  // openid-client has validated iss, aud, exp, iat, nonce and (non-repudiation) the signature.
  assert.ok(claims, 'no ID token');
  assert.equal(decodeProtectedHeader(tokens.id_token).alg, 'RS256', 'ID token alg');
  assert.equal(typeof claims.sid, 'string', 'ID token sid');
  assert.equal(typeof claims.auth_time, 'number', 'ID token auth_time');
  assert.ok(claims.acr, 'ID token acr');
  assert.ok(Array.isArray(claims.amr) && claims.amr.length > 0, 'ID token amr');
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.ok(tokens.refresh_token, 'a client with the refresh_token grant gets a refresh token');

  // RFC 9068 access token.
  const { payload } = await verifyAccessToken(tokens.access_token);
  assert.equal(payload.sub, claims.sub);
  assert.equal(payload.sid, claims.sid);
  assert.deepEqual(payload.scope.split(' ').sort(), SCOPE.split(' ').sort());

  const info = await assertActive(config, tokens.access_token, 'the access token');
  for (const field of ['scope', 'client_id', 'sub', 'exp', 'iat', 'iss', 'jti', 'token_type', 'sid']) {
    assert.ok(field in info, `introspection lacks ${field}: ${JSON.stringify(info)}`);
  }
  assert.equal(info.client_id, CLIENT_ID);
  assert.equal(info.sub, claims.sub);
  assert.equal(info.sid, claims.sid);
  assert.equal(info.jti, payload.jti);
  assert.equal(info.iss, config.serverMetadata().issuer);

  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(userinfo.sub, claims.sub);
});

test('3. refresh tokens rotate; replaying a rotated one ends the family and the session', { timeout: 60_000 }, async () => {
  const config = await configuration();
  const { tokens: first, claims } = await login(config);
  assert.ok(first.refresh_token, 'no refresh token from the code');

  const second = await client.refreshTokenGrant(config, first.refresh_token);
  assert.ok(second.refresh_token, 'the first refresh returned no new refresh token');
  assert.notEqual(second.refresh_token, first.refresh_token, 'the refresh token was not rotated');
  assert.notEqual(second.access_token, first.access_token);
  await assertActive(config, second.access_token, 'the access token of the first refresh');

  const third = await client.refreshTokenGrant(config, second.refresh_token);
  assert.ok(third.refresh_token, 'the second refresh returned no new refresh token');
  assert.notEqual(third.refresh_token, second.refresh_token, 'the refresh token was not rotated');
  assert.notEqual(third.refresh_token, first.refresh_token);
  await assertActive(config, third.access_token, 'the access token of the second refresh');
  assert.equal((await verifyAccessToken(third.access_token)).payload.sid, claims.sid, 'refreshed access tokens keep the sid');

  // A stolen, already rotated refresh token comes back (RFC 9700 §4.14.2).
  const replay = await oauthFailure(client.refreshTokenGrant(config, first.refresh_token));
  assert.equal(replay.error, 'invalid_grant', `replaying a rotated refresh token: ${JSON.stringify(replay)}`);
  assert.equal(replay.status, 400);

  // The whole family is gone, the newest member included, and what was minted from it.
  const newest = await oauthFailure(client.refreshTokenGrant(config, third.refresh_token));
  assert.equal(newest.error, 'invalid_grant', `the newest refresh token after the replay: ${JSON.stringify(newest)}`);
  await assertInactive(config, third.access_token, 'the newest access token after the replay');
  await assertInactive(config, first.access_token, "the original access token after the replay");

  // The browser session it came from ended too, and the relying party hears of it.
  const notice = await waitForLogoutNotice(claims.sid);
  assert.equal(notice.sub, claims.sub);
});

test('4. revocation of an access token and of a refresh token', async () => {
  const config = await configuration();

  // An access token alone.
  const a = await login(config);
  await assertActive(config, a.tokens.access_token, 'the access token before revocation');
  await client.tokenRevocation(config, a.tokens.access_token, { token_type_hint: 'access_token' });
  await assertInactive(config, a.tokens.access_token, 'the revoked access token');

  // A refresh token, with the access token issued from its grant (RFC 7009 §2.1).
  const b = await login(config);
  await assertActive(config, b.tokens.refresh_token, 'the refresh token before revocation');
  await assertActive(config, b.tokens.access_token, 'its access token before revocation');
  await client.tokenRevocation(config, b.tokens.refresh_token, { token_type_hint: 'refresh_token' });
  await assertInactive(config, b.tokens.refresh_token, 'the revoked refresh token');
  await assertInactive(config, b.tokens.access_token, 'the access token of a revoked refresh token');
  const refresh = await oauthFailure(client.refreshTokenGrant(config, b.tokens.refresh_token));
  assert.equal(refresh.error, 'invalid_grant', `refreshing with a revoked refresh token: ${JSON.stringify(refresh)}`);

  // Revoking what is already revoked, or was never issued, is still 200 (RFC 7009 §2.2).
  await client.tokenRevocation(config, b.tokens.refresh_token);
  await client.tokenRevocation(config, 'not-a-token-sekimori-ever-issued');
});

test('5. client_credentials', async () => {
  const config = await configuration();
  const tokens = await client.clientCredentialsGrant(config, { scope: SERVICE_SCOPE });
  assert.ok(tokens.access_token, 'no access token');
  assert.equal(tokens.refresh_token, undefined, 'client_credentials must not issue a refresh token');
  assert.equal(tokens.id_token, undefined, 'client_credentials must not issue an ID token');

  const info = await assertActive(config, tokens.access_token, 'the client_credentials access token');
  assert.equal(info.client_id, CLIENT_ID);
  assert.equal(info.scope, SERVICE_SCOPE);
  assert.equal(info.sub, CLIENT_ID);

  const { payload } = await verifyAccessToken(tokens.access_token);
  assert.equal(payload.sub, CLIENT_ID);
  assert.equal(payload.scope, SERVICE_SCOPE);
});

test('6. RP-initiated logout ends the session and notifies over the back channel', { timeout: 60_000 }, async () => {
  const config = await configuration();
  const { browser, tokens, claims } = await login(config);
  await assertActive(config, tokens.access_token, 'the access token before logout');

  // Control: the SSO cookie works, so the login_required below is the logout's doing.
  const silent = await authorizationRequest(config, { prompt: 'none' });
  const sso = await follow(browser, await browser.get(silent.url), silent.url);
  assert.ok(sso.rp, `prompt=none with a live session should go straight back:\n${sso.page && await describe(sso.page, sso.url)}`);
  assert.ok(sso.rp.searchParams.get('code'), `prompt=none with a live session: ${sso.rp}`);

  // Keep the SSO cookie as it was, as if copied out of the browser before logging out.
  const stolen = browser.clone();

  const state = client.randomState();
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI,
    state,
  });
  const response = await browser.get(endSession);
  if (response.status !== 303) assert.fail(`RP-initiated logout should answer 303:\n${await describe(response, endSession)}`);
  const location = new URL(response.headers.get('location'), endSession);
  assert.equal(location.origin + location.pathname, POST_LOGOUT_REDIRECT_URI, `logout redirected to ${location}`);
  assert.equal(location.searchParams.get('state'), state, 'the state came back');

  // The session is over on the server, not just forgotten by the browser.
  const again = await authorizationRequest(config, { prompt: 'none' });
  const result = await follow(stolen, await stolen.get(again.url), again.url);
  assert.ok(result.rp, `prompt=none after logout should go back with an error:\n${result.page && await describe(result.page, result.url)}`);
  assert.equal(result.rp.searchParams.get('error'), 'login_required', `prompt=none after logout: ${result.rp}`);
  // openid-client sees the same: an authorization error response with the right state and iss.
  await assert.rejects(
    client.authorizationCodeGrant(config, result.rp, again.checks),
    (err) => err instanceof client.AuthorizationResponseError && err.error === 'login_required',
  );

  await assertInactive(config, tokens.access_token, 'the access token after logout');
  const refresh = await oauthFailure(client.refreshTokenGrant(config, tokens.refresh_token));
  assert.equal(refresh.error, 'invalid_grant', `the session's refresh token after logout: ${JSON.stringify(refresh)}`);

  const notice = await waitForLogoutNotice(claims.sid);
  assert.equal(notice.sub, claims.sub);
  assert.equal(notice.sid, claims.sid);
});

test('7. error responses have the OAuth shape', async () => {
  const config = await configuration();

  // A wrong secret: 401 invalid_client with a Basic challenge (RFC 6749 §5.2).
  const wrong = new client.Configuration(config.serverMetadata(), CLIENT_ID, undefined,
    client.ClientSecretBasic(`${CLIENT_SECRET}-wrong`));
  client.allowInsecureRequests(wrong);
  const denied = await oauthFailure(client.clientCredentialsGrant(wrong, { scope: SERVICE_SCOPE }));
  assert.equal(denied.status, 401, `a wrong client secret: ${JSON.stringify(denied)}`);
  assert.equal(denied.error, 'invalid_client', `a wrong client secret: ${JSON.stringify(denied)}`);
  assert.ok(denied.challenges.some((c) => c.scheme === 'basic'),
    `401 after Basic authentication must challenge Basic: ${JSON.stringify(denied.challenges)}`);

  // A grant type nobody has heard of.
  const unknown = await oauthFailure(client.genericGrantRequest(config, 'urn:example:sekimori:no-such-grant', {}));
  assert.equal(unknown.error, 'unsupported_grant_type', `an unknown grant type: ${JSON.stringify(unknown)}`);
  assert.equal(unknown.status, 400);
});
