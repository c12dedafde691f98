-- R16: the audit chain keyed with a secret outside the database, and archiving.
--
-- keyed_from: the first event whose hash is an HMAC under the audit key (derived from the
-- master key). Events before it were written by earlier versions and keep their plain
-- SHA-256 links; every keyed link covers keyed_from, so it cannot be moved while keyed events
-- exist.
ALTER TABLE audit_head ADD COLUMN keyed_from INTEGER NOT NULL DEFAULT 1;
UPDATE audit_head SET keyed_from = seq + 1 WHERE id = 1;

-- The archive's anchor: the last event exported by `sekimori audit archive` and then removed
-- here. The chain left in the database starts after it.
ALTER TABLE audit_head ADD COLUMN anchor_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN anchor_hash TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';

-- Only archived events (at or before the anchor) may be removed.
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq > (SELECT anchor_seq FROM audit_head WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
