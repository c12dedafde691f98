//! Browser SSO sessions: an opaque cookie whose hash is stored, with idle and absolute
//! timeouts (R15). Ending a session is the revocation module's job.

use sqlx::Row;

use crate::clock::UnixTime;
use crate::config::SessionConfig;
use crate::crypto;
use crate::store::{Store, Tx};

pub const COOKIE_NAME: &str = "sekimori_session";

#[derive(Debug, Clone)]
pub struct Session {
    /// Public session id; the `sid` claim.
    pub id: String,
    pub person_id: String,
    pub account_id: String,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub acr: String,
    /// The card (or other authenticator) the session was opened or stepped up with.
    pub authenticator_id: Option<String>,
}

/// How a person logged in.
pub struct NewSession<'a> {
    pub person_id: &'a str,
    pub account_id: &'a str,
    pub amr: &'a [&'a str],
    pub acr: &'a str,
    /// The card used, if any.
    pub authenticator_id: Option<&'a str>,
    /// Where the login came from (shown to the person in their list of sessions).
    pub source_ip: Option<&'a str>,
}

/// Starts a session; returns it with the cookie value, which is never stored.
pub async fn create(
    tx: &mut Tx,
    config: &SessionConfig,
    now: UnixTime,
    new: NewSession<'_>,
) -> Result<(Session, String), sqlx::Error> {
    let NewSession { person_id, account_id, amr, acr, authenticator_id, source_ip } = new;
    let token = crypto::random_token(32);
    let session = Session {
        id: uuid::Uuid::new_v4().to_string(),
        person_id: person_id.to_owned(),
        account_id: account_id.to_owned(),
        auth_time: now,
        amr: amr.iter().map(|s| s.to_string()).collect(),
        acr: acr.to_owned(),
        authenticator_id: authenticator_id.map(str::to_owned),
    };
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, person_id, account_id, auth_time, amr, acr, created_at,
             last_seen_at, absolute_expires_at, authenticator_id, source_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $5, $5, $8, $9, $10)",
    )
    .bind(&session.id)
    .bind(crypto::sha256_hex(&token))
    .bind(person_id)
    .bind(account_id)
    .bind(now)
    .bind(session.amr.join(" "))
    .bind(acr)
    .bind(now + config.absolute_timeout)
    .bind(authenticator_id)
    .bind(source_ip)
    .execute(&mut **tx)
    .await?;
    Ok((session, token))
}

/// A password session proves possession of a card (step-up): from now on it counts as a card
/// login, and losing that card ends it. The session id (the `sid` consuming systems know) stays.
/// A session is bound to one card only: a step-up with another card (two racing ceremonies)
/// is refused, so that the report of either card finds every session it opened.
pub async fn step_up(
    tx: &mut Tx,
    now: UnixTime,
    session_id: &str,
    authenticator_id: &str,
    amr: &[&str],
    acr: &str,
) -> Result<bool, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE sessions SET authenticator_id = $1, amr = $2, acr = $3, auth_time = $4, last_seen_at = $4
         WHERE id = $5 AND revoked_at IS NULL AND (authenticator_id IS NULL OR authenticator_id = $1)",
    )
    .bind(authenticator_id)
    .bind(amr.join(" "))
    .bind(acr)
    .bind(now)
    .bind(session_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(rows == 1)
}

/// The live session behind a cookie value, if any: not revoked, not idle past the timeout (the
/// shorter one once the session obtained a secret-class role), not past its absolute end. A found session's idle clock is reset.
pub async fn lookup(
    store: &Store,
    config: &SessionConfig,
    now: UnixTime,
    token: &str,
) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, person_id, account_id, auth_time, amr, acr, last_seen_at, authenticator_id FROM sessions
         WHERE token_hash = $1 AND revoked_at IS NULL AND absolute_expires_at > $2
           AND last_seen_at > CASE WHEN secret_roles = 1 THEN $4 ELSE $3 END",
    )
    .bind(crypto::sha256_hex(token))
    .bind(now)
    .bind(now - config.idle_timeout)
    .bind(now - config.secret_role_idle_timeout)
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let session = session_from_row(&row)?;
    let last_seen: i64 = row.try_get("last_seen_at")?;
    // Touch at most once a minute: enough precision for a 30-minute idle timeout, far fewer writes.
    if now - last_seen >= 60 {
        // Through the store's writer, as every write.
        let mut tx = store.begin().await?;
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(now)
            .bind(&session.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(Some(session))
}

/// The id of the unrevoked session behind a cookie value, idle or not: what a new login in the
/// same browser replaces.
pub async fn id_of_cookie<'e, E>(executor: E, token: &str) -> Result<Option<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT id FROM sessions WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(crypto::sha256_hex(token))
        .fetch_optional(executor)
        .await?;
    row.map(|r| r.try_get("id")).transpose()
}

/// Whether the session `id` is still live (used when checking tokens issued from it).
///
/// Tokens outlive browser idleness by design (a consuming system keeps working while the
/// person works in it); only revocation and the session's absolute end stop them.
pub async fn is_live<'e, E>(executor: E, now: UnixTime, id: &str) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!("SELECT 1 AS live FROM sessions s WHERE s.id = $1 AND {}", live_condition("s", "$2"));
    let row = sqlx::query(&sql).bind(id).bind(now).fetch_optional(executor).await?;
    Ok(row.is_some())
}

/// The condition [`is_live`] checks, on the session under `alias` at the time `now` (a column
/// or a parameter): a token check joins the session on it and reads it in its own query.
pub fn live_condition(alias: &str, now: &str) -> String {
    format!("{alias}.revoked_at IS NULL AND {alias}.absolute_expires_at > {now}")
}

/// A person's unended session as they see it in their own list.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: String,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
    pub amr: Vec<String>,
    pub source_ip: Option<String>,
    /// The names of the consuming systems it has signed in to, in the order it did.
    pub systems: Vec<String>,
}

/// The person's sessions that have not ended (not revoked, not past their absolute end),
/// newest first. Idle ones are included: the tokens they gave consuming systems still live
/// until revoked, so the person may want to end them.
pub async fn list_of_person(store: &Store, person_id: &str, now: UnixTime) -> Result<Vec<SessionSummary>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, created_at, last_seen_at, amr, source_ip FROM sessions
         WHERE person_id = $1 AND revoked_at IS NULL AND absolute_expires_at > $2
         ORDER BY created_at DESC, id LIMIT 50",
    )
    .bind(person_id)
    .bind(now)
    .fetch_all(store.pool())
    .await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let systems = systems_of(store, &id).await?;
        let amr: String = row.try_get("amr")?;
        sessions.push(SessionSummary {
            id,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            amr: amr.split_whitespace().map(str::to_owned).collect(),
            source_ip: row.try_get("source_ip")?,
            systems,
        });
    }
    Ok(sessions)
}

/// The person of the unended session `id`, if it is one.
pub async fn person_of<'e, E>(executor: E, id: &str) -> Result<Option<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT person_id FROM sessions WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.map(|r| r.try_get("person_id")).transpose()
}

/// Remembers that `session_id` signed in to `client_id`: its end is then told to that system
/// (back-channel logout), and the person sees the system beside the session on their page.
pub async fn record_sign_in(tx: &mut Tx, now: UnixTime, session_id: &str, client_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO session_clients (session_id, client_id, first_at) VALUES ($1, $2, $3)
         ON CONFLICT (session_id, client_id) DO NOTHING",
    )
    .bind(session_id)
    .bind(client_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The names of the consuming systems session `id` has signed in to, in the order it did.
pub async fn systems_of(store: &Store, id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT c.name FROM session_clients sc JOIN clients c ON c.client_id = sc.client_id
         WHERE sc.session_id = $1 ORDER BY sc.first_at, c.name",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| r.try_get("name"))
    .collect()
}

fn session_from_row(row: &sqlx::any::AnyRow) -> Result<Session, sqlx::Error> {
    let amr: String = row.try_get("amr")?;
    Ok(Session {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        account_id: row.try_get("account_id")?,
        auth_time: row.try_get("auth_time")?,
        amr: amr.split_whitespace().map(str::to_owned).collect(),
        acr: row.try_get("acr")?,
        authenticator_id: row.try_get("authenticator_id")?,
    })
}

/// Holds the session to the shorter idle timeout from now on: it obtained a secret-class role.
pub async fn mark_secret_roles(tx: &mut Tx, session_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET secret_roles = 1 WHERE id = $1 AND secret_roles = 0")
        .bind(session_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
