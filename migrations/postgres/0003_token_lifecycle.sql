-- Token lifecycle: refresh tokens, client_credentials, logout, key rotation. Kept in step with
-- migrations/sqlite/0003_token_lifecycle.sql.

-- Per-client policy: which grants it may use, the scopes it may ask for in client_credentials
-- (system-to-system calls), how long a refresh-token family lives, where its back-channel
-- logout notices go.
ALTER TABLE clients ADD COLUMN grant_types TEXT NOT NULL DEFAULT 'authorization_code';
ALTER TABLE clients ADD COLUMN service_scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN refresh_token_ttl BIGINT NOT NULL DEFAULT 36000;
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;

-- What the authorization request asked for beyond the basics, carried to the code.
ALTER TABLE authorization_requests ADD COLUMN login_hint TEXT;
ALTER TABLE authorization_requests ADD COLUMN acr_values TEXT;
ALTER TABLE authorization_requests ADD COLUMN claims TEXT;
ALTER TABLE auth_codes ADD COLUMN claims TEXT;

-- Refresh tokens (RFC 9700 §4.14): opaque, stored as a hash, rotated on every use. All tokens
-- descended from one authorization form a family; presenting a rotated one again revokes the
-- family and the session it came from.
CREATE TABLE refresh_tokens (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL REFERENCES clients (client_id),
    person_id  TEXT NOT NULL REFERENCES people (id),
    session_id TEXT NOT NULL REFERENCES sessions (id),
    -- offline_access: the family outlives the browser session (but nothing else).
    offline    BIGINT NOT NULL,
    scope      TEXT NOT NULL,
    claims     TEXT,
    auth_time  BIGINT NOT NULL,
    acr        TEXT NOT NULL,
    amr        TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT,
    CONSTRAINT refresh_tokens_hash_unique UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_person ON refresh_tokens (person_id);

-- Access tokens minted by a refresh belong to its family; client_credentials tokens have no
-- person and no session.
ALTER TABLE access_tokens ADD COLUMN family_id TEXT;
-- The OIDC claims request (OIDC Core §5.5) the token's userinfo answers.
ALTER TABLE access_tokens ADD COLUMN claims TEXT;
CREATE INDEX access_tokens_family ON access_tokens (family_id);
CREATE INDEX access_tokens_person ON access_tokens (person_id);

-- Which consuming systems each browser session has signed in to: who to tell when it ends.
CREATE TABLE session_clients (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    client_id  TEXT NOT NULL REFERENCES clients (client_id),
    first_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id, client_id)
);

-- OpenID Back-Channel Logout notices, written in the transaction that ends the session and
-- delivered by a background worker with retries, so that a notice survives a restart or a
-- consuming system that is down.
CREATE TABLE logout_notices (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients (client_id),
    person_id       TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    delivered_at    BIGINT,
    abandoned_at    BIGINT
);
CREATE INDEX logout_notices_pending ON logout_notices (next_attempt_at) WHERE delivered_at IS NULL AND abandoned_at IS NULL;

-- Key rotation: a new key is published at once but signs only from signs_from, so that every
-- node and every consuming system's JWKS cache knows it first; the key it replaces stays
-- published until every token it signed has expired. NULL: signs from created_at.
ALTER TABLE signing_keys ADD COLUMN signs_from BIGINT;
