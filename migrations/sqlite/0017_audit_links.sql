-- R16: the chain's links in a table of their own, as on PostgreSQL (see its 0017 for why).
--
-- * audit_events holds what happened and the event's own MAC, written once, never changed;
-- * audit_links holds the chain: one row per sealed event (its position, its sequence number,
--   the link before it and its own link). SQLite seals each event in the transaction that
--   writes it, so here every event has its link at once and its position is its number;
-- * audit_unsealed is the sealer's work list, which only PostgreSQL's writers fill; it stays
--   empty here.
--
-- audit_log shows each event with its links, as the events table used to.
CREATE TABLE audit_links (
    chain_pos INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL UNIQUE,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE audit_unsealed (
    seq INTEGER PRIMARY KEY
);
INSERT INTO audit_links (chain_pos, seq, prev_hash, hash)
    SELECT chain_pos, seq, prev_hash, hash FROM audit_events WHERE chain_pos IS NOT NULL;
INSERT INTO audit_unsealed (seq) SELECT seq FROM audit_events WHERE chain_pos IS NULL;

DROP TRIGGER audit_events_no_update;
DROP TRIGGER audit_events_no_delete;
DROP INDEX audit_events_chain_pos;
DROP INDEX audit_events_unsealed;
ALTER TABLE audit_events DROP COLUMN chain_pos;
ALTER TABLE audit_events DROP COLUMN prev_hash;
ALTER TABLE audit_events DROP COLUMN hash;

CREATE VIEW audit_log AS
    SELECT e.seq, e.at, e.actor, e.action, e.target, e.outcome, e.detail, e.source_ip, e.mac,
           l.chain_pos, COALESCE(l.prev_hash, '') AS prev_hash, COALESCE(l.hash, '') AS hash
    FROM audit_events e LEFT JOIN audit_links l ON l.seq = e.seq;

-- Events are never updated. Only archived events (linked at or before the anchor) may be
-- removed: the archive removes the events first, then their links.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (
    SELECT 1 FROM audit_links
    WHERE seq = OLD.seq AND chain_pos <= (SELECT anchor_seq FROM audit_head WHERE id = 1)
)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

CREATE TRIGGER audit_links_no_update BEFORE UPDATE ON audit_links
BEGIN SELECT RAISE(ABORT, 'audit_links is append-only'); END;
CREATE TRIGGER audit_links_no_delete BEFORE DELETE ON audit_links
WHEN OLD.chain_pos > (SELECT anchor_seq FROM audit_head WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit_links is append-only'); END;
