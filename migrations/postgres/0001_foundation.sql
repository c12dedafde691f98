-- Sekimori foundation schema (PostgreSQL). Kept in step with migrations/sqlite/0001_foundation.sql.
-- Times are Unix seconds (BIGINT); dates are ISO 8601 text (YYYY-MM-DD); ids are UUID text.

CREATE TABLE org_units (
    id                TEXT PRIMARY KEY,
    code              TEXT NOT NULL,
    name              TEXT NOT NULL,
    name_en           TEXT,
    level             TEXT NOT NULL CHECK (level IN ('department', 'section', 'unit')),
    parent_id         TEXT REFERENCES org_units (id),
    manager_person_id TEXT,
    created_at        BIGINT NOT NULL,
    CONSTRAINT org_units_code_unique UNIQUE (code)
);

CREATE TABLE people (
    id               TEXT PRIMARY KEY,
    employee_number  TEXT NOT NULL,
    family_name      TEXT NOT NULL,
    given_name       TEXT NOT NULL,
    family_name_kana TEXT NOT NULL,
    given_name_kana  TEXT NOT NULL,
    birth_date       TEXT,
    kind             TEXT NOT NULL CHECK (kind IN ('regular', 're_employed', 'part_time', 'temporary', 'dispatched', 'contractor', 'designated_manager')),
    org_unit_id      TEXT REFERENCES org_units (id),
    email            TEXT,
    status           TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'retired')),
    start_date       TEXT NOT NULL,
    end_date         TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT people_employee_number_unique UNIQUE (employee_number),
    -- R3: fixed-term kinds always carry an end date.
    CONSTRAINT people_fixed_term_has_end_date CHECK (
        kind IN ('regular', 're_employed', 'part_time') OR end_date IS NOT NULL),
    CONSTRAINT people_end_after_start CHECK (end_date IS NULL OR end_date >= start_date)
);
CREATE INDEX people_org_unit ON people (org_unit_id);
ALTER TABLE org_units ADD CONSTRAINT org_units_manager_fk FOREIGN KEY (manager_person_id) REFERENCES people (id);

-- R1: one login ID per person. The UNIQUE on person_id is the rule; code only reports it.
CREATE TABLE accounts (
    id                  TEXT PRIMARY KEY,
    person_id           TEXT NOT NULL REFERENCES people (id),
    login_id            TEXT NOT NULL,
    password_hash       TEXT,
    password_changed_at BIGINT,
    status              TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at          BIGINT NOT NULL,
    CONSTRAINT accounts_person_unique UNIQUE (person_id),
    CONSTRAINT accounts_login_id_unique UNIQUE (login_id)
);

CREATE TABLE clients (
    client_id                    TEXT PRIMARY KEY,
    name                         TEXT NOT NULL,
    owner_org_unit_id            TEXT REFERENCES org_units (id),
    client_type                  TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    secret_hash                  TEXT,
    token_endpoint_auth_method   TEXT NOT NULL CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post', 'none')),
    redirect_uris                TEXT NOT NULL,
    post_logout_redirect_uris    TEXT NOT NULL,
    scopes                       TEXT NOT NULL,
    id_token_signed_response_alg TEXT NOT NULL CHECK (id_token_signed_response_alg IN ('RS256', 'ES256')),
    require_pkce                 BIGINT NOT NULL,
    access_token_ttl             BIGINT NOT NULL,
    status                       TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at                   BIGINT NOT NULL,
    CONSTRAINT clients_secret_matches_type CHECK (
        (client_type = 'public' AND secret_hash IS NULL AND token_endpoint_auth_method = 'none') OR
        (client_type = 'confidential' AND secret_hash IS NOT NULL AND token_endpoint_auth_method <> 'none'))
);

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT NOT NULL CHECK (alg IN ('RS256', 'ES256')),
    private_key_enc TEXT NOT NULL,
    public_jwk      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);

-- A pending authorization request, kept while the person logs in.
CREATE TABLE authorization_requests (
    id                    TEXT PRIMARY KEY,
    client_id             TEXT NOT NULL REFERENCES clients (client_id),
    redirect_uri          TEXT NOT NULL,
    scope                 TEXT NOT NULL,
    state                 TEXT,
    nonce                 TEXT,
    code_challenge        TEXT,
    max_age               BIGINT,
    prompt                TEXT,
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL
);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    token_hash          TEXT NOT NULL,
    person_id           TEXT NOT NULL REFERENCES people (id),
    account_id          TEXT NOT NULL REFERENCES accounts (id),
    auth_time           BIGINT NOT NULL,
    amr                 TEXT NOT NULL,
    acr                 TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT,
    CONSTRAINT sessions_token_hash_unique UNIQUE (token_hash)
);
CREATE INDEX sessions_person ON sessions (person_id);

CREATE TABLE auth_codes (
    id             TEXT PRIMARY KEY,
    code_hash      TEXT NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients (client_id),
    session_id     TEXT NOT NULL REFERENCES sessions (id),
    person_id      TEXT NOT NULL REFERENCES people (id),
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    CONSTRAINT auth_codes_hash_unique UNIQUE (code_hash)
);

-- Every access token issued, so that userinfo (and later introspection) can check live state.
CREATE TABLE access_tokens (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (client_id),
    person_id  TEXT REFERENCES people (id),
    session_id TEXT REFERENCES sessions (id),
    code_id    TEXT REFERENCES auth_codes (id),
    scope      TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX access_tokens_code ON access_tokens (code_id);
CREATE INDEX access_tokens_session ON access_tokens (session_id);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    CONSTRAINT api_tokens_hash_unique UNIQUE (token_hash)
);

CREATE TABLE bootstrap_codes (
    id         TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    CONSTRAINT bootstrap_codes_hash_unique UNIQUE (code_hash)
);

-- R16: append-only, hash-chained audit log. audit_head holds the newest link so that
-- deleting the last rows is detected too.
CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    source_ip TEXT,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
