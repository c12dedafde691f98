-- The HR safety valve: a file that would leave, suspend or move more active people than
-- `[hr] max_share_percent` / `max_people` allow is held here, whole, instead of recorded as
-- pending changes; an administrator confirms it (its changes are then recorded) or discards it.
-- Kept in step with migrations/postgres/0008_hr_batches.sql.
CREATE TABLE hr_batches (
    id          TEXT PRIMARY KEY,
    -- Where it came from: csv:FILE
    source      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('held', 'confirmed', 'discarded')),
    -- The batch's changes as JSON, exactly as they would have been recorded.
    changes     TEXT NOT NULL,
    -- What it would record per section and kind of change, as JSON, for the administrator.
    summary     TEXT NOT NULL,
    -- Active people the batch would leave, suspend or move, and active people when it arrived.
    affected    INTEGER NOT NULL,
    active      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    -- When an administrator confirmed or discarded it (who: the audit log).
    decided_at  INTEGER
);
CREATE INDEX hr_batches_status ON hr_batches (status, created_at);
