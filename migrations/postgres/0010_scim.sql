-- The SCIM service provider (/scim/v2 on the admin listener). Kept in step with
-- migrations/sqlite/0010_scim.sql.

-- The HR system's own identifier for a person (SCIM externalId), when it sends one.
ALTER TABLE people ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX people_external_id_unique ON people (external_id);
-- When the HR feed deleted the person's SCIM resource (a leaver: the person record is kept, the
-- SCIM User answers 404 from then on). Cleared when the same person is appointed again.
ALTER TABLE people ADD COLUMN scim_deleted_at BIGINT;
-- SCIM meta.lastModified filters and sorting.
CREATE INDEX people_updated_at ON people (updated_at);

-- An org unit deleted through SCIM (a SCIM Group) is closed, not removed: people, posts,
-- systems and the audit log still name it.
ALTER TABLE org_units ADD COLUMN closed_at BIGINT;
ALTER TABLE org_units ADD COLUMN updated_at BIGINT;
-- The HR system's own identifier for a unit (SCIM externalId of a Group), when it sends one.
ALTER TABLE org_units ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX org_units_external_id_unique ON org_units (external_id);
