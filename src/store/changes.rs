//! Changes every node must hear of at once (R22): announced in the transaction that makes
//! them, over PostgreSQL NOTIFY, delivered when it commits and never if it rolls back; and on
//! this node, counted when that transaction commits, before its caller goes on. Here, beside
//! the transaction, so that what announces (revocation, keys, systems) does not depend on the
//! cluster that listens (`cluster::changes`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::Tx;

/// How many changes this node knows of. A cache notes the count before it reads the database
/// and keeps what it read only while the count is unchanged, so that nothing read before a
/// change committed is used after it.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Counts a change (committed here, or heard of from another node).
    pub fn count(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// The channel of [`announce`].
pub const CHANNEL: &str = "sekimori_changes";

/// What a node keeps of what it read from the database, by key. An entry is used only in the
/// second it was read in (Sekimori's clock: what it read was decided as of that second, as
/// the database's own checks are) and only while no change was counted since before it was
/// read. So a change announced on this node is seen by the next request; one announced on
/// another node as soon as its notice arrives; and one whose notice was missed, or written by
/// another process on a SQLite file, within a second. Only what exists is kept: anyone can ask
/// for a key that does not.
#[derive(Debug)]
pub struct Kept<V> {
    entries: RwLock<HashMap<String, Entry<V>>>,
    /// Past it the cache starts afresh.
    most_entries: usize,
}

/// When something was read: the count of changes before, and the clock's second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub changes: u64,
    pub second: i64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    read: Stamp,
}

impl<V: Clone> Kept<V> {
    pub fn new(most_entries: usize) -> Self {
        Kept { entries: RwLock::new(HashMap::new()), most_entries }
    }

    /// The value kept for `key`, if it was read with the stamp `now` (taken before the caller
    /// would read the database).
    pub fn get(&self, key: &str, now: Stamp) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(key)?;
        (entry.read == now).then(|| entry.value.clone())
    }

    /// Keeps `value`, read from the database after `read` was taken: a change counted since
    /// makes it stale at once.
    pub fn keep(&self, key: &str, value: V, read: Stamp) {
        // A poisoned lock only means a panic elsewhere mid-insert: start afresh.
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| {
            let mut entries = poisoned.into_inner();
            entries.clear();
            entries
        });
        if entries.len() >= self.most_entries {
            entries.clear();
        }
        entries.insert(key.to_owned(), Entry { value, read });
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A signing key was added (a rotation): every node reloads its keys, so that it verifies
    /// what the new key signs and publishes it in its JWKS.
    Keys,
    /// Something was revoked: what a node keeps of systems (`systems::cache`) and of the
    /// state behind tokens (`oidc::token_cache`) is read again. (Whether a token's own row is
    /// revoked is read from the database on every introspection and userinfo.)
    Revocation,
    /// A consuming system's registration changed (its status, secret, grants, scopes): every
    /// node drops what it caches of systems. (An emergency stop, and its lift, revoke.)
    Systems,
    /// A person's record or the roles they hold changed without ending anything (a role
    /// granted, a role's definition, a name or a date corrected): what this node keeps of the
    /// state behind tokens is read again, so that introspection and userinfo say it at once.
    /// Counted on this node only: the other nodes see it within a second (what they keep is
    /// used only in the second it was read in). A notice for each would cost an HR batch dear:
    /// PostgreSQL serializes the commits of transactions that notify, and 23,000 changes took
    /// 98–102 s to apply instead of 71–72 s (BENCHMARKS.md, tenth run).
    People,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Keys => "keys",
            Change::Revocation => "revocation",
            Change::Systems => "systems",
            Change::People => "people",
        }
    }

    /// Whether the other nodes are told through NOTIFY (else only this node counts it).
    fn notifies_others(self) -> bool {
        !matches!(self, Change::People)
    }

    pub fn parse(payload: &str) -> Option<Change> {
        [Change::Keys, Change::Revocation, Change::Systems, Change::People]
            .into_iter()
            .find(|change| change.as_str() == payload)
    }
}

/// The changes one transaction announced: each is sent once, however many of its writes make
/// it (an HR batch changes many people).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced(u8);

impl Announced {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds `change`; false when it was already there.
    fn add(&mut self, change: Change) -> bool {
        let bit = 1 << change as u8;
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }
}

/// Tells every node of `change` when `tx` commits: this one at once, the others (PostgreSQL)
/// through NOTIFY — save [`Change::People`], which they see within a second.
pub async fn announce(tx: &mut Tx, change: Change) -> Result<(), sqlx::Error> {
    if !tx.announced.add(change) || tx.dialect() != super::Dialect::Postgres || !change.notifies_others() {
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
