//! R17: the emergency stop of one person or one consuming system, and the alert to the security
//! managers when abnormal access continues ([`alerts`]).
//!
//! A stop takes effect at once: it ends, through `crate::revocation` (THE one revocation path),
//! every session and token of the person — with the back-channel logout notices that owes — or
//! every token of the system; and from then on every check that asks whether a person may log
//! in (`directory`) or whether a system is active (`systems`) reads the stop in the same query,
//! from the database, so that a stop made on one node (or from the CLI) holds on every node at
//! the next request. The target's own state (an account's or a system's status) is never
//! touched: lifting the stop gives back exactly what was there, a system disabled before the
//! stop stays disabled after it. Tokens ended by the stop stay ended.

pub mod alerts;

use serde::Serialize;
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::directory::LoginId;
use crate::invalid::InvalidField;
use crate::revocation::{self, Revoked, Target};
use crate::store::Tx;

pub use crate::stops::{is_stopped, Kind};

/// One stop, in force while `lifted_at` is `None`.
#[derive(Debug, Clone, Serialize)]
pub struct Stop {
    pub id: String,
    pub kind: Kind,
    /// The person's id, or the system's client_id.
    pub target: String,
    /// What an operator recognises: the person's login ID, or the system's name.
    pub target_label: Option<String>,
    pub reason: String,
    /// Who stopped it, in the audit log's actor form.
    pub stopped_by: String,
    pub stopped_at: UnixTime,
    pub lifted_by: Option<String>,
    pub lifted_at: Option<UnixTime>,
    pub lift_reason: Option<String>,
}

impl Stop {
    pub fn in_force(&self) -> bool {
        self.lifted_at.is_none()
    }
}

/// Why a stop or a lift did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EmergencyError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// `person`, `client` or `emergency stop`.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Already stopped, or already lifted.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}



/// The reason of a stop or a lift: said, and not a novel (the audit log keeps it).
fn check_reason(reason: &str) -> Result<String, InvalidField> {
    crate::access::requests::check_reason(reason)
}

/// The id of the target `given`: for a person their id or their login ID, for a system its
/// client_id.
async fn resolve(tx: &mut Tx, kind: Kind, given: &str) -> Result<String, EmergencyError> {
    let given = given.trim();
    // Longer than any id or login ID: not worth a query.
    if given.is_empty() || given.len() > 128 {
        return Err(EmergencyError::NotFound(not_found_name(kind)));
    }
    let found = match kind {
        Kind::System => sqlx::query("SELECT client_id AS id FROM clients WHERE client_id = $1")
            .bind(given)
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| row.try_get::<String, _>("id"))
            .transpose()?,
        Kind::Person => {
            let by_id = sqlx::query("SELECT id FROM people WHERE id = $1")
                .bind(given)
                .fetch_optional(&mut **tx)
                .await?
                .map(|row| row.try_get::<String, _>("id"))
                .transpose()?;
            match (by_id, LoginId::parse(given)) {
                (Some(id), _) => Some(id),
                (None, Ok(login_id)) => sqlx::query("SELECT person_id AS id FROM accounts WHERE login_id = $1")
                    .bind(login_id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?
                    .map(|row| row.try_get::<String, _>("id"))
                    .transpose()?,
                (None, Err(_)) => None,
            }
        }
    };
    found.ok_or(EmergencyError::NotFound(not_found_name(kind)))
}

fn not_found_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Person => "person",
        Kind::System => "client",
    }
}

/// The audit log's name of a target.
fn audit_target(kind: Kind, id: &str) -> String {
    match kind {
        Kind::Person => format!("person:{id}"),
        Kind::System => format!("client:{id}"),
    }
}

fn revocation_target(kind: Kind, id: &str) -> Target<'_> {
    match kind {
        Kind::Person => Target::Person(id),
        Kind::System => Target::Client(id),
    }
}

/// Stops the person or system `target` (a person's id or login ID, or a client_id) now: the
/// stop is recorded and audited with its reason, and everything the target holds ends. Returns
/// the stop and what ended.
pub async fn stop(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    kind: Kind,
    target: &str,
    reason: &str,
) -> Result<(Stop, Revoked), EmergencyError> {
    let reason = check_reason(reason)?;
    let target_id = resolve(tx, kind, target).await?;
    if let Some(existing) = in_force(tx, kind, &target_id).await? {
        return Err(EmergencyError::Conflict(format!(
            "{} {target_id} is already stopped (emergency stop {})",
            kind.as_str(),
            existing
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let inserted = sqlx::query(
        "INSERT INTO emergency_stops (id, kind, target_id, reason, stopped_by, stopped_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(kind.as_str())
    .bind(&target_id)
    .bind(&reason)
    .bind(actor.as_text())
    .bind(now)
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => {}
        // Two stops of one target at once: the second meets the first's row.
        Err(e) if crate::store::is_unique_violation(&e) => {
            return Err(EmergencyError::Conflict(format!("{} {target_id} is already stopped", kind.as_str())))
        }
        Err(e) => return Err(e.into()),
    }
    Event::success(
        actor,
        "emergency.stop",
        audit_target(kind, &target_id),
        serde_json::json!({"stop_id": id, "kind": kind.as_str(), "reason": reason}),
    )
    .record(tx, now)
    .await?;
    let revoked = revocation::revoke(tx, actor, now, revocation_target(kind, &target_id), "emergency stop").await?;
    let stop = get(&mut **tx, &id).await?.ok_or(EmergencyError::NotFound("emergency stop"))?;
    Ok((stop, revoked))
}

/// Lifts the stop `id`: the target is as it was before the stop (an account or a system that
/// was disabled then still is), and what the stop ended stays ended.
pub async fn lift(tx: &mut Tx, actor: &Actor, now: UnixTime, id: &str, reason: &str) -> Result<Stop, EmergencyError> {
    let reason = check_reason(reason)?;
    // The update is the claim: of two lifts racing, the second finds the stop lifted.
    let lifted = sqlx::query(
        "UPDATE emergency_stops SET lifted_by = $1, lifted_at = $2, lift_reason = $3 WHERE id = $4 AND lifted_at IS NULL",
    )
    .bind(actor.as_text())
    .bind(now)
    .bind(&reason)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let stop = get(&mut **tx, id).await?.ok_or(EmergencyError::NotFound("emergency stop"))?;
    if lifted == 0 {
        return Err(EmergencyError::Conflict(format!("emergency stop {id} has already been lifted")));
    }
    // A login or token request that passed its check just before the stop committed may have
    // written a session or token after the stop's revocation: nothing can be issued while the
    // stop holds, so ending the target's sessions and tokens once more catches exactly those.
    revocation::revoke(
        tx,
        actor,
        now,
        revocation_target(stop.kind, &stop.target),
        "issued while under an emergency stop",
    )
    .await?;
    Event::success(
        actor,
        "emergency.lift",
        audit_target(stop.kind, &stop.target),
        serde_json::json!({"stop_id": id, "kind": stop.kind.as_str(), "reason": reason, "stopped_at": stop.stopped_at}),
    )
    .record(tx, now)
    .await?;
    Ok(stop)
}

/// The id of the stop in force on the target, if there is one.
async fn in_force(tx: &mut Tx, kind: Kind, target_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT id FROM emergency_stops WHERE kind = $1 AND target_id = $2 AND lifted_at IS NULL")
        .bind(kind.as_str())
        .bind(target_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()
}

const STOP_SELECT: &str = "SELECT s.id, s.kind, s.target_id, s.reason, s.stopped_by, s.stopped_at, s.lifted_by,
         s.lifted_at, s.lift_reason,
         CASE WHEN s.kind = 'person' THEN (SELECT MIN(a.login_id) FROM accounts a WHERE a.person_id = s.target_id)
              ELSE (SELECT c.name FROM clients c WHERE c.client_id = s.target_id) END AS target_label
     FROM emergency_stops s";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Stop, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(Stop {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Person),
        target: row.try_get("target_id")?,
        target_label: row.try_get("target_label")?,
        reason: row.try_get("reason")?,
        stopped_by: row.try_get("stopped_by")?,
        stopped_at: row.try_get("stopped_at")?,
        lifted_by: row.try_get("lifted_by")?,
        lifted_at: row.try_get("lifted_at")?,
        lift_reason: row.try_get("lift_reason")?,
    })
}

pub async fn get<'e, E>(executor: E, id: &str) -> Result<Option<Stop>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("{STOP_SELECT} WHERE s.id = $1")).bind(id).fetch_optional(executor).await?;
    row.as_ref().map(from_row).transpose()
}

/// Stops, newest first (at most 1000): only those in force when `in_force_only`.
pub async fn list<'e, E>(executor: E, in_force_only: bool) -> Result<Vec<Stop>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let filter = if in_force_only { "WHERE s.lifted_at IS NULL" } else { "" };
    let rows = sqlx::query(&format!("{STOP_SELECT} {filter} ORDER BY s.stopped_at DESC, s.id LIMIT 1000"))
        .fetch_all(executor)
        .await?;
    rows.iter().map(from_row).collect()
}
