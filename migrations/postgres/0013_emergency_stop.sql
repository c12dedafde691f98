-- R17: emergency stops of one person or one consuming system. A stop is in force while
-- lifted_at is NULL; lifting it keeps the row, so the record says who stopped what, why, and
-- who lifted it and why. The target's own state (an account's or a client's status) is never
-- touched: lifting restores exactly what was there before.
CREATE TABLE emergency_stops (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('person', 'system')),
    -- A person's id, or a consuming system's client_id.
    target_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    stopped_by  TEXT NOT NULL,
    stopped_at  BIGINT NOT NULL,
    lifted_by   TEXT,
    lifted_at   BIGINT,
    lift_reason TEXT
);
-- At most one stop in force per target; the login and token checks look it up by target.
CREATE UNIQUE INDEX emergency_stops_active ON emergency_stops (kind, target_id) WHERE lifted_at IS NULL;
CREATE INDEX emergency_stops_stopped_at ON emergency_stops (stopped_at);

-- R17: signs of abnormal access (an account locked, a source address throttled), kept so that
-- a streak of them alerts the security managers once. An alert marks the occurrences it
-- counted, so the same streak never alerts twice.
CREATE TABLE abnormal_access (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('account_locked', 'source_throttled')),
    -- An account id, or a source address.
    subject    TEXT NOT NULL,
    at         BIGINT NOT NULL,
    alerted_at BIGINT
);
CREATE INDEX abnormal_access_subject ON abnormal_access (kind, subject, at);
