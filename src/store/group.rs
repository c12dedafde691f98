//! Group commit: many small write transactions from concurrent requests committed as one, as
//! a database does with its log. A request hands its writes over as an item and waits; one task
//! takes the items waiting at that moment, writes them all in a single transaction — with as
//! few statements as their kind allows ([`Batch::write`]) — commits once, and only then answers
//! each request. An item's writes are durable when its caller hears `Ok`, exactly as with its
//! own transaction: a crash before the commit loses the whole batch, and no caller was answered.
//!
//! On SQLite this turns N transactions on the one writer connection (each a BEGIN, its
//! statements, a COMMIT that writes the touched pages to the WAL) into one; on PostgreSQL, N
//! commits each waiting for its WAL flush into one flush, and N rounds of statements into one,
//! with a few batches under way at once (their order is the sealer's business, not theirs).
//!
//! An item may read as well as write: its writes then run in the batch's transaction after
//! those of the items before it, which it sees, exactly as if their transactions had committed
//! first — on SQLite the one writer runs them in that order either way. Each item has its own
//! outcome (a refusal is an outcome, written like any other), heard by its caller only after
//! the commit.
//!
//! A batch that fails is rolled back, and every item in it is written again in a transaction
//! of its own, so each caller hears its own outcome and the others are not held responsible;
//! one the database abandoned to break a deadlock (PostgreSQL) is written again.
//! Items must therefore be safe to write again after a rollback (they are: a rolled-back
//! transaction left nothing, and an item decides again from what it reads), and an item must
//! not end in an error after writing something it would not have written alone: an error
//! rolls the whole batch back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{Dialect, Durable, Store, Tx};

/// What the writes of one request are, and how many of them are written at once.
pub trait Batch: Send + Sync + Sized + 'static {
    /// What each item's caller hears once the batch has committed.
    type Outcome: Send + 'static;

    /// How many batches are committed at once on PostgreSQL (SQLite has one writer). A batch
    /// spends most of its time waiting for round trips and its WAL flush, so a few committers
    /// each take what is waiting while the others wait for the server; items that read before
    /// they write wait longer, and are better served by more.
    const POSTGRES_COMMITTERS: usize = 4;

    /// Writes `items` inside `tx`, in order, and returns their outcomes in the same order.
    fn write<'a>(tx: &'a mut Tx, items: &'a [Self]) -> Written<'a, Self::Outcome>;

    /// Writes `items` in one statement that commits on its own, where the kind and the
    /// database allow it (a statement is atomic by itself: the batch is written whole or not
    /// at all, without the round trips of `BEGIN` and `COMMIT`); None to write them in a
    /// transaction with [`Batch::write`]. An error means nothing is known to be written.
    fn write_committed<'a>(_store: &'a Store, _items: &'a [Self]) -> Option<Written<'a, Self::Outcome>> {
        None
    }
}

/// The writing of a batch: the outcome of each item, in order.
pub type Written<'a, O> = Pin<Box<dyn Future<Output = Result<Vec<O>, sqlx::Error>> + Send + 'a>>;

/// The most items one transaction takes.
const MOST: usize = 256;

type Reply<T> = oneshot::Sender<Result<<T as Batch>::Outcome, sqlx::Error>>;
/// The items waiting, taken by one committer at a time.
type Queue<T> = Arc<Mutex<mpsc::Receiver<(T, Reply<T>)>>>;

/// The queue to a group-commit task.
#[derive(Debug)]
pub struct GroupCommit<T: Batch> {
    queue: mpsc::Sender<(T, Reply<T>)>,
}

impl<T: Batch> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        GroupCommit { queue: self.queue.clone() }
    }
}

impl<T: Batch> GroupCommit<T> {
    /// Starts the task that commits the items given to this queue (and its clones) on `store`;
    /// it ends when the last of them is dropped.
    pub fn start(store: Store) -> Self {
        let (queue, items) = mpsc::channel(4 * MOST);
        // SQLite writes on one connection: one committer. PostgreSQL commits side by side.
        let committers = match store.dialect() {
            Dialect::Sqlite => 1,
            Dialect::Postgres => T::POSTGRES_COMMITTERS,
        };
        let items = Arc::new(Mutex::new(items));
        for _ in 0..committers {
            tokio::spawn(run(store.clone(), items.clone()));
        }
        GroupCommit { queue }
    }

    /// Writes `item` with the others waiting now; returns when they are committed, or with the
    /// error that kept this one from it (nothing of it written).
    pub async fn submit(&self, item: T) -> Result<T::Outcome, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// One committer: takes what is waiting (the others wait their turn to take), commits it.
async fn run<T: Batch>(store: Store, queue: Queue<T>) {
    let mut waiting = Vec::with_capacity(MOST);
    loop {
        if queue.lock().await.recv_many(&mut waiting, MOST).await == 0 {
            return;
        }
        // A caller that has gone (its request was cancelled, its client hung up) is not written
        // for: nobody would hear the outcome, and a refresh rotated for nobody would make the
        // client's retry with the same token look like theft.
        waiting.retain(|(_, reply)| !reply.is_closed());
        if waiting.is_empty() {
            continue;
        }
        let (items, replies): (Vec<T>, Vec<Reply<T>>) = waiting.drain(..).unzip();
        commit_batch(&store, items, replies).await;
    }
}

/// Writes the batch in one transaction; on any failure, each item alone.
async fn commit_batch<T: Batch>(store: &Store, items: Vec<T>, replies: Vec<Reply<T>>) {
    if items.len() > 1 {
        match in_one(store, &items).await {
            Ok((outcomes, durable)) if durable.is_done() => return answer::<T>(replies, Ok(outcomes)),
            Ok((outcomes, durable)) => {
                // Answered once the commit is on disk; meanwhile this committer takes the next
                // batch (on SQLite the one writer goes on while its last commit is synced).
                tokio::spawn(async move { answer::<T>(replies, durable.wait().await.map(|()| outcomes)) });
                return;
            }
            // Whether a commit that failed took effect cannot be known: writing the items
            // again might write them twice, so every caller hears the error.
            Err(Failed::Commit(e)) => return answer::<T>(replies, Err(e)),
            Err(Failed::Write(_)) => {}
        }
    }
    for (item, reply) in items.iter().zip(replies) {
        let _ = reply.send(alone(store, item).await);
    }
}

/// Tells each caller of a committed batch its outcome, or the error that leaves it unknown.
fn answer<T: Batch>(replies: Vec<Reply<T>>, outcomes: Result<Vec<T::Outcome>, sqlx::Error>) {
    match outcomes {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(sqlx::Error::Protocol(format!("group commit failed: {message}"))));
            }
        }
    }
}

/// Writes one item in a transaction of its own; again, after giving way, if the database
/// abandoned it to break a deadlock (nothing of it was written, `super::is_transient`).
async fn alone<T: Batch>(store: &Store, item: &T) -> Result<T::Outcome, sqlx::Error> {
    let mut retries = 0;
    loop {
        match in_one(store, std::slice::from_ref(item)).await {
            Ok((outcomes, durable)) => {
                durable.wait().await?;
                return outcomes.into_iter().next().ok_or_else(too_few);
            }
            Err(Failed::Write(e)) if super::is_transient(&e) && retries < super::DEADLOCK_RETRIES => {
                super::give_way(retries).await;
                retries += 1;
            }
            Err(Failed::Write(e) | Failed::Commit(e)) => return Err(e),
        }
    }
}

enum Failed {
    /// The writes or the BEGIN failed: nothing was written.
    Write(sqlx::Error),
    /// The COMMIT failed: whether it took effect is unknown.
    Commit(sqlx::Error),
}

/// Writes and commits `items`; their outcomes, and what makes the commit durable (to be waited
/// for before any is answered).
async fn in_one<T: Batch>(store: &Store, items: &[T]) -> Result<(Vec<T::Outcome>, Durable), Failed> {
    if let Some(written) = T::write_committed(store, items) {
        // Whether a statement whose answer was lost took effect cannot be known: each caller
        // hears the error, none is written again.
        return match written.await {
            // A statement committed on its own (PostgreSQL): on disk when it returns.
            Ok(outcomes) if outcomes.len() == items.len() => Ok((outcomes, Durable(None))),
            Ok(_) => Err(Failed::Commit(too_few())),
            Err(e) => Err(Failed::Commit(e)),
        };
    }
    let mut tx = store.begin().await.map_err(Failed::Write)?;
    let outcomes = match T::write(&mut tx, items).await {
        // An outcome for every item, or none is answered from this batch.
        Ok(outcomes) if outcomes.len() == items.len() => outcomes,
        Ok(_) => {
            let _ = tx.rollback().await;
            return Err(Failed::Write(too_few()));
        }
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(Failed::Write(e));
        }
    };
    let durable = tx.commit_then_sync().await.map_err(Failed::Commit)?;
    Ok((outcomes, durable))
}

fn too_few() -> sqlx::Error {
    sqlx::Error::Protocol("a group-commit batch answered fewer items than it took".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a row, and reports the sync ticket of that moment: one taken before the batch's
    /// COMMIT, so no later than the ticket its commit waits for.
    struct Row;

    impl Batch for Row {
        type Outcome = u64;

        fn write<'a>(tx: &'a mut Tx, items: &'a [Self]) -> Written<'a, u64> {
            Box::pin(async move {
                let mut tickets = Vec::with_capacity(items.len());
                for _ in items {
                    sqlx::query("INSERT INTO written (at) VALUES (1)").execute(&mut **tx).await?;
                    tickets.push(tx.wal_sync.as_ref().map_or(0, |sync| sync.ticket()));
                }
                Ok(tickets)
            })
        }
    }

    /// On SQLite every caller of a batch hears back only after a sync of the WAL that began
    /// after its batch wrote: nothing else syncs this store, so a batch answered before its
    /// own sync is seen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_answered_only_once_its_commit_is_synced() {
        let dir = std::env::temp_dir().join(format!("sekimori-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("group.sqlite").display());
        let store = Store::connect(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        sqlx::query("CREATE TABLE written (at INTEGER)").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let group = GroupCommit::<Row>::start(store.clone());
        for _ in 0..5 {
            let calls = (0..32).map(|_| {
                let (group, store) = (group.clone(), store.clone());
                async move {
                    let ticket = group.submit(Row).await.unwrap();
                    (ticket, store.wal_syncs().unwrap())
                }
            });
            for (ticket, synced) in futures_util::future::join_all(calls).await {
                assert!(ticket > 0 && synced >= ticket, "answered after sync {synced}, its batch needed {ticket}");
            }
        }
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
