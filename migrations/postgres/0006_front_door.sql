-- The front door and everyday administration (R3, R11, R12, R14, R16, R17, R21). Kept in step with
-- migrations/sqlite/0006_front_door.sql.

-- A direct login to Sekimori (its own pages, not a consuming system) is a pending request
-- without a client: client_id becomes optional, and redirect_uri then holds the local page to
-- return to.
ALTER TABLE authorization_requests ALTER COLUMN client_id DROP NOT NULL;

-- Where a session was opened from, for the person's own list of sessions.
ALTER TABLE sessions ADD COLUMN source_ip TEXT;

-- A person's own recent sign-ins and the audit API's filters read by actor, target and time.
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_target ON audit_events (target, seq);
CREATE INDEX audit_events_at ON audit_events (at);

-- Consuming systems can be disabled (and enabled again) and have their secret rotated with a
-- grace period during which the previous secret is still accepted.
ALTER TABLE clients ADD COLUMN disabled_at BIGINT;
ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT;

-- The hotline's reference number for a loss report, said to the caller.
ALTER TABLE authenticators ADD COLUMN loss_reference TEXT;
CREATE UNIQUE INDEX authenticators_loss_reference ON authenticators (loss_reference) WHERE loss_reference IS NOT NULL;

-- 会計年度任用職員 (part_time) are appointed for one fiscal year at most: fixed-term, with an
-- end date. NOT VALID: people already registered without one are kept, for HR to complete;
-- every new or changed row is checked.
ALTER TABLE people DROP CONSTRAINT people_fixed_term_has_end_date;
ALTER TABLE people ADD CONSTRAINT people_fixed_term_has_end_date
    CHECK (kind IN ('regular', 're_employed') OR end_date IS NOT NULL) NOT VALID;
