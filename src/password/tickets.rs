//! One-time tickets for setting a password without knowing the old one (R10, R11): the link
//! the help desk hands out, and the form shown in place of a login whose password has
//! expired. Only a ticket's hash is stored; it works once and expires.

use sqlx::Row;

use crate::audit::Actor;
use crate::clock::UnixTime;
use crate::crypto;
use crate::store::Tx;

/// Why a ticket was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A reset link from the help desk.
    Reset,
    /// The password expired during a login; the login completes after the change.
    Expired,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Reset => "reset",
            Purpose::Expired => "expired",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "reset" => Some(Purpose::Reset),
            "expired" => Some(Purpose::Expired),
            _ => None,
        }
    }

    /// How long a ticket of this purpose lives.
    pub fn ttl(self) -> i64 {
        match self {
            Purpose::Reset => RESET_TICKET_TTL,
            Purpose::Expired => EXPIRED_TICKET_TTL,
        }
    }
}

/// Lifetime of a reset link.
pub const RESET_TICKET_TTL: i64 = 86_400;
/// Lifetime of a ticket to replace an expired password during login.
const EXPIRED_TICKET_TTL: i64 = 600;

/// A usable ticket.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub account_id: String,
    pub purpose: Purpose,
    /// The pending login an expired password interrupted.
    pub request_id: Option<String>,
}

/// Creates a ticket; returns it (shown once).
pub async fn issue(
    tx: &mut Tx,
    now: UnixTime,
    account_id: &str,
    purpose: Purpose,
    request_id: Option<&str>,
    actor: &Actor,
) -> Result<String, sqlx::Error> {
    let ticket = crypto::random_token(32);
    sqlx::query(
        "INSERT INTO password_tickets (id, ticket_hash, account_id, purpose, authorization_request_id, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(crypto::sha256_hex(&ticket))
    .bind(account_id)
    .bind(purpose.as_str())
    .bind(request_id)
    .bind(actor.as_text())
    .bind(now)
    .bind(now + purpose.ttl())
    .execute(&mut **tx)
    .await?;
    Ok(ticket)
}

/// The ticket, if it is unused and has not expired at `now`.
pub async fn find<'e, E>(executor: E, ticket: &str, now: UnixTime) -> Result<Option<Ticket>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT account_id, purpose, authorization_request_id FROM password_tickets
         WHERE ticket_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(crypto::sha256_hex(ticket))
    .bind(now)
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let purpose: String = row.try_get("purpose")?;
    let Some(purpose) = Purpose::parse(&purpose) else { return Ok(None) };
    Ok(Some(Ticket {
        account_id: row.try_get("account_id")?,
        purpose,
        request_id: row.try_get("authorization_request_id")?,
    }))
}

/// Uses the ticket up; false when another use got there first or it has expired.
pub async fn use_up(tx: &mut Tx, ticket: &str, now: UnixTime) -> Result<bool, sqlx::Error> {
    let used = sqlx::query(
        "UPDATE password_tickets SET used_at = $1 WHERE ticket_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(crypto::sha256_hex(ticket))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(used == 1)
}
