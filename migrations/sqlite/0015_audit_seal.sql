-- R16: the audit chain's second link format (sequence, MAC, seal), as on PostgreSQL.
--
-- Every event carries a MAC of its own (HMAC under the audit key over its sequence number and
-- every field) and, once sealed, its chain position (chain_pos) and a keyed link over the
-- previous link, the position, the number and the MAC. On PostgreSQL a sealer links committed
-- events shortly after they commit, so that writers do not wait for each other; SQLite has one
-- writer at a time anyway, so here each event is sealed in its own transaction (its position
-- is its number) and none is ever unsealed.
--
-- Events written before this migration are sealed already: their chain position is their
-- sequence number and their links are the earlier format (sealed_from says where the new one
-- starts). prev_hash and hash are '' until an event is sealed.
ALTER TABLE audit_events ADD COLUMN mac TEXT;
ALTER TABLE audit_events ADD COLUMN chain_pos INTEGER;
ALTER TABLE audit_head ADD COLUMN sealed_from INTEGER NOT NULL DEFAULT 1;
UPDATE audit_head SET sealed_from = seq + 1 WHERE id = 1;

DROP TRIGGER audit_events_no_update;
UPDATE audit_events SET chain_pos = seq;
CREATE UNIQUE INDEX audit_events_chain_pos ON audit_events (chain_pos);
CREATE INDEX audit_events_unsealed ON audit_events (seq) WHERE chain_pos IS NULL;

-- The one update allowed: sealing an unsealed event, which sets its position and links and
-- nothing else.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN OLD.chain_pos IS NOT NULL OR NEW.chain_pos IS NULL
  OR NEW.seq IS NOT OLD.seq OR NEW.at IS NOT OLD.at OR NEW.actor IS NOT OLD.actor
  OR NEW.action IS NOT OLD.action OR NEW.target IS NOT OLD.target OR NEW.outcome IS NOT OLD.outcome
  OR NEW.detail IS NOT OLD.detail OR NEW.source_ip IS NOT OLD.source_ip OR NEW.mac IS NOT OLD.mac
  OR OLD.prev_hash != '' OR OLD.hash != ''
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- Only archived events (sealed at or before the anchor) may be removed.
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.chain_pos IS NULL OR OLD.chain_pos > (SELECT anchor_seq FROM audit_head WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
