-- R16: the chain's links in a table of their own, so that sealing appends and never updates.
--
-- Until now the sealer wrote each event's position and links into its audit_events row: a
-- second copy of every event row and an entry in each of its indexes (PostgreSQL cannot make
-- that update "HOT", because the position is indexed). Now:
--
-- * audit_events holds what happened and the event's own MAC, written once, never changed;
-- * audit_links holds the chain: one narrow row per sealed event (its position, its sequence
--   number, the link before it and its own link), appended by the sealer;
-- * audit_unsealed is the sealer's work list: a writer adds the sequence number of each event
--   beside it, in the same transaction, and the sealer removes it in the transaction that
--   links the event. `audit verify` does not trust this list: it finds events without a link
--   by looking at every event, and reports one that is not on the list.
--
-- audit_log shows each event with its links (none while it is unsealed), as the events table
-- used to.
CREATE TABLE audit_links (
    chain_pos BIGINT PRIMARY KEY,
    seq       BIGINT NOT NULL UNIQUE,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE audit_unsealed (
    seq BIGINT PRIMARY KEY
);
INSERT INTO audit_links (chain_pos, seq, prev_hash, hash)
    SELECT chain_pos, seq, prev_hash, hash FROM audit_events WHERE chain_pos IS NOT NULL;
INSERT INTO audit_unsealed (seq) SELECT seq FROM audit_events WHERE chain_pos IS NULL;

DROP INDEX audit_events_chain_pos;
DROP INDEX audit_events_unsealed;
ALTER TABLE audit_events DROP COLUMN chain_pos, DROP COLUMN prev_hash, DROP COLUMN hash;

CREATE VIEW audit_log AS
    SELECT e.seq, e.at, e.actor, e.action, e.target, e.outcome, e.detail, e.source_ip, e.mac,
           l.chain_pos, COALESCE(l.prev_hash, '') AS prev_hash, COALESCE(l.hash, '') AS hash
    FROM audit_events e LEFT JOIN audit_links l ON l.seq = e.seq;

-- Events are never updated. Only archived events (linked at or before the anchor) may be
-- removed: the archive removes the events first, then their links.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM audit_links
        WHERE seq = OLD.seq AND chain_pos <= (SELECT anchor_seq FROM audit_head WHERE id = 1)
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE FUNCTION audit_links_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.chain_pos <= (SELECT anchor_seq FROM audit_head WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_links is append-only';
END;
$$;
CREATE TRIGGER audit_links_no_update BEFORE UPDATE OR DELETE ON audit_links
FOR EACH ROW EXECUTE FUNCTION audit_links_append_only();
CREATE TRIGGER audit_links_no_truncate BEFORE TRUNCATE ON audit_links
FOR EACH STATEMENT EXECUTE FUNCTION audit_links_append_only();
