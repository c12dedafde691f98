//! SQLite's write-ahead log, copied back into the database file beside the writer instead of
//! by it.
//!
//! A commit appends the pages it changed to the WAL; a checkpoint copies them into the database
//! file. By default the connection whose commit takes the WAL past 1,000 pages runs the
//! checkpoint itself, inside that commit: on Sekimori's one writer connection, every few
//! group-commit batches stalled every waiting request while several megabytes were copied and
//! synced (a refresh-token rotation dirties some ten index pages, most of them random). Here a
//! task copies the WAL back every [`EVERY`] on a reading connection (a PASSIVE checkpoint
//! takes no lock the writer needs, and runs on the other core), and the writer checkpoints
//! itself only past [`WRITER_BACKSTOP`] pages, should the task fall behind. Durability is
//! unchanged: a commit is in the WAL, synced to disk, when it returns (`synchronous = FULL`,
//! `Store::open_pool`); only the copying moved.

use std::time::Duration;

use super::{Dialect, Store};

/// How often the task checkpoints.
pub const EVERY: Duration = Duration::from_millis(50);

/// The WAL size, in pages, past which a committing connection checkpoints the WAL itself
/// (`PRAGMA wal_autocheckpoint`; SQLite's default is 1,000). About 64 MiB of 4 KiB pages.
pub const WRITER_BACKSTOP: u32 = 16_000;

/// Checkpoints the WAL of a SQLite store every [`EVERY`] until the store is closed; nothing
/// for PostgreSQL.
pub fn spawn_checkpointer(store: Store) {
    if store.dialect() != Dialect::Sqlite {
        return;
    }
    tokio::spawn(async move {
        while !store.pool().is_closed() {
            tokio::time::sleep(EVERY).await;
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(store.pool()).await {
                if !store.pool().is_closed() {
                    tracing::warn!(error = %e, "copying the SQLite WAL into the database failed; the next round retries");
                }
            }
        }
    });
}
