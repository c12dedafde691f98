-- IC cards, security keys and passkeys (R13–R15, R22). Kept in step with
-- migrations/postgres/0004_authenticators.sql.

-- Each authenticator belongs to exactly one person (江戸川区 基準 第11条2: one managing employee).
CREATE TABLE authenticators (
    id                 TEXT PRIMARY KEY,
    person_id          TEXT NOT NULL REFERENCES people (id),
    -- base64url of the WebAuthn credential id.
    credential_id      TEXT NOT NULL,
    -- The webauthn-rs credential (public key, counter, flags) as JSON.
    credential         TEXT NOT NULL,
    label              TEXT NOT NULL,
    -- The card's serial as the organisation records it.
    management_number  TEXT,
    enrolled_by        TEXT NOT NULL,
    enrollment_code_id TEXT,
    created_at         INTEGER NOT NULL,
    last_used_at       INTEGER,
    status             TEXT NOT NULL CHECK (status IN ('active', 'lost', 'revoked')),
    revoked_at         INTEGER,
    revoked_reason     TEXT,
    CONSTRAINT authenticators_credential_unique UNIQUE (credential_id)
);
CREATE INDEX authenticators_person ON authenticators (person_id);
-- A card in use is one person's: its management number cannot be enrolled twice.
CREATE UNIQUE INDEX authenticators_management_number_active ON authenticators (management_number)
    WHERE status = 'active' AND management_number IS NOT NULL;

-- The authenticator a session was opened (or stepped up) with: what a lost card ends.
ALTER TABLE sessions ADD COLUMN authenticator_id TEXT REFERENCES authenticators (id);
CREATE INDEX sessions_authenticator ON sessions (authenticator_id);

-- One-time codes a manager or the counter issues so that a person can enroll a first card: a
-- stolen password alone cannot enroll one.
CREATE TABLE enrollment_codes (
    id         TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    person_id  TEXT NOT NULL REFERENCES people (id),
    issued_by  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    CONSTRAINT enrollment_codes_hash_unique UNIQUE (code_hash)
);

-- A WebAuthn ceremony between its start and its finish; any node can finish it.
CREATE TABLE webauthn_ceremonies (
    id                       TEXT PRIMARY KEY,
    token_hash               TEXT NOT NULL,
    kind                     TEXT NOT NULL CHECK (kind IN ('register', 'second_factor', 'passwordless', 'step_up')),
    state                    TEXT NOT NULL,
    person_id                TEXT,
    session_id               TEXT,
    authorization_request_id TEXT,
    enrollment_code_id       TEXT,
    label                    TEXT,
    management_number        TEXT,
    created_at               INTEGER NOT NULL,
    expires_at               INTEGER NOT NULL,
    used_at                  INTEGER,
    CONSTRAINT webauthn_ceremonies_token_unique UNIQUE (token_hash)
);
