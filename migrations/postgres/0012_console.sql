-- People as administrators (R7, R8): API tokens belong to a person, and the admin console has
-- its own sessions, opened through Sekimori's own OpenID login with a card. Kept in step with
-- migrations/sqlite/0012_console.sql.

-- The person whose administrative rights an API token uses; NULL only for the bootstrap token
-- (and tokens it made), which lives a day at most.
ALTER TABLE api_tokens ADD COLUMN owner_person_id TEXT REFERENCES people (id);
CREATE INDEX api_tokens_owner ON api_tokens (owner_person_id);

-- A console login under way: the state sent to the authorization endpoint (hashed) and the
-- PKCE verifier kept for the code exchange.
CREATE TABLE console_logins (
    state_hash    TEXT PRIMARY KEY,
    code_verifier TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

-- A console session: opened by a card login, bound to the browser session it came from (which
-- ends it when it ends: card lost, logout, emergency stop), ended on idle and at its end.
CREATE TABLE console_sessions (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL,
    person_id    TEXT NOT NULL REFERENCES people (id),
    session_id   TEXT NOT NULL REFERENCES sessions (id),
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    CONSTRAINT console_sessions_token_unique UNIQUE (token_hash)
);
CREATE INDEX console_sessions_person ON console_sessions (person_id);
