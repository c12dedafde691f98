//! Changes every node must hear of at once (R22): announced in the transaction that makes
//! them, over PostgreSQL NOTIFY, delivered when it commits and never if it rolls back. Here,
//! beside the transaction, so that what announces (revocation, keys) does not depend on the
//! cluster that listens (`cluster::changes`).

use super::Tx;

/// The channel of [`announce`].
pub const CHANNEL: &str = "sekimori_changes";

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A signing key was added (a rotation): every node reloads its keys, so that it verifies
    /// what the new key signs and publishes it in its JWKS.
    Keys,
    /// Something was revoked. Revocation is read from the database on every introspection and
    /// userinfo, so no node holds revoked state today; a per-node cache of live state must be
    /// dropped on this notice.
    Revocation,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Keys => "keys",
            Change::Revocation => "revocation",
        }
    }

    pub fn parse(payload: &str) -> Option<Change> {
        [Change::Keys, Change::Revocation].into_iter().find(|change| change.as_str() == payload)
    }
}

/// Tells every node of `change` when `tx` commits. On SQLite (one node) it does nothing.
pub async fn announce(tx: &mut Tx, change: Change) -> Result<(), sqlx::Error> {
    if tx.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    // pg_notify returns void, which the Any driver cannot decode: select something else.
    sqlx::query("SELECT 1 AS sent FROM (SELECT pg_notify($1, $2)) AS notified")
        .bind(CHANNEL)
        .bind(change.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(())
}

