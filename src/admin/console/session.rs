//! Console sessions: opened by a card login through Sekimori's own authorization endpoint
//! (`super::login`), bound to the browser session that login made. A console session ends at
//! its idle timeout (the secret-class one, R15), at its absolute end, at logout, and whenever
//! the browser session behind it ends — card reported lost, emergency stop, retirement — since
//! every request checks that session. The rights are not kept in the session: they are read
//! from the person's administrative roles at every request.

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::crypto;
use crate::directory;
use crate::sessions;
use crate::store::Tx;
use crate::App;

use super::super::auth::{Caller, Principal};
use super::super::problem::Problem;
use super::super::roles::{self, AdminRole};

/// The console session cookie. SameSite=Lax: the login comes back from the issuer's origin as a
/// top-level navigation; every change is a POST carrying the session's CSRF token.
pub const COOKIE: &str = "sekimori_console";
/// The header a script calling the JSON API with the console cookie sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-sekimori-csrf";

/// A live console session.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub id: String,
    pub person_id: String,
    /// The browser session (public listener) the card login made.
    pub session_id: String,
    pub csrf_token: String,
    pub expires_at: UnixTime,
}

/// Opens a console session for `person_id`, returning the cookie value (shown only now).
pub async fn open(
    tx: &mut Tx,
    now: UnixTime,
    person_id: &str,
    session_id: &str,
    lifetime: i64,
) -> Result<(String, ConsoleSession), sqlx::Error> {
    let token = crypto::random_token(32);
    let session = ConsoleSession {
        id: uuid::Uuid::new_v4().to_string(),
        person_id: person_id.to_owned(),
        session_id: session_id.to_owned(),
        csrf_token: crypto::random_token(24),
        expires_at: now + lifetime,
    };
    sqlx::query(
        "INSERT INTO console_sessions (id, token_hash, person_id, session_id, csrf_token, created_at, last_seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(&session.id)
    .bind(crypto::sha256_hex(&token))
    .bind(person_id)
    .bind(session_id)
    .bind(&session.csrf_token)
    .bind(now)
    .bind(session.expires_at)
    .execute(&mut **tx)
    .await?;
    Event::success(
        &Actor::Person(person_id.to_owned()),
        "console.login",
        format!("person:{person_id}"),
        serde_json::json!({"console_session": session.id, "session": session_id}),
    )
    .record(tx, now)
    .await?;
    Ok((token, session))
}

/// The live console session of a cookie value, marking it used now; None when there is none,
/// it is idle past the timeout, past its end, or its browser session has ended.
pub async fn lookup(app: &App, token: &str) -> Result<Option<ConsoleSession>, sqlx::Error> {
    let now = app.clock.now();
    let idle_since = now - app.config.session.secret_role_idle_timeout;
    let row = sqlx::query(
        "SELECT id, person_id, session_id, csrf_token, expires_at FROM console_sessions
         WHERE token_hash = $1 AND ended_at IS NULL AND expires_at > $2 AND last_seen_at > $3",
    )
    .bind(crypto::sha256_hex(token))
    .bind(now)
    .bind(idle_since)
    .fetch_optional(app.store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let session = ConsoleSession {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        session_id: row.try_get("session_id")?,
        csrf_token: row.try_get("csrf_token")?,
        expires_at: row.try_get("expires_at")?,
    };
    if !sessions::is_live(app.store.pool(), now, &session.session_id).await? {
        return Ok(None);
    }
    sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&session.id)
        .execute(app.store.pool())
        .await?;
    Ok(Some(session))
}

/// Ends a console session (logout). The browser session stays: logging out of the console is
/// not logging out of the consuming systems.
pub async fn end(tx: &mut Tx, now: UnixTime, session: &ConsoleSession) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE console_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
        .bind(now)
        .bind(&session.id)
        .execute(&mut **tx)
        .await?;
    Event::success(
        &Actor::Person(session.person_id.clone()),
        "console.logout",
        format!("person:{}", session.person_id),
        serde_json::json!({"console_session": session.id}),
    )
    .record(tx, now)
    .await
}

/// The person of a console session with the rights their administrative roles give today;
/// None when they may no longer log in or hold no administrative role any more.
pub async fn principal(app: &App, session: &ConsoleSession) -> Result<Option<(Principal, Vec<AdminRole>)>, Problem> {
    let today = directory::today_in_japan(app.clock.now());
    let pool = app.store.pool();
    if !directory::person_may_log_in(pool, &session.person_id, today).await.map_err(Problem::from)? {
        return Ok(None);
    }
    let held = roles::held_by(pool, &session.person_id, today).await?;
    if held.is_empty() {
        return Ok(None);
    }
    let principal = Principal {
        who: Caller::Console {
            session_id: session.id.clone(),
            person_id: session.person_id.clone(),
            csrf_token: session.csrf_token.clone(),
        },
        rights: roles::rights_of(&held),
        expires_at: session.expires_at,
    };
    Ok(Some((principal, held)))
}

/// The console cookie's value in a request, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    super::cookie_named(headers, COOKIE)
}

/// The JSON API called from a console page with the console cookie: a change (anything but
/// GET and HEAD) must carry the session's CSRF token in `X-Sekimori-CSRF`.
pub async fn principal_for_api(parts: &Parts, app: &App) -> Result<Principal, Problem> {
    let token = cookie_value(&parts.headers).ok_or_else(Problem::unauthorized)?;
    let session = lookup(app, &token).await?.ok_or_else(Problem::unauthorized)?;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !crypto::ct_eq(sent.as_bytes(), session.csrf_token.as_bytes()) {
            return Err(Problem::new(
                axum::http::StatusCode::FORBIDDEN,
                "Forbidden",
                "a change made with the console session must carry its CSRF token".to_owned(),
            ));
        }
    }
    let (principal, _) = principal(app, &session).await?.ok_or_else(Problem::unauthorized)?;
    Ok(principal)
}
