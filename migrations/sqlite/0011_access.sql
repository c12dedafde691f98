-- Need-based access (R4–R6, R15): the roles each consuming system declares, requests and the
-- approvals they need, grants, deputies of managers, reviews (棚卸し) and the notification
-- outbox. Kept in step with migrations/postgres/0011_access.sql.

-- A system that needs a role refuses a login without one (access_denied at the system).
ALTER TABLE clients ADD COLUMN requires_role INTEGER NOT NULL DEFAULT 0;

-- The roles a system declares. `name` is what the `roles` claim carries.
CREATE TABLE system_roles (
    id                   TEXT PRIMARY KEY,
    client_id            TEXT NOT NULL REFERENCES clients (client_id),
    name                 TEXT NOT NULL,
    label                TEXT NOT NULL,
    label_en             TEXT,
    -- 江戸川区 基準 第3条: 秘密情報 (secret) or 一般情報 (general).
    classification       TEXT NOT NULL CHECK (classification IN ('secret', 'general')),
    -- The longest a grant of this role may run; NULL: until revoked or reviewed away.
    max_duration_days    INTEGER CHECK (max_duration_days IS NULL OR max_duration_days > 0),
    -- How often each grant must be confirmed by a review; NULL: the ordinary campaigns.
    review_interval_days INTEGER CHECK (review_interval_days IS NULL OR review_interval_days > 0),
    created_at           INTEGER NOT NULL,
    retired_at           INTEGER,
    CONSTRAINT system_roles_name_unique UNIQUE (client_id, name)
);

-- Separation of duties: a person may not hold both roles. Stored once, role_a < role_b.
CREATE TABLE role_incompatibilities (
    role_a TEXT NOT NULL REFERENCES system_roles (id),
    role_b TEXT NOT NULL REFERENCES system_roles (id),
    CONSTRAINT role_incompatibilities_pk PRIMARY KEY (role_a, role_b),
    CONSTRAINT role_incompatibilities_ordered CHECK (role_a < role_b)
);

-- A manager's designated deputy (代理) for one unit, valid on the days given (Japan dates).
CREATE TABLE deputies (
    id               TEXT PRIMARY KEY,
    org_unit_id      TEXT NOT NULL REFERENCES org_units (id),
    deputy_person_id TEXT NOT NULL REFERENCES people (id),
    valid_from       TEXT NOT NULL,
    valid_until      TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    CONSTRAINT deputies_dates CHECK (valid_until >= valid_from)
);
CREATE INDEX deputies_unit ON deputies (org_unit_id);
CREATE INDEX deputies_person ON deputies (deputy_person_id);

-- A person's request for a role, with the business reason (R5).
CREATE TABLE access_requests (
    id              TEXT PRIMARY KEY,
    person_id       TEXT NOT NULL REFERENCES people (id),
    role_id         TEXT NOT NULL REFERENCES system_roles (id),
    reason          TEXT NOT NULL,
    wished_end_date TEXT,
    -- The requester's unit when asking, and whether it is outside the owning section.
    requester_unit_id TEXT REFERENCES org_units (id),
    cross_section   INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'lapsed', 'withdrawn')),
    created_at      INTEGER NOT NULL,
    lapses_at       INTEGER NOT NULL,
    decided_at      INTEGER,
    grant_id        TEXT
);
CREATE INDEX access_requests_person ON access_requests (person_id, created_at);
CREATE INDEX access_requests_pending ON access_requests (status, lapses_at);

-- The approvals a request needs: the owning section's manager, and the requester's own
-- manager when the request crosses sections. `org_unit_id` is the unit whose manager (or a
-- deputy of it) decides.
CREATE TABLE access_approvals (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES access_requests (id),
    step        TEXT NOT NULL CHECK (step IN ('owner', 'requester_manager')),
    org_unit_id TEXT NOT NULL REFERENCES org_units (id),
    decision    TEXT CHECK (decision IN ('approved', 'rejected')),
    decided_by  TEXT REFERENCES people (id),
    -- 'manager' or 'deputy': in which capacity the decider acted.
    acting_as   TEXT CHECK (acting_as IN ('manager', 'deputy')),
    reason      TEXT,
    decided_at  INTEGER,
    CONSTRAINT access_approvals_step_unique UNIQUE (request_id, step)
);
CREATE INDEX access_approvals_unit ON access_approvals (org_unit_id) WHERE decision IS NULL;

-- A role held by a person. Live while ended_at is NULL and today is not past end_date.
CREATE TABLE access_grants (
    id                TEXT PRIMARY KEY,
    person_id         TEXT NOT NULL REFERENCES people (id),
    role_id           TEXT NOT NULL REFERENCES system_roles (id),
    client_id         TEXT NOT NULL REFERENCES clients (client_id),
    -- 'request' (approved) or 'direct' (granted by the owning manager).
    origin            TEXT NOT NULL CHECK (origin IN ('request', 'direct')),
    request_id        TEXT REFERENCES access_requests (id),
    granted_by        TEXT NOT NULL,
    cross_section     INTEGER NOT NULL,
    -- The unit the person worked in when granted (a move away ends the grant).
    holder_unit_id    TEXT REFERENCES org_units (id),
    start_date        TEXT NOT NULL,
    -- Last day the grant holds (Japan date); cross-section grants always have one.
    end_date          TEXT,
    created_at        INTEGER NOT NULL,
    last_confirmed_at INTEGER NOT NULL,
    ended_at          INTEGER,
    end_reason        TEXT,
    CONSTRAINT access_grants_cross_section_ends CHECK (cross_section = 0 OR end_date IS NOT NULL)
);
CREATE INDEX access_grants_person_client ON access_grants (person_id, client_id) WHERE ended_at IS NULL;
CREATE INDEX access_grants_client ON access_grants (client_id) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX access_grants_one_live ON access_grants (person_id, role_id) WHERE ended_at IS NULL;

-- A review campaign (棚卸し) over one system or every system of one section.
CREATE TABLE access_reviews (
    id          TEXT PRIMARY KEY,
    client_id   TEXT REFERENCES clients (client_id),
    org_unit_id TEXT REFERENCES org_units (id),
    opened_by   TEXT NOT NULL,
    opened_at   INTEGER NOT NULL,
    -- The last day to decide (Japan date); undecided grants lapse after it.
    deadline    TEXT NOT NULL,
    closed_at   INTEGER,
    CONSTRAINT access_reviews_scope CHECK ((client_id IS NULL) <> (org_unit_id IS NULL))
);

CREATE TABLE access_review_items (
    review_id  TEXT NOT NULL REFERENCES access_reviews (id),
    grant_id   TEXT NOT NULL REFERENCES access_grants (id),
    decision   TEXT CHECK (decision IN ('confirmed', 'removed', 'lapsed')),
    decided_by TEXT,
    reason     TEXT,
    decided_at INTEGER,
    CONSTRAINT access_review_items_pk PRIMARY KEY (review_id, grant_id)
);
CREATE INDEX access_review_items_grant ON access_review_items (grant_id);

-- Sessions that obtained a secret-class role are held to a shorter idle timeout (R6, R15).
ALTER TABLE sessions ADD COLUMN secret_roles INTEGER NOT NULL DEFAULT 0;

-- What Sekimori tells people (approvals waiting, decisions, reviews opened): written in the
-- transaction of the event, always shown on the person's pages, and sent by e-mail when mail
-- is on, with retries like the back-channel notices.
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    person_id       TEXT NOT NULL REFERENCES people (id),
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    read_at         INTEGER,
    -- 'off' (mail disabled or no address), 'pending', 'sent', 'abandoned'.
    mail_status     TEXT NOT NULL CHECK (mail_status IN ('off', 'pending', 'sent', 'abandoned')),
    mail_to         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    sent_at         INTEGER
);
CREATE INDEX notifications_person ON notifications (person_id, created_at);
CREATE INDEX notifications_mail_pending ON notifications (next_attempt_at) WHERE mail_status = 'pending';
