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

-- R1: a login ID used by a section (課・係単位) exists only as an exception: the section, the
-- person responsible, a written justification, an approver who is not that person, and the
-- last day it may be used. The shared ID is an ordinary account of its own directory entry,
-- so one account per person stays a constraint for everyone; at expiry (or when ended early)
-- the account is disabled and its sessions and tokens end.
CREATE TABLE shared_ids (
    id                 TEXT PRIMARY KEY,
    login_id           TEXT NOT NULL,
    -- The directory entry whose account the shared login ID is.
    person_id          TEXT NOT NULL REFERENCES people (id),
    org_unit_id        TEXT NOT NULL REFERENCES org_units (id),
    owner_person_id    TEXT NOT NULL REFERENCES people (id),
    justification      TEXT NOT NULL,
    approver_person_id TEXT NOT NULL REFERENCES people (id),
    -- Last day of use, Japan date YYYY-MM-DD.
    expires_on         TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    ended_at           BIGINT,
    ended_by           TEXT,
    end_reason         TEXT,
    CONSTRAINT shared_ids_approver_not_owner CHECK (approver_person_id <> owner_person_id)
);
CREATE UNIQUE INDEX shared_ids_in_force ON shared_ids (login_id) WHERE ended_at IS NULL;
