-- The HR lifecycle: effective-dated changes to people, and concurrent posts (兼務). Kept in
-- step with migrations/sqlite/0007_hr_lifecycle.sql.

-- One change to one person as a source (a CSV file's line, a SCIM request) sent it. Kept for
-- good, whatever became of it: the record of who was told what, when, and from where.
CREATE TABLE person_changes (
    id              TEXT PRIMARY KEY,
    -- The HR key: a joiner has no person yet.
    employee_number TEXT NOT NULL,
    -- Set once the change is applied (for a join, the person it created or matched).
    person_id       TEXT REFERENCES people (id),
    kind            TEXT NOT NULL CHECK (kind IN ('join', 'update', 'move', 'add_post', 'end_post', 'suspend', 'return', 'leave')),
    -- What part of the person the change sets ('status', 'unit', 'attributes', 'post:<unit code>'):
    -- a change older than one already applied to the same aspect is superseded, not applied.
    aspect          TEXT NOT NULL,
    -- Order among changes taking effect at the same instant: endings (0) before beginnings (1),
    -- so that a leave at the end of March 31 comes before a join at 00:00 on April 1.
    phase           BIGINT NOT NULL CHECK (phase IN (0, 1)),
    -- The change's own fields as JSON.
    payload         TEXT NOT NULL,
    -- YYYY-MM-DD in Japan, as HR wrote it; effective_at is the instant it takes effect.
    effective_date  TEXT NOT NULL,
    effective_at    BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'superseded', 'failed')),
    -- e.g. csv:FILE:LINE or scim:REQUEST_ID
    source          TEXT NOT NULL,
    -- Why a failed change could not be applied.
    error           TEXT,
    created_at      BIGINT NOT NULL,
    applied_at      BIGINT,
    superseded_by   TEXT REFERENCES person_changes (id)
);
-- The job's question: which pending changes are due, in effective order.
CREATE INDEX person_changes_due ON person_changes (status, effective_at);
-- A person's changes of one aspect: corrections, replays and out-of-order arrivals.
CREATE INDEX person_changes_person ON person_changes (employee_number, aspect, effective_at);

-- A concurrent post (兼務): the primary unit stays people.org_unit_id; these are the others,
-- each with its own dates. An ended post is kept with its end date.
CREATE TABLE person_posts (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL REFERENCES people (id),
    org_unit_id TEXT NOT NULL REFERENCES org_units (id),
    start_date  TEXT NOT NULL,
    end_date    TEXT,
    created_at  BIGINT NOT NULL,
    CONSTRAINT person_posts_end_after_start CHECK (end_date IS NULL OR end_date >= start_date)
);
CREATE INDEX person_posts_person ON person_posts (person_id);
-- One open post per person and unit.
CREATE UNIQUE INDEX person_posts_open ON person_posts (person_id, org_unit_id) WHERE end_date IS NULL;
