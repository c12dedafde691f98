//! Group commit: many small write transactions from concurrent requests committed as one, as
//! a database does with its log. A request hands its writes over as a job and waits; one task
//! takes the jobs waiting at that moment, runs them one after the other in a single
//! transaction, commits once, and only then answers each request. A job's writes are durable
//! when its caller hears `Ok`, exactly as with its own transaction: a crash before the commit
//! loses the whole batch, and no caller was answered.
//!
//! On SQLite this turns N transactions on the one writer connection (each a BEGIN, its
//! statements, a COMMIT that writes the touched pages to the WAL) into one; on PostgreSQL, N
//! commits each waiting for its WAL flush into one flush.
//!
//! A job that fails takes the batch's transaction with it: the batch is rolled back, and every
//! job in it is run again in a transaction of its own, so each caller hears its own outcome and
//! the others are not held responsible. Jobs must therefore be safe to run again after a
//! rollback (they are: a rolled-back transaction left nothing), and they must only write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Store, Tx};

/// The writes of one request, run inside the transaction it is given.
pub type Job = Arc<dyn for<'a> Fn(&'a mut Tx) -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>> + Send + Sync>;

/// The most jobs one transaction takes.
const MOST: usize = 256;

type Reply = oneshot::Sender<Result<(), sqlx::Error>>;

/// The queue to the group-commit task of one store.
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<(Job, Reply)>,
}

impl GroupCommit {
    /// Starts the task that commits the jobs of `store` (a copy without a queue of its own, so
    /// that the task ends when the last copy of the store with the queue is dropped).
    pub(super) fn start(store: Store) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MOST);
        tokio::spawn(run(store, jobs));
        GroupCommit { queue }
    }

    pub(super) async fn submit(&self, job: Job) -> Result<(), sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((job, reply)).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn run(store: Store, mut jobs: mpsc::Receiver<(Job, Reply)>) {
    let mut batch = Vec::with_capacity(MOST);
    while jobs.recv_many(&mut batch, MOST).await > 0 {
        commit_batch(&store, &mut batch).await;
    }
}

/// Runs the batch in one transaction; on any failure, each job alone.
async fn commit_batch(store: &Store, batch: &mut Vec<(Job, Reply)>) {
    if batch.len() > 1 {
        match together(store, batch).await {
            Together::Committed => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Ok(()));
                }
                return;
            }
            // Whether a commit that failed took effect cannot be known: running the jobs
            // again might do them twice, so every caller hears the error.
            Together::CommitFailed(e) => {
                let message = e.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(sqlx::Error::Protocol(format!("group commit failed: {message}"))));
                }
                return;
            }
            Together::RolledBack => {}
        }
    }
    for (job, reply) in batch.drain(..) {
        let _ = reply.send(alone(store, &job).await);
    }
}

enum Together {
    Committed,
    RolledBack,
    CommitFailed(sqlx::Error),
}

async fn together(store: &Store, batch: &[(Job, Reply)]) -> Together {
    let Ok(mut tx) = store.begin().await else { return Together::RolledBack };
    for (job, _) in batch {
        if job(&mut tx).await.is_err() {
            // Dropping the transaction rolls it back.
            let _ = tx.rollback().await;
            return Together::RolledBack;
        }
    }
    match tx.commit().await {
        Ok(()) => Together::Committed,
        Err(e) => Together::CommitFailed(e),
    }
}

async fn alone(store: &Store, job: &Job) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    job(&mut tx).await?;
    tx.commit().await
}
