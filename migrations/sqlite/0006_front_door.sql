-- The front door and everyday administration (R3, R11, R12, R14, R16, R17, R21). Kept in step with
-- migrations/postgres/0006_front_door.sql.

-- A direct login to Sekimori (its own pages, not a consuming system) is a pending request
-- without a client: client_id becomes optional, and redirect_uri then holds the local page to
-- return to. SQLite cannot drop NOT NULL in place, so the table is rebuilt (nothing refers to it).
CREATE TABLE authorization_requests_new (
    id             TEXT PRIMARY KEY,
    client_id      TEXT REFERENCES clients (client_id),
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    state          TEXT,
    nonce          TEXT,
    code_challenge TEXT,
    max_age        INTEGER,
    prompt         TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    login_hint     TEXT,
    acr_values     TEXT,
    claims         TEXT
);
INSERT INTO authorization_requests_new
    (id, client_id, redirect_uri, scope, state, nonce, code_challenge, max_age, prompt, created_at, expires_at,
     login_hint, acr_values, claims)
SELECT id, client_id, redirect_uri, scope, state, nonce, code_challenge, max_age, prompt, created_at, expires_at,
       login_hint, acr_values, claims
FROM authorization_requests;
DROP TABLE authorization_requests;
ALTER TABLE authorization_requests_new RENAME TO authorization_requests;

-- Where a session was opened from, for the person's own list of sessions.
ALTER TABLE sessions ADD COLUMN source_ip TEXT;

-- A person's own recent sign-ins and the audit API's filters read by actor, target and time.
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_target ON audit_events (target, seq);
CREATE INDEX audit_events_at ON audit_events (at);

-- Consuming systems can be disabled (and enabled again) and have their secret rotated with a
-- grace period during which the previous secret is still accepted.
ALTER TABLE clients ADD COLUMN disabled_at INTEGER;
ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at INTEGER;

-- The hotline's reference number for a loss report, said to the caller.
ALTER TABLE authenticators ADD COLUMN loss_reference TEXT;
CREATE UNIQUE INDEX authenticators_loss_reference ON authenticators (loss_reference) WHERE loss_reference IS NOT NULL;

-- 会計年度任用職員 (part_time) are appointed for one fiscal year at most: fixed-term, with an
-- end date. SQLite cannot change the CHECK of people in place, so new and changed rows are
-- checked by triggers (people already registered without one are kept, for HR to complete).
CREATE TRIGGER people_part_time_has_end_date_insert BEFORE INSERT ON people
WHEN NEW.kind = 'part_time' AND NEW.end_date IS NULL
BEGIN SELECT RAISE(ABORT, 'people_fixed_term_has_end_date: part_time needs an end date'); END;
CREATE TRIGGER people_part_time_has_end_date_update BEFORE UPDATE ON people
WHEN NEW.kind = 'part_time' AND NEW.end_date IS NULL
BEGIN SELECT RAISE(ABORT, 'people_fixed_term_has_end_date: part_time needs an end date'); END;
