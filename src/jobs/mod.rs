//! Background work. For now one sweeper: rows that only matter until they expire (pending
//! logins, throttling windows, used or expired codes and tickets) are deleted, so those
//! tables stay small however many logins a deployment sees. Later: effective-dated HR events
//! and the back-channel logout outbox.

use std::time::Duration;

use crate::clock::UnixTime;
use crate::store::Store;

/// How long used or expired codes are kept after they stop working (for replay detection).
pub const CODE_RETENTION: i64 = 86_400;

/// Deletes what has expired; returns how many rows went.
pub async fn sweep(store: &Store, now: UnixTime, source_window: i64) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    let statements: [(&str, i64); 5] = [
        ("DELETE FROM authorization_requests WHERE expires_at < $1", now),
        ("DELETE FROM login_source_failures WHERE window_start < $1", now - source_window),
        ("DELETE FROM password_tickets WHERE expires_at < $1", now),
        // An access token's row serves live-state checks until it expires; a day later it goes.
        ("DELETE FROM access_tokens WHERE expires_at < $1", now - CODE_RETENTION),
        // A code outlives its use by a day, so a late replay is still recognised and revokes
        // what it issued; access tokens refer to it, so only codes with no live token go.
        (
            "DELETE FROM auth_codes WHERE expires_at < $1
             AND NOT EXISTS (SELECT 1 FROM access_tokens t WHERE t.code_id = auth_codes.id)",
            now - CODE_RETENTION,
        ),
    ];
    for (sql, cutoff) in statements {
        removed += sqlx::query(sql).bind(cutoff).execute(store.pool()).await?.rows_affected();
    }
    Ok(removed)
}

/// Runs [`sweep`] every few minutes until the process ends.
pub fn spawn_sweeper(app: crate::App) {
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
    });
}
