//! Background work: the sweeper, which deletes rows that only matter until they
//! expire (pending logins, throttling windows, used or expired codes, tickets and ceremonies,
//! delivered logout notices), so those tables stay small however many logins a deployment
//! sees; the signing-key reloader, which picks up keys another node rotated in; and the HR
//! lifecycle job, which applies people's changes as they fall due. The back-channel logout
//! outbox has its own worker (`backchannel`). In a cluster the sweeper, the HR job and the
//! access job run on the jobs leader only; `cluster` starts and stops them.

use std::time::Duration;

use crate::clock::UnixTime;
use crate::store::Store;

/// How long used or expired codes are kept after they stop working (for replay detection).
pub const CODE_RETENTION: i64 = 86_400;

/// Deletes what has expired; returns how many rows went.
pub async fn sweep(store: &Store, now: UnixTime, source_window: i64) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    let statements: [(&str, i64); 13] = [
        ("DELETE FROM authorization_requests WHERE expires_at < $1", now),
        ("DELETE FROM login_source_failures WHERE window_start < $1", now - source_window),
        ("DELETE FROM password_tickets WHERE expires_at < $1", now),
        ("DELETE FROM card_replacement_tickets WHERE expires_at < $1", now),
        // An access token's row serves live-state checks until it expires; a day later it goes.
        ("DELETE FROM access_tokens WHERE expires_at < $1", now - CODE_RETENTION),
        // A system's own token revoked alone is listed until it expires; a day later (nodes'
        // clocks may differ) the entry goes.
        ("DELETE FROM revoked_access_tokens WHERE expires_at < $1", now - CODE_RETENTION),
        // A code outlives its use by a day, so a late replay is still recognised and revokes
        // what it issued; access tokens refer to it, so only codes with no live token go.
        (
            "DELETE FROM auth_codes WHERE expires_at < $1
             AND NOT EXISTS (SELECT 1 FROM access_tokens t WHERE t.code_id = auth_codes.id)",
            now - CODE_RETENTION,
        ),
        // A refresh token row outlives its family's end by a day, so a late reuse is still
        // recognised.
        ("DELETE FROM refresh_tokens WHERE expires_at < $1", now - CODE_RETENTION),
        // Delivered or abandoned notices are in the audit log; a week later the rows go.
        (
            "DELETE FROM logout_notices WHERE (delivered_at IS NOT NULL OR abandoned_at IS NOT NULL) AND created_at < $1",
            now - 7 * 86_400,
        ),
        // Signs of abnormal access count only within `[alerts] window_seconds` (at most 30 days).
        ("DELETE FROM abnormal_access WHERE at < $1", now - 30 * 86_400),
        // Card ceremonies and enrollment codes are worthless once expired.
        ("DELETE FROM webauthn_ceremonies WHERE expires_at < $1", now),
        ("DELETE FROM enrollment_codes WHERE expires_at < $1", now - CODE_RETENTION),
        // Who to notify matters only while the session lives.
        (
            "DELETE FROM session_clients WHERE session_id IN
                 (SELECT id FROM sessions WHERE absolute_expires_at < $1 OR revoked_at < $1)",
            now - CODE_RETENTION,
        ),
    ];
    // Each statement in its own short transaction through the writer, so that a sweep never
    // holds the write lock for long.
    for (sql, cutoff) in statements {
        let mut tx = store.begin().await?;
        removed += sqlx::query(sql).bind(cutoff).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
    }
    Ok(removed)
}

/// Reloads the signing keys every minute, so that a rotation made by another node or by
/// `sekimori keys rotate` is used here too, and replaced keys leave the JWKS in time.
pub fn spawn_key_reloader(app: crate::App) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(60));
        interval.tick().await;
        loop {
            interval.tick().await;
            if let Err(e) = app.keys.reload(&app.store).await {
                tracing::warn!(error = %e, "reloading signing keys failed; keeping the ones loaded");
            }
        }
    });
}

/// Runs [`sweep`] every few minutes, on the jobs leader (`cluster`), until stopped.
pub fn spawn_sweeper(app: crate::App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(300));
        loop {
            interval.tick().await;
            match sweep(&app.store, app.clock.now(), app.config.password.source_window_seconds).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "swept expired rows"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired rows failed"),
            }
        }
    })
}

/// PostgreSQL: analyzes a table that every token grows once at least half as many rows as it
/// holds, and at least a thousand, have changed since it was last analyzed (checked every two
/// seconds, on the jobs leader).
/// The token rows are checked by prepared statements; a statement's plan made while its table
/// was small is a sequential scan, kept until the table is analyzed — and autovacuum looks
/// only once a minute, which a new database's first minutes do not reach (BENCHMARKS.md,
/// fourteenth run). After a few doublings the table is large and autovacuum's own rule (a
/// tenth changed) comes first. On SQLite, nothing to do.
pub fn spawn_statistics(app: crate::App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if app.store.dialect() != crate::store::Dialect::Postgres {
            return;
        }
        let mut interval = tokio::time::interval(Duration::from_secs(2));
        loop {
            interval.tick().await;
            if let Err(e) = analyze_grown(&app.store).await {
                tracing::warn!(error = %e, "analyzing the token tables failed");
            }
        }
    })
}

/// The tables [`spawn_statistics`] watches: those every token request grows.
const GROWING: [&str; 2] = ["access_tokens", "refresh_tokens"];

/// Analyzes each of [`GROWING`] of which at least 1,000 rows, and at least half as many as it
/// holds, have changed since its last analysis; returns those it analyzed. Nothing on SQLite.
pub async fn analyze_grown(store: &Store) -> Result<Vec<&'static str>, sqlx::Error> {
    if store.dialect() != crate::store::Dialect::Postgres {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT CAST(relname AS TEXT) AS relname FROM pg_stat_user_tables
         WHERE n_mod_since_analyze >= 1000 AND 2 * n_mod_since_analyze >= n_live_tup",
    )
    .fetch_all(store.pool())
    .await?;
    let mut analyzed = Vec::new();
    for row in rows {
        let name: String = sqlx::Row::try_get(&row, "relname")?;
        // The name is one of ours, never text from outside.
        let Some(&table) = GROWING.iter().find(|t| **t == name) else { continue };
        sqlx::query(&format!("ANALYZE {table}")).execute(store.pool()).await?;
        analyzed.push(table);
    }
    Ok(analyzed)
}

/// Applies due HR changes (`hr::changes::apply_due`) every 30 seconds on the jobs leader
/// (`cluster`); should two nodes run it at once, a change claimed by one is skipped by the
/// other, so each is applied once. A leave at midnight takes effect within the half-minute (R22).
pub fn spawn_hr_changes(app: crate::App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(30));
        loop {
            interval.tick().await;
            match crate::hr::changes::apply_due(&app.store, app.clock.now()).await {
                Ok(run) if run == Default::default() => {}
                Ok(run) => tracing::info!(
                    applied = run.applied,
                    superseded = run.superseded,
                    failed = run.failed,
                    "applied due HR changes"
                ),
                Err(e) => tracing::warn!(error = %e, "applying due HR changes failed; the next run retries"),
            }
        }
    })
}

/// The monthly reports (`reports::monthly`: the self-inspection report and the analysis of the
/// month before), looked for every ten minutes on the jobs leader and at once when a node
/// becomes it: written at the first run of each month. Does nothing unless
/// `reports.monthly_dir` is set. A failure is logged as an error and tried again at the next run.
pub fn spawn_monthly_report(app: crate::App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if app.config.reports.monthly_dir.is_none() {
            return;
        }
        let mut interval = tokio::time::interval(Duration::from_secs(600));
        loop {
            interval.tick().await;
            match crate::reports::monthly::write_due(&app, app.clock.now()).await {
                Ok(Some(month)) => tracing::info!(%month, "wrote the monthly reports"),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "writing the monthly reports failed; the next run retries")
                }
            }
        }
    })
}

/// Need-based access as days pass: grants past their last day end, requests nobody decided
/// lapse, reviews past their deadline close (unconfirmed grants end), grants due by their
/// role's review interval get a review, and shared IDs past their expiry stop (R1). Every
/// minute, so an ending takes effect within one.
pub fn spawn_access(app: crate::App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(60));
        loop {
            interval.tick().await;
            if let Err(e) = run_access(&app).await {
                tracing::warn!(error = %e, "the access job failed; the next run retries");
            }
        }
    })
}

/// One run of the access job (also what tests call with a clock moved forward).
pub async fn run_access(app: &crate::App) -> Result<(), crate::access::AccessError> {
    let now = app.clock.now();
    let ended = crate::access::grants::end_due(&app.store, now).await?;
    let lapsed = crate::access::requests::lapse_due(&app.store, now).await?;
    let reviewed = crate::access::reviews::run_due(&app.store, &app.config.access, now).await?;
    let shared_ids = crate::directory::shared::end_due(&app.store, now).await?;
    if ended + lapsed + reviewed + shared_ids > 0 {
        tracing::info!(
            grants_ended = ended,
            requests_lapsed = lapsed,
            review_lapses = reviewed,
            shared_ids_ended = shared_ids,
            "access job"
        );
    }
    Ok(())
}
