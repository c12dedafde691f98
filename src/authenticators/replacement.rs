//! A stopped card does not downgrade its holder to the password alone (R13, R14).
//!
//! Stopping someone's card is what a social engineer asks the hotline for before using a
//! stolen password. So a person who held a card and has none active now cannot log in with the
//! password only: after the right password they are asked to enroll a replacement with the
//! enrollment code the counter hands out, and that card completes the login. Where the
//! organisation's policy allows it (`webauthn.password_only_exception_max_days`), someone
//! other than the person who reported the loss may grant an explicit, audited exception for a
//! limited time.

use serde::Serialize;
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::crypto;
use crate::store::Tx;

/// What a person holds in the way of cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardState {
    /// At least one active card.
    Active,
    /// Cards enrolled once, none active now: stopped, lost or revoked.
    Stopped,
    /// Never enrolled one.
    None,
}

pub async fn card_state<'e, E>(executor: E, person_id: &str) -> Result<CardState, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT COUNT(*) AS held, SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END) AS active
         FROM authenticators WHERE person_id = $1",
    )
    .bind(person_id)
    .fetch_one(executor)
    .await?;
    let held: i64 = row.try_get("held")?;
    let active: Option<i64> = row.try_get("active")?;
    Ok(match (held, active.unwrap_or(0)) {
        (0, _) => CardState::None,
        (_, 0) => CardState::Stopped,
        _ => CardState::Active,
    })
}

/// A temporary password-only exception.
#[derive(Debug, Clone, Serialize)]
pub struct Exception {
    pub id: String,
    pub person_id: String,
    pub granted_by: String,
    pub reason: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// The id of the person's exception in force at `now`, if any.
pub async fn live_exception(tx: &mut Tx, person_id: &str, now: UnixTime) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id FROM password_only_exceptions WHERE person_id = $1 AND expires_at > $2 AND revoked_at IS NULL
         ORDER BY expires_at DESC LIMIT 1",
    )
    .bind(person_id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.try_get("id")).transpose()
}

/// Why an exception cannot be granted.
#[derive(Debug, thiserror::Error)]
pub enum ExceptionRefused {
    #[error("the organisation's policy allows no password-only exception (webauthn.password_only_exception_max_days)")]
    NotAllowed,
    #[error("days must be between 1 and {0}")]
    TooLong(i64),
    #[error("this person has no stopped card: there is nothing to make an exception for")]
    NoStoppedCard,
    #[error("whoever reported the card stopped cannot also grant the exception")]
    Reporter,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Grants `person_id` a password-only exception for `days`, unless `actor` stopped the card.
pub async fn grant_exception(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    max_days: i64,
    person_id: &str,
    days: i64,
    reason: &str,
) -> Result<Exception, ExceptionRefused> {
    if max_days < 1 {
        return Err(ExceptionRefused::NotAllowed);
    }
    if !(1..=max_days).contains(&days) {
        return Err(ExceptionRefused::TooLong(max_days));
    }
    if card_state(&mut **tx, person_id).await? != CardState::Stopped {
        return Err(ExceptionRefused::NoStoppedCard);
    }
    // Four eyes: the one who had the card stopped (an operator, or the person themself) is
    // never the one who lets the password alone in.
    let reporters =
        sqlx::query("SELECT DISTINCT revoked_by FROM authenticators WHERE person_id = $1 AND status <> 'active'")
            .bind(person_id)
            .fetch_all(&mut **tx)
            .await?;
    let actor_text = actor.as_text();
    let mut stopped_by = Vec::new();
    for row in reporters {
        stopped_by.extend(row.try_get::<Option<String>, _>("revoked_by")?);
    }
    if actor_text == format!("person:{person_id}") || stopped_by.contains(&actor_text) {
        return Err(ExceptionRefused::Reporter);
    }
    let exception = Exception {
        id: uuid::Uuid::new_v4().to_string(),
        person_id: person_id.to_owned(),
        granted_by: actor_text,
        reason: reason.to_owned(),
        created_at: now,
        expires_at: now + days * 86_400,
    };
    sqlx::query(
        "INSERT INTO password_only_exceptions (id, person_id, granted_by, reason, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&exception.id)
    .bind(person_id)
    .bind(&exception.granted_by)
    .bind(reason)
    .bind(now)
    .bind(exception.expires_at)
    .execute(&mut **tx)
    .await?;
    Event::success(
        actor,
        "authenticator.password_only_exception",
        format!("person:{person_id}"),
        serde_json::json!({"exception": exception.id, "reason": reason, "expires_at": exception.expires_at}),
    )
    .record(tx, now)
    .await?;
    Ok(exception)
}

/// Lifetime of a replacement ticket: long enough to fetch the code from a drawer, not longer.
pub const TICKET_TTL: i64 = 900;

/// A one-time ticket that carries a login with the right password to the replacement card.
pub async fn issue_ticket(
    tx: &mut Tx,
    now: UnixTime,
    person_id: &str,
    authorization_request_id: &str,
) -> Result<String, sqlx::Error> {
    let ticket = crypto::random_token(32);
    sqlx::query(
        "INSERT INTO card_replacement_tickets (id, ticket_hash, person_id, authorization_request_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(crypto::sha256_hex(&ticket))
    .bind(person_id)
    .bind(authorization_request_id)
    .bind(now)
    .bind(now + TICKET_TTL)
    .execute(&mut **tx)
    .await?;
    Ok(ticket)
}

/// A usable ticket: (person id, authorization request id).
pub async fn find_ticket<'e, E>(
    executor: E,
    ticket: &str,
    now: UnixTime,
) -> Result<Option<(String, String)>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT person_id, authorization_request_id FROM card_replacement_tickets
         WHERE ticket_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(crypto::sha256_hex(ticket))
    .bind(now)
    .fetch_optional(executor)
    .await?;
    row.map(|r| Ok((r.try_get("person_id")?, r.try_get("authorization_request_id")?))).transpose()
}

/// Uses the ticket up; false when it was already used or has expired.
pub async fn use_ticket(tx: &mut Tx, ticket: &str, now: UnixTime) -> Result<bool, sqlx::Error> {
    let used = sqlx::query(
        "UPDATE card_replacement_tickets SET used_at = $1 WHERE ticket_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(crypto::sha256_hex(ticket))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(used == 1)
}
