//! Several nodes on one PostgreSQL database (R22): each node is stateless — sessions, keys,
//! throttling windows and outboxes are rows — so a load balancer may send any request to any
//! node. Two things still need the cluster's attention:
//!
//! - **work that must run once** across the deployment (the sweeper, due HR changes, the access
//!   job): it runs on one node only, the *jobs leader*, chosen by a PostgreSQL advisory lock
//!   ([`leader`]). The outbox workers (back-channel logout, mail), the audit checkpoint writer
//!   (a file on each node) and the key reloader run on every node: the outboxes are claimed row
//!   by row, and the others are the node's own.
//! - **what a node keeps in memory**: the signing keys, the consuming systems as client
//!   authentication reads them, and the state behind a person's access token (their person,
//!   session and roles). A change to keys or systems, and every revocation, is announced in the
//!   transaction that makes it ([`announce`]); every node listens and drops what it holds
//!   ([`changes`]); a change to a person that ends nothing is counted on its own node only.
//!   The database stays the truth: whether a token is revoked is read from its row on every
//!   introspection and userinfo, what a node keeps of systems and tokens is used only in the
//!   second it was read in (`store::changes::Kept`), and keys are also reloaded every minute.
//!
//! On SQLite there is one node, always the leader.

pub mod changes;
pub mod leader;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::store::Dialect;
use crate::App;

pub use changes::{announce, Change};

/// This node's place in the cluster.
#[derive(Debug, Default)]
pub struct Cluster {
    leader: AtomicBool,
    /// Woken when the leader announces that it let go of the jobs lock.
    released: Notify,
}

impl Cluster {
    /// Whether this node runs the singleton jobs now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    fn set_leader(app: &App, leader: bool) {
        app.cluster.leader.store(leader, Ordering::SeqCst);
        app.metrics.set_jobs_leader(leader);
    }
}

/// The jobs that must run on one node only, started when this node becomes the leader.
fn start_singletons(app: &App) -> Singletons {
    Singletons(vec![
        crate::jobs::spawn_sweeper(app.clone()),
        crate::jobs::spawn_hr_changes(app.clone()),
        crate::jobs::spawn_access(app.clone()),
        crate::jobs::spawn_statistics(app.clone()),
        crate::jobs::spawn_monthly_report(app.clone()),
    ])
}

/// The running singleton jobs; dropped, they stop.
struct Singletons(Vec<JoinHandle<()>>);

impl Singletons {
    /// Stops them and waits until they have. A job stopped in the middle of a transaction
    /// leaves nothing half done: the transaction rolls back, and the next leader redoes it.
    async fn stop(mut self) {
        for job in &self.0 {
            job.abort();
        }
        for job in std::mem::take(&mut self.0) {
            let _ = job.await;
        }
    }
}

impl Drop for Singletons {
    fn drop(&mut self) {
        for job in &self.0 {
            job.abort();
        }
    }
}

/// How long a graceful stop waits for the lock to be given back before it gives up (the
/// connection then closes, which releases the lock as well).
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// This node's part in the cluster, while it serves: the election (or, on SQLite, the
/// singleton jobs themselves) and the change listener. Dropped, everything stops and the
/// lock's connection closes.
pub struct Node {
    stop: watch::Sender<bool>,
    election: Option<JoinHandle<()>>,
    singletons: Option<Singletons>,
    others: JoinSet<()>,
}

/// Joins the cluster: on PostgreSQL, runs for the jobs lock and listens for changes; on
/// SQLite, becomes the leader at once.
pub fn join(app: &App) -> Node {
    let (stop, stopped) = watch::channel(false);
    let mut others = JoinSet::new();
    match app.store.dialect() {
        Dialect::Sqlite => {
            Cluster::set_leader(app, true);
            Node { stop, election: None, singletons: Some(start_singletons(app)), others }
        }
        Dialect::Postgres => {
            others.spawn(changes::listen(app.clone()));
            let election = tokio::spawn(leader::run(app.clone(), stopped));
            Node { stop, election: Some(election), singletons: None, others }
        }
    }
}

impl Node {
    /// Leaves the cluster gracefully: the singleton jobs stop, the lock is released and the
    /// other nodes are told, so that one of them takes over at once. Call it once requests in
    /// flight have been answered (R20).
    pub async fn leave(mut self) {
        let _ = self.stop.send(true);
        if let Some(singletons) = self.singletons.take() {
            singletons.stop().await;
        }
        if let Some(mut election) = self.election.take() {
            if tokio::time::timeout(STOP_WITHIN, &mut election).await.is_err() {
                tracing::warn!("the jobs lock was not released in time; closing its connection releases it");
                election.abort();
            }
        }
        self.others.shutdown().await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(election) = &self.election {
            election.abort();
        }
    }
}
