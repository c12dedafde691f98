//! The jobs leader: the node holding a PostgreSQL session-level advisory lock runs the jobs that
//! must run once (see [`super`]).
//!
//! The lock lives on a connection of its own, outside the pool: a pooled connection goes back
//! to the pool and the lock with it. PostgreSQL releases a session's advisory locks when the
//! session ends, so:
//! - a node that stops gracefully unlocks and says so on [`RELEASED`]; the others try at once;
//! - a node killed outright leaves a closed socket: the server ends the session, the lock is
//!   free, and another node takes it at its next try (every [`RETRY_EVERY`]);
//! - a node whose host vanishes leaves a socket nobody closes: the server's TCP keepalive and
//!   user timeout (set on the session) end it within seconds.
//!
//! The leader checks its connection every [`CHECK_EVERY`]; a check that fails or is not
//! answered within [`ANSWER_WITHIN`] means the lock may be gone, and the node steps down at
//! once (its singleton jobs stop) before trying again. The leader notices a broken connection
//! (at most `CHECK_EVERY + ANSWER_WITHIN`) before the server gives the lock to anyone else
//! after a network failure (the keepalive and user timeouts below are longer). Only a session
//! ended by the server itself (an administrator's `pg_terminate_backend`, a server restart)
//! can let two nodes run the jobs for up to `CHECK_EVERY`; every job claims its rows in
//! transactions, so that moment costs repeated work at worst.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor, Row};
use tokio::sync::watch;

use super::Cluster;
use crate::App;

/// How often a node that is not the leader tries to take the lock.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often the leader checks that its lock's connection still stands.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a check (or a try) may take before the connection is taken for lost.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// The advisory lock's key: "sekimori" in ASCII. Advisory locks are per database, so two
/// deployments on one PostgreSQL server with their own databases do not meet.
pub const LOCK_KEY: i64 = i64::from_be_bytes(*b"sekimori");
/// The channel on which a leader that lets go says so.
pub const RELEASED: &str = "sekimori_jobs_released";

/// The server's side of the lock's connection (seconds, and milliseconds for the user timeout):
/// a peer silent for 5 s is probed every 2 s and dropped after 3 unanswered probes; data left
/// unacknowledged for 10 s ends the connection too. Set after connecting, each on its own: a
/// server whose system lacks one refuses only that one.
const SERVER_SIDE_TIMEOUTS: [&str; 4] = [
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 10000",
];

/// The options of the cluster's own connections (the lock's and the change listener's).
pub(super) fn connect_options(database_url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(database_url)?.application_name("sekimori cluster").disable_statement_logging())
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut conn = options.connect().await?;
    for setting in SERVER_SIDE_TIMEOUTS {
        if let Err(e) = conn.execute(setting).await {
            tracing::debug!(error = %e, setting, "the database server does not take this connection setting");
        }
    }
    Ok(conn)
}

/// Tries to take the lock, connecting first if needed.
async fn try_lock(options: &PgConnectOptions, conn: &mut Option<PgConnection>) -> Result<bool, sqlx::Error> {
    let held = match conn {
        Some(held) => held,
        None => conn.insert(connect(options).await?),
    };
    let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked").bind(LOCK_KEY).fetch_one(held).await?;
    row.try_get("locked")
}

/// Why leading ended.
enum Ended {
    /// The node is stopping.
    Stop,
    /// The lock's connection failed its check: the lock may be gone.
    Lost(String),
}

/// Checks the lock's connection until it fails or the node stops.
async fn lead(conn: &mut PgConnection, stop: &mut watch::Receiver<bool>) -> Ended {
    loop {
        tokio::select! {
            _ = stopping(stop) => return Ended::Stop,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        match tokio::time::timeout(ANSWER_WITHIN, conn.execute("SELECT 1")).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Ended::Lost(e.to_string()),
            Err(_) => return Ended::Lost(format!("no answer within {} s", ANSWER_WITHIN.as_secs())),
        }
    }
}

/// Resolves when the node is told to stop (or whoever could tell it is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Waits before the next try: [`RETRY_EVERY`], or less when the leader says it let go.
async fn wait_to_retry(app: &App, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = stopping(stop) => {}
        _ = app.cluster.released.notified() => {}
        _ = tokio::time::sleep(RETRY_EVERY) => {}
    }
}

/// Gives the lock back and tells the other nodes, then closes the connection.
async fn release(mut conn: PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut conn).await?;
    // Outside a transaction: delivered at once, after the unlock.
    sqlx::query("SELECT pg_notify($1, '')").bind(RELEASED).execute(&mut conn).await?;
    conn.close().await
}

/// Runs for the lock until the node stops: tries, leads while the lock holds, steps down when
/// its connection fails, and releases it when the node stops.
pub(super) async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let options = match connect_options(&app.config.database_url) {
        Ok(options) => options,
        Err(e) => {
            tracing::error!(error = %e, "cannot run for the jobs lock: singleton jobs will not run on this node");
            return;
        }
    };
    let mut conn: Option<PgConnection> = None;
    while !*stop.borrow() {
        match tokio::time::timeout(ANSWER_WITHIN, try_lock(&options, &mut conn)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                wait_to_retry(&app, &mut stop).await;
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot reach the database for the jobs lock; trying again");
                conn = None;
                wait_to_retry(&app, &mut stop).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("the database did not answer about the jobs lock in time; trying again");
                conn = None;
                wait_to_retry(&app, &mut stop).await;
                continue;
            }
        }
        let Some(held) = conn.as_mut() else { continue };
        Cluster::set_leader(&app, true);
        tracing::info!("this node is the jobs leader: it runs the sweeper, due HR changes and the access job");
        let singletons = super::start_singletons(&app);
        let ended = lead(held, &mut stop).await;
        singletons.stop().await;
        Cluster::set_leader(&app, false);
        match ended {
            Ended::Stop => {
                if let Some(held) = conn.take() {
                    match release(held).await {
                        Ok(()) => tracing::info!("released the jobs lock; another node takes over"),
                        Err(e) => {
                            tracing::warn!(error = %e, "releasing the jobs lock failed; its connection is closed, which releases it")
                        }
                    }
                }
                return;
            }
            Ended::Lost(error) => {
                tracing::warn!(%error, "the jobs lock's connection failed: stepped down, singleton jobs stopped");
                // Dropping the connection closes it: if the server still holds the lock for
                // it, the session ends and the lock is free for whoever tries next.
                conn = None;
                wait_to_retry(&app, &mut stop).await;
            }
        }
    }
    if let Some(held) = conn.take() {
        let _ = held.close().await;
    }
}
