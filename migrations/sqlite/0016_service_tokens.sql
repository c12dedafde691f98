-- A consuming system's own access tokens (client_credentials) have no row in access_tokens:
-- introspection checks the signature, the expiry, the system's live state and these two.
--
-- The generation a service token was issued in is the suffix of its jti (`<random>.<n>`).
-- Ending every token of a system (disabling it, an emergency stop) raises the generation, so
-- every earlier token is inactive at once without a row to mark for each.
ALTER TABLE clients ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;

-- RFC 7009 revocation of one service token: listed until it would have expired anyway (the
-- sweeper removes it a day after).
CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (client_id),
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_access_tokens_expires ON revoked_access_tokens (expires_at);
