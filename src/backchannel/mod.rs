//! OpenID Back-Channel Logout 1.0, sent from an outbox.
//!
//! When a session ends, the revocation module writes one notice per consuming system the
//! session signed in to, in the same transaction (the outbox, `logout_notices`). A background worker
//! ([`spawn_worker`]) delivers them: it claims due notices with a lease (so two nodes do not
//! send the same one), signs a fresh logout token for each, POSTs it, and on failure tries
//! again later with exponential backoff. A notice therefore survives a restart of Sekimori or
//! a consuming system that is down; after [`GIVE_UP_AFTER`] it is abandoned and audited.

use std::time::Duration;

use serde_json::json;
use sqlx::Row;

use crate::audit::{self, Actor, Event, Outcome};
use crate::clock::UnixTime;
use crate::systems::{self, Client};
use crate::App;

/// OpenID Back-Channel Logout §2.4: the event member of a logout token.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token is valid this long; each attempt signs a new one.
pub const LOGOUT_TOKEN_TTL: i64 = 120;
/// A notice still undelivered this long after the session ended is abandoned.
pub const GIVE_UP_AFTER: i64 = 24 * 3600;
/// How long a claimed notice is reserved for the node delivering it.
const LEASE: i64 = 30;
/// Longest wait between two attempts.
const MAX_BACKOFF: i64 = 3600;
const BATCH: i64 = 32;

/// The logout token (OpenID Back-Channel Logout §2.4): sub and sid, the event, no nonce,
/// `typ: logout+jwt` (§2.4, as RFC 8725 §3.11 recommends), signed like the client's ID tokens.
pub fn logout_token(app: &App, client: &Client, person_id: &str, session_id: &str) -> Result<String, crate::Error> {
    let now = app.clock.now();
    let claims = json!({
        "iss": app.config.issuer,
        "aud": client.client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL,
        "jti": crate::crypto::random_token(16),
        "sub": person_id,
        "sid": session_id,
        "events": { LOGOUT_EVENT: {} },
    });
    Ok(app.keys.sign(client.id_token_signed_response_alg, "logout+jwt", &claims)?)
}

/// Seconds to wait after the `attempts`-th failure: 5, 10, 20 … up to an hour.
pub fn backoff(attempts: i64) -> i64 {
    let exponent = attempts.clamp(1, 20) - 1;
    (5_i64 << exponent).min(MAX_BACKOFF)
}

struct Due {
    id: String,
    client_id: String,
    person_id: String,
    session_id: String,
    created_at: UnixTime,
    attempts: i64,
}

enum Attempt {
    Delivered,
    Failed(String),
    /// The client is gone or no longer takes notices.
    Pointless(String),
}

/// Delivers every notice that is due; returns how many were delivered.
pub async fn deliver_due(app: &App, http: &reqwest::Client) -> Result<u64, crate::Error> {
    let now = app.clock.now();
    let rows = sqlx::query(
        "SELECT id, client_id, person_id, session_id, created_at, attempts, next_attempt_at FROM logout_notices
         WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= $1
         ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(app.store.pool())
    .await?;
    let mut claimed = Vec::new();
    for row in rows {
        let due_at: i64 = row.try_get("next_attempt_at")?;
        let id: String = row.try_get("id")?;
        // The claim: only the node whose UPDATE still sees the old due time goes on.
        let mut tx = app.store.begin().await?;
        let won = sqlx::query(
            "UPDATE logout_notices SET next_attempt_at = $1 WHERE id = $2 AND next_attempt_at = $3
             AND delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .bind(now + LEASE)
        .bind(&id)
        .bind(due_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if won == 1 {
            claimed.push(Due {
                id,
                client_id: row.try_get("client_id")?,
                person_id: row.try_get("person_id")?,
                session_id: row.try_get("session_id")?,
                created_at: row.try_get("created_at")?,
                attempts: row.try_get("attempts")?,
            });
        }
    }
    let attempts = claimed.iter().map(|due| attempt(app, http, due));
    let results = futures_util::future::join_all(attempts).await;
    let mut delivered = 0;
    for (due, result) in claimed.iter().zip(results) {
        if matches!(result, Attempt::Delivered) {
            delivered += 1;
        }
        settle(app, due, result).await?;
    }
    Ok(delivered)
}

async fn attempt(app: &App, http: &reqwest::Client, due: &Due) -> Attempt {
    let client = match systems::get(&app.store, &due.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return Attempt::Pointless("the client no longer exists".into()),
        Err(e) => return Attempt::Failed(format!("loading the client failed: {e}")),
    };
    // Notices queued before the system was disabled are not owed any more.
    if !client.is_active() {
        return Attempt::Pointless("the client is disabled".into());
    }
    let Some(uri) = client.backchannel_logout_uri.clone() else {
        return Attempt::Pointless("the client no longer has a back-channel logout URI".into());
    };
    let token = match logout_token(app, &client, &due.person_id, &due.session_id) {
        Ok(token) => token,
        Err(e) => return Attempt::Failed(format!("signing failed: {e}")),
    };
    let body = form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", &token).finish();
    let sent = http
        .post(&uri)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    match sent {
        // §2.8: 200 on success; 204 is what many frameworks answer and means the same.
        Ok(response) if response.status().is_success() => Attempt::Delivered,
        Ok(response) => Attempt::Failed(format!("the client answered {}", response.status())),
        Err(e) => Attempt::Failed(format!("could not reach the client: {}", without_url(&e))),
    }
}

/// reqwest's message names the URL; the URL is in the audit target already.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

async fn settle(app: &App, due: &Due, result: Attempt) -> Result<(), crate::Error> {
    let now = app.clock.now();
    let attempts = due.attempts + 1;
    let mut tx = app.store.begin().await?;
    let (action, outcome, detail) = match result {
        Attempt::Delivered => {
            sqlx::query("UPDATE logout_notices SET delivered_at = $1, attempts = $2, last_error = NULL WHERE id = $3")
                .bind(now)
                .bind(attempts)
                .bind(&due.id)
                .execute(&mut *tx)
                .await?;
            ("backchannel_logout.delivered", Outcome::Success, json!({"attempts": attempts}))
        }
        Attempt::Failed(error) if now - due.created_at < GIVE_UP_AFTER => {
            let next = now + backoff(attempts);
            sqlx::query("UPDATE logout_notices SET attempts = $1, last_error = $2, next_attempt_at = $3 WHERE id = $4")
                .bind(attempts)
                .bind(&error)
                .bind(next)
                .bind(&due.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(client_id = %due.client_id, attempts, error = %error, "back-channel logout not delivered; will retry");
            return Ok(());
        }
        Attempt::Failed(error) | Attempt::Pointless(error) => {
            sqlx::query("UPDATE logout_notices SET attempts = $1, last_error = $2, abandoned_at = $3 WHERE id = $4")
                .bind(attempts)
                .bind(&error)
                .bind(now)
                .bind(&due.id)
                .execute(&mut *tx)
                .await?;
            tracing::warn!(client_id = %due.client_id, attempts, error = %error, "back-channel logout abandoned");
            ("backchannel_logout.abandoned", Outcome::Failure, json!({"attempts": attempts, "error": error}))
        }
    };
    audit::record(
        &mut tx,
        now,
        Event {
            actor: &Actor::System,
            action,
            target: format!("client:{}", due.client_id),
            outcome,
            detail: json!({"session": due.session_id, "person": due.person_id, "result": detail}),
            source_ip: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The HTTP client notices go out with: short timeouts, and no redirects (a redirect would
/// send the token somewhere that was not registered).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Sekimori back-channel logout")
        .build()
}

/// Delivers due notices every second until the process ends.
pub fn spawn_worker(app: App) {
    tokio::spawn(async move {
        let http = match http_client() {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the back-channel logout HTTP client; notices stay queued");
                return;
            }
        };
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = deliver_due(&app, &http).await {
                tracing::warn!(error = %e, "delivering back-channel logout notices failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), 5);
        assert_eq!(backoff(2), 10);
        assert_eq!(backoff(5), 80);
        assert_eq!(backoff(11), 3600);
        assert_eq!(backoff(1000), 3600);
    }
}
