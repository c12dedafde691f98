-- R16: an audit chain that is not a global lock (sequence first, seal shortly after).
--
-- A writer no longer takes the chain's head row. It gives its event the next number of the
-- sequence audit_events_seq and a MAC of its own (HMAC under the audit key over the sequence
-- number and every field), in the transaction of the change it records; concurrent writers
-- no longer wait for each other. The sealer then links committed events into the chain in
-- batches, in sequence order: it gives each its chain position (chain_pos) and the keyed link
-- over the previous link, the position, the sequence number and the MAC, and moves audit_head
-- (which now counts chain positions) once per batch. Sequence numbers may have gaps (a
-- transaction that rolled back); chain positions have none.
--
-- Events written before this migration are sealed already: their chain position is their
-- sequence number and their links are the earlier format (sealed_from says where the new one
-- starts). prev_hash and hash are '' until an event is sealed.
ALTER TABLE audit_events ADD COLUMN mac TEXT;
ALTER TABLE audit_events ADD COLUMN chain_pos BIGINT;
ALTER TABLE audit_head ADD COLUMN sealed_from BIGINT NOT NULL DEFAULT 1;
UPDATE audit_head SET sealed_from = seq + 1 WHERE id = 1;

CREATE SEQUENCE audit_events_seq;
SELECT setval('audit_events_seq', (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events), false);

ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update;
UPDATE audit_events SET chain_pos = seq;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update;
CREATE UNIQUE INDEX audit_events_chain_pos ON audit_events (chain_pos);
CREATE INDEX audit_events_unsealed ON audit_events (seq) WHERE chain_pos IS NULL;

-- The one update allowed: sealing an unsealed event, which sets its position and links and
-- nothing else. Only archived events (sealed at or before the anchor) may be removed.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.chain_pos IS NOT NULL
       AND OLD.chain_pos <= (SELECT anchor_seq FROM audit_head WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.chain_pos IS NULL AND NEW.chain_pos IS NOT NULL
       AND OLD.prev_hash = '' AND OLD.hash = ''
       AND NEW.seq = OLD.seq AND NEW.at = OLD.at AND NEW.actor = OLD.actor
       AND NEW.action = OLD.action AND NEW.target = OLD.target AND NEW.outcome = OLD.outcome
       AND NEW.detail = OLD.detail AND NEW.source_ip IS NOT DISTINCT FROM OLD.source_ip
       AND NEW.mac IS NOT DISTINCT FROM OLD.mac THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
