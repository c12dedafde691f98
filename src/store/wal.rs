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
//! itself only past [`WRITER_BACKSTOP`] pages, should the task fall behind. Copying the WAL
//! back changes nothing of durability: a commit is in the WAL, synced to disk, when it returns
//! ([`WalSync`] for the writer's commits, `synchronous = FULL` for the others').

use std::sync::Arc;
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

/// Makes the commits of SQLite's writer connection durable beside it: the writer commits with
/// `synchronous = NORMAL` (its COMMIT writes the WAL but does not wait for the disk), and each
/// [`super::Tx::commit`] then waits here for an `fdatasync` of the WAL file that began after its
/// COMMIT returned, before it returns. One sync serves every commit made before it began, and
/// the writer goes on with the next transaction while the disk works: with `synchronous =
/// FULL`, the one writer waited for every batch's sync itself (BENCHMARKS.md, fifteenth run).
/// The guarantee is FULL's: a commit that returned survives a power failure.
///
/// Syncing the WAL through a descriptor of its own is syncing the file: `fdatasync` flushes
/// the file's written data whatever descriptor wrote it. The descriptor is kept open from one
/// sync to the next (and opened again only when the path names another file): the kernel
/// reports a failed write-back to every descriptor that was open when it happened, but to one
/// opened later only if no other descriptor has seen it yet; SQLite's own syncs (a checkpoint's,
/// say) could see it first and leave a freshly opened descriptor a clean sync over lost pages.
/// When the WAL does not exist, SQLite has copied it into the database file and removed it,
/// and the database file is synced instead; when neither exists, the path is wrong and the
/// sync fails (a wrong path must not pass for a durable commit). Once a sync fails, no later
/// one is believed (the kernel may have dropped the pages it could not write and report the
/// next sync clean): every commit then fails until the server is restarted and SQLite
/// recovers from what is on disk.
#[derive(Debug)]
pub struct WalSync {
    database: std::path::PathBuf,
    path: std::path::PathBuf,
    state: std::sync::Mutex<SyncState>,
    done: tokio::sync::Notify,
    /// The WAL's descriptor, kept between syncs (one sync runs at a time).
    kept: std::sync::Mutex<Option<Opened>>,
}

/// An open file, and which file it is.
#[derive(Debug)]
struct Opened {
    file: std::fs::File,
    id: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Syncs begun, and the number of the last one finished.
    started: u64,
    finished: u64,
    running: bool,
    /// Why syncing failed, once it has.
    failed: Option<String>,
}

impl WalSync {
    /// For the SQLite database file `database`.
    pub fn new(database: &std::path::Path) -> Self {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        WalSync {
            database: database.to_owned(),
            path: path.into(),
            state: Default::default(),
            done: tokio::sync::Notify::new(),
            kept: Default::default(),
        }
    }

    /// How many syncs have finished.
    pub fn syncs(&self) -> u64 {
        self.state().finished
    }

    /// Why syncing failed, once it has (every commit fails from then on).
    pub fn failed(&self) -> Option<String> {
        self.state().failed.clone()
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Option<Opened>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        // A poisoned lock only means a panic elsewhere while it was held; the counts are whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What [`WalSync::wait`] waits for to have everything committed before this call on disk:
    /// a sync that begins after it.
    pub fn ticket(&self) -> u64 {
        self.state().started + 1
    }

    /// Returns once the sync `needed` (a [`WalSync::ticket`]), or a later one, has finished.
    pub async fn wait(self: &Arc<Self>, needed: u64) -> Result<(), sqlx::Error> {
        loop {
            // Registered before the state is looked at, so that a sync finishing in between
            // still wakes this caller.
            let finished = self.done.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let number = {
                let mut state = self.state();
                if let Some(reason) = &state.failed {
                    return Err(not_durable(reason));
                }
                if state.finished >= needed {
                    return Ok(());
                }
                if state.running {
                    None
                } else {
                    state.running = true;
                    state.started += 1;
                    Some(state.started)
                }
            };
            let Some(number) = number else {
                finished.await;
                continue;
            };
            // The sync runs, and its end is recorded, on a thread of its own whether or not
            // this caller is still there to hear it: a caller can go away at any await (its
            // request cancelled when the client hangs up or the request times out), and a sync
            // left "running" would stall every commit after it.
            let sync = Arc::clone(self);
            let _ = tokio::task::spawn_blocking(move || sync.sync_now(number)).await;
        }
    }

    /// Runs sync `number`, records how it ended, and wakes the waiters.
    fn sync_now(&self, number: u64) {
        let kept = self.kept().take();
        let (synced, kept) = sync_file(&self.path, &self.database, kept);
        *self.kept() = kept;
        {
            let mut state = self.state();
            state.running = false;
            match synced {
                Ok(()) => state.finished = number,
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        wal = %self.path.display(),
                        "syncing the SQLite WAL to disk failed; every write fails until the server is restarted"
                    );
                    state.failed = Some(e.to_string());
                }
            }
        }
        self.done.notify_waiters();
    }
}

/// Syncs the WAL through `kept` when it is still the file at `wal` (through a new descriptor
/// otherwise), or the database file when there is no WAL; returns the WAL's descriptor to keep.
fn sync_file(
    wal: &std::path::Path,
    database: &std::path::Path,
    kept: Option<Opened>,
) -> (std::io::Result<()>, Option<Opened>) {
    let opened = match std::fs::metadata(wal) {
        Ok(meta) => match kept {
            Some(kept) if kept.id.is_some() && kept.id == file_id(&meta) => Ok(kept),
            _ => std::fs::File::open(wal)
                .map(|file| Opened { id: file.metadata().ok().as_ref().and_then(file_id), file }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (std::fs::File::open(database).and_then(|file| file.sync_data()), None)
        }
        Err(e) => Err(e),
    };
    match opened {
        Ok(opened) => (opened.file.sync_data(), Some(opened)),
        Err(e) => (Err(e), None),
    }
}

/// Which file `meta` describes (device and inode); None where that cannot be told, so that
/// the descriptor is opened again at every sync.
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

pub(super) fn not_durable(reason: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("the SQLite WAL could not be synced to disk ({reason}); restart the server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_sync_serves_the_commits_before_it_and_a_failed_sync_is_never_forgotten() {
        let dir = std::env::temp_dir().join(format!("sekimori-walsync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("db.sqlite");
        std::fs::write(dir.join("db.sqlite-wal"), b"frames").unwrap();
        let sync = Arc::new(WalSync::new(&database));
        let waits = (0..32).map(|_| {
            let sync = sync.clone();
            async move { sync.wait(sync.ticket()).await }
        });
        for waited in futures_util::future::join_all(waits).await {
            waited.unwrap();
        }
        assert!((1..=32).contains(&sync.syncs()), "{} syncs", sync.syncs());
        // A ticket is served only by a sync that begins after it was taken.
        let ticket = sync.ticket();
        assert!(ticket > sync.syncs());
        sync.wait(ticket).await.unwrap();
        assert!(sync.syncs() >= ticket);
        // The WAL's descriptor is kept between syncs, and follows the file when the path
        // comes to name another one.
        let kept_id = || sync.kept().as_ref().and_then(|kept| kept.id);
        let first = kept_id().expect("a descriptor is kept");
        std::fs::remove_file(dir.join("db.sqlite-wal")).unwrap();
        std::fs::write(dir.join("db.sqlite-wal"), b"new frames").unwrap();
        let replaced = file_id(&std::fs::metadata(dir.join("db.sqlite-wal")).unwrap()).unwrap();
        assert_ne!(first, replaced);
        sync.wait(sync.ticket()).await.unwrap();
        assert_eq!(kept_id(), Some(replaced));

        // A caller that goes away while its sync runs (its request cancelled: the client hung
        // up, the request timed out) leaves no sync half-done: the next caller is served.
        let begun = sync.ticket();
        assert!(futures_util::FutureExt::now_or_never(sync.wait(begun)).is_none(), "the sync was begun, not finished");
        let after = tokio::time::timeout(std::time::Duration::from_secs(10), sync.wait(sync.ticket())).await;
        assert!(matches!(after, Ok(Ok(()))), "a cancelled wait stalled the syncs after it: {after:?}");

        // A WAL that cannot be opened (its directory is a file) fails the sync, and every later
        // wait, even for a WAL that could be.
        let broken = Arc::new(WalSync::new(&dir.join("db.sqlite-wal").join("inner")));
        assert!(broken.wait(broken.ticket()).await.is_err());
        assert!(broken.wait(broken.ticket()).await.is_err());
        // No WAL: the database file is synced; neither: a wrong path, refused.
        std::fs::write(dir.join("copied.sqlite"), b"pages").unwrap();
        let copied = Arc::new(WalSync::new(&dir.join("copied.sqlite")));
        copied.wait(copied.ticket()).await.unwrap();
        let wrong = Arc::new(WalSync::new(&dir.join("missing.sqlite")));
        assert!(wrong.wait(wrong.ticket()).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
