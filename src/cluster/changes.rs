//! Changes every node must hear of at once, over PostgreSQL LISTEN/NOTIFY (R22).
//!
//! [`announce`] queues a notice on [`CHANNEL`] in the caller's transaction: PostgreSQL delivers
//! it when the transaction commits, and never if it rolls back. [`listen`] runs on every node
//! and drops what the node holds for the change. Notices are a shortcut, never the truth:
//! one sent while a node's listener was reconnecting is lost, so a node that (re)connects
//! reloads everything, the signing keys are reloaded every minute all the same
//! (`jobs::spawn_key_reloader`), and what a node caches of systems and of the state behind
//! tokens is read again after a second at most (`systems::cache`, `oidc::token_cache`).

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use crate::App;

pub use crate::store::changes::{announce, Change, CHANNEL};

/// How long the listener waits before connecting again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Listens for changes (and for the jobs leader letting go) until the node stops.
pub(super) async fn listen(app: App) {
    let options = match super::leader::connect_options(&app.config.database_url) {
        Ok(options) => options,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for changes from other nodes; keys are reloaded every minute");
            return;
        }
    };
    // A pool of one, which the listener uses to reconnect.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    loop {
        if let Err(e) = listen_once(&app, &pool).await {
            tracing::warn!(error = %e, "listening for changes from other nodes failed; connecting again");
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn listen_once(app: &App, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, super::leader::RELEASED]).await?;
    // Whatever was announced while this node was not listening is lost: start afresh.
    refresh_all(app).await;
    loop {
        match listener.try_recv().await? {
            Some(notice) if notice.channel() == super::leader::RELEASED => app.cluster.released.notify_one(),
            Some(notice) => changed(app, notice.payload()).await,
            // The connection was lost and made again (listening again): notices may be lost.
            None => {
                tracing::info!("reconnected to listen for changes; reloading what this node holds");
                refresh_all(app).await;
            }
        }
    }
}

/// Drops what this node holds for the change announced with `payload`.
async fn changed(app: &App, payload: &str) {
    let change = Change::parse(payload);
    app.metrics.cluster_notice(change.map_or("other", Change::as_str));
    match change {
        Some(Change::Keys) => reload_keys(app).await,
        // What a node keeps of systems (`systems::cache`) and of the state behind tokens
        // (`oidc::token_cache`) is read again.
        Some(Change::Revocation | Change::Systems | Change::People) => app.store.changes().count(),
        // A change this version does not know (a newer node's): drop everything.
        None => refresh_all(app).await,
    }
}

/// Drops everything this node holds.
async fn refresh_all(app: &App) {
    app.store.changes().count();
    reload_keys(app).await;
}

async fn reload_keys(app: &App) {
    if let Err(e) = app.keys.reload(&app.store).await {
        tracing::warn!(error = %e, "reloading signing keys failed; keeping the ones loaded");
    }
}
