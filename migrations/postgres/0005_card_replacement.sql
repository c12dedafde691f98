-- Who stopped a card: a temporary password-only exception must come from someone else.
ALTER TABLE authenticators ADD COLUMN revoked_by TEXT;

-- A person whose card was stopped logs in with a replacement card, not with the password alone.
-- Where the organisation's policy allows it, someone other than the reporter may grant a
-- temporary, explicit exception; it is audited and ends by itself.
CREATE TABLE password_only_exceptions (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL REFERENCES people (id),
    granted_by  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX password_only_exceptions_person ON password_only_exceptions (person_id, expires_at);

-- After a correct password, a person whose card was stopped may enroll a replacement with the
-- counter's enrollment code; this one-time ticket (stored hashed) carries the login that far.
CREATE TABLE card_replacement_tickets (
    id                       TEXT PRIMARY KEY,
    ticket_hash              TEXT NOT NULL,
    person_id                TEXT NOT NULL REFERENCES people (id),
    authorization_request_id TEXT NOT NULL,
    created_at               BIGINT NOT NULL,
    expires_at               BIGINT NOT NULL,
    used_at                  BIGINT,
    CONSTRAINT card_replacement_tickets_hash_unique UNIQUE (ticket_hash)
);
