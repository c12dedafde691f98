-- Password policy (R9–R12, R17). Kept in step with migrations/sqlite/0002_password_policy.sql.

-- R9: a keyed fingerprint (HMAC, key outside the database) of the current password. The unique
-- index means no two accounts can hold the same password at the same time.
ALTER TABLE accounts ADD COLUMN password_fingerprint TEXT;
CREATE UNIQUE INDEX accounts_password_fingerprint_unique ON accounts (password_fingerprint);
-- R10/R11: set by an administrator's reset or a suspected compromise; login cannot finish until
-- the password has been changed.
ALTER TABLE accounts ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
-- R17: per-account lockout with exponential backoff.
ALTER TABLE accounts ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_until BIGINT;

-- R10: earlier passwords (as fingerprints) that may not be used again.
CREATE TABLE password_history (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX password_history_account ON password_history (account_id, created_at);

-- R17: failures per source address, in fixed windows.
CREATE TABLE login_source_failures (
    source       TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL
);

-- R11: one-time links for a reset by an administrator or the help desk, and short tickets that let
-- a person whose password has expired set a new one before the login completes.
CREATE TABLE password_tickets (
    id                 TEXT PRIMARY KEY,
    ticket_hash        TEXT NOT NULL,
    account_id         TEXT NOT NULL REFERENCES accounts (id),
    purpose            TEXT NOT NULL CHECK (purpose IN ('reset', 'expired')),
    authorization_request_id TEXT,
    created_by         TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    used_at            BIGINT,
    CONSTRAINT password_tickets_hash_unique UNIQUE (ticket_hash)
);
