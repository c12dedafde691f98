// A peer OpenID Provider for the side-by-side load runs (benches/load.sh): node-oidc-provider,
// in memory, one process, configured to do what the load tool asks of Sekimori — a confidential
// client (client_secret_basic) with authorization_code, refresh_token and client_credentials,
// refresh tokens that rotate on every use, introspection, revocation and userinfo, ES256 keys.
// People log in through node-oidc-provider's development login form (devInteractions): any
// login ID and password are accepted, so its "password login" checks no password at all —
// keep that in mind when reading the login figures beside Sekimori's argon2.
//
//   PEER_CLIENT_SECRET=… node server.js                      # opaque access tokens everywhere
//   PEER_CLIENT_SECRET=… PEER_ACCESS_TOKEN_FORMAT=jwt node server.js
//
// Env: PEER_PORT (default 3000, on 127.0.0.1), PEER_CLIENT_ID (default load), PEER_CLIENT_SECRET
// (required), PEER_REDIRECT_URI (default http://127.0.0.1:9009/callback), PEER_SERVICE_SCOPE
// (default load.read: the client_credentials scope), PEER_ACCESS_TOKEN_FORMAT opaque (default) or
// jwt: client_credentials tokens become ES256 JWTs (RFC 9068) through resourceIndicators, as
// Sekimori's are; the people's access tokens stay opaque (userinfo only takes those).
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';
// The library's own in-memory adapter, given an unbounded store: its default store is an LRU of
// about 1,000 entries, which under load evicts the workers' refresh tokens and grants (each
// client_credentials token is an entry) and would turn into errors that no real adapter causes.
// The import path is internal to oidc-provider; package.json pins the version.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const port = Number(process.env.PEER_PORT ?? 3000);
const clientId = process.env.PEER_CLIENT_ID ?? 'load';
const clientSecret = process.env.PEER_CLIENT_SECRET;
const redirectUri = process.env.PEER_REDIRECT_URI ?? 'http://127.0.0.1:9009/callback';
const serviceScope = process.env.PEER_SERVICE_SCOPE ?? 'load.read';
const format = process.env.PEER_ACCESS_TOKEN_FORMAT ?? 'opaque';
if (!clientSecret) {
  console.error('server.js: set PEER_CLIENT_SECRET');
  process.exit(2);
}
if (!['opaque', 'jwt'].includes(format)) {
  console.error('server.js: PEER_ACCESS_TOKEN_FORMAT must be opaque or jwt');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
// The resource server the client_credentials tokens are for in the jwt run.
const serviceResource = 'urn:sekimori-load:service';

/** A Map with the expiry the adapter asks for (maxAge in ms); expired entries are swept. */
class UnboundedStore {
  #entries = new Map();

  constructor() {
    setInterval(() => {
      const now = Date.now();
      for (const [key, entry] of this.#entries) {
        if (entry.expiry !== undefined && entry.expiry <= now) this.#entries.delete(key);
      }
    }, 10_000).unref();
  }

  get(key) {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiry !== undefined && entry.expiry <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, { maxAge } = {}) {
    const expiry = Number.isFinite(maxAge) ? Date.now() + maxAge : undefined;
    this.#entries.set(key, { value, expiry });
    return this;
  }

  has(key) {
    return this.get(key) !== undefined;
  }

  delete(key) {
    return this.#entries.delete(key);
  }
}
const store = new UnboundedStore();

// One ES256 signing key, made at start, for ID tokens and JWT access tokens.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'peer-es256' };

const configuration = {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      scope: `openid profile offline_access ${serviceScope}`,
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'profile', 'offline_access', serviceScope],
  claims: { openid: ['sub'], profile: ['name', 'family_name', 'given_name', 'preferred_username'] },
  async findAccount(_ctx, id) {
    // Any login is a person whose ID is the login.
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: `Load ${id}`, family_name: 'Load', given_name: id, preferred_username: id };
      },
    };
  },
  // The systems are the municipality's own, as with Sekimori: no consent page; the login grants
  // what the client may ask for.
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    if (!session.accountId) return undefined;
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope('openid profile offline_access');
    grant.addOIDCClaims(['name', 'family_name', 'given_name', 'preferred_username']);
    await grant.save();
    return grant;
  },
  // Like Sekimori: a refresh token for every code exchange of a client allowed the grant (not
  // only with offline_access), rotated at every use.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken: true,
  // Sekimori's load client is registered with a one-hour access-token lifetime; sessions and
  // refresh tokens last 10 hours there.
  ttl: {
    AccessToken: 3600,
    ClientCredentials: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 36_000,
    Interaction: 600,
    Session: 36_000,
    Grant: 36_000,
  },
  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
    revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
    clientCredentials: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: format === 'jwt',
      // Only the client_credentials grant names the service; the people's tokens stay for userinfo.
      async defaultResource(ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        return ctx.oidc.params?.grant_type === 'client_credentials' ? serviceResource : undefined;
      },
      async useGrantedResource() {
        return false;
      },
      async getResourceServerInfo(_ctx, resource) {
        if (resource !== serviceResource) throw new errors.InvalidTarget();
        return {
          scope: serviceScope,
          audience: serviceResource,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
};

const provider = new Provider(issuer, configuration);
// Quiet: no request log; a server error is worth a line.
provider.on('server_error', (_ctx, error) => console.error('server_error:', error));

const server = createServer(provider.callback());
// The load tool's workers keep their connections between phases; Node's 5 s default would close
// them under a worker that is waiting for the next phase.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.listen(port, '127.0.0.1', () => {
  console.log(`peer OP listening: issuer ${issuer}, pid ${process.pid}, client_credentials tokens ${format}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)).closeAllConnections());
}
