//! R1: shared IDs only as exceptions. A login ID used by a section (課・係単位) exists only under
//! an exception record: the section, the person responsible for it, a written justification, an
//! approver who is not that person, and an expiry date; at expiry (or when ended early) the
//! account stops — it is disabled and its sessions and tokens end through the revocation path.
//!
//! The shared ID is an ordinary account of its own directory entry, so "one account per person"
//! stays a database constraint for everyone: the record adds nothing to `accounts` or
//! `people`, and the owner and approver keep their own single accounts. An account held by the
//! owner or the approver themselves can never be declared shared.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::revocation::{self, Target};
use crate::store::{Store, Tx};

use super::types::{format_date, parse_date};
use super::{today_in_japan, DirectoryError, InvalidField, LoginId};

/// The longest an exception runs before it must be approved again.
pub const MAX_DAYS: i64 = 366;

/// A shared ID as an administrator asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSharedId {
    pub login_id: String,
    pub org_unit_id: String,
    pub owner_person_id: String,
    pub justification: String,
    pub approver_person_id: String,
    /// The last day it may be used (Japan date, `YYYY-MM-DD`).
    pub expires_on: String,
}

/// One exception record, in force while `ended_at` is `None`.
#[derive(Debug, Clone, Serialize)]
pub struct SharedId {
    pub id: String,
    pub login_id: String,
    pub person_id: String,
    pub org_unit_id: String,
    pub owner_person_id: String,
    pub justification: String,
    pub approver_person_id: String,
    pub expires_on: String,
    pub created_by: String,
    pub created_at: UnixTime,
    pub ended_at: Option<UnixTime>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
}

fn invalid(field: &'static str, reason: &str) -> DirectoryError {
    DirectoryError::Invalid(InvalidField { field, reason: reason.into() })
}

async fn exists(tx: &mut Tx, sql: &str, id: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?.is_some())
}

/// Records the exception for an existing account's login ID.
pub async fn create(tx: &mut Tx, actor: &Actor, now: UnixTime, new: NewSharedId) -> Result<SharedId, DirectoryError> {
    let login_id = LoginId::parse(&new.login_id)?;
    let justification = crate::invalid::check_reason(&new.justification)
        .map_err(|_| invalid("justification", "must be 1 to 1000 characters"))?;
    let today = today_in_japan(now);
    let expires = parse_date("expires_on", &new.expires_on)?;
    let days = (expires - today).whole_days();
    if !(0..=MAX_DAYS).contains(&days) {
        return Err(invalid("expires_on", "must be today or later, within 366 days"));
    }
    let account = sqlx::query("SELECT id, person_id, status FROM accounts WHERE login_id = $1")
        .bind(login_id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| invalid("login_id", "no account has this login ID"))?;
    let person_id: String = account.try_get("person_id")?;
    if !exists(tx, "SELECT id FROM org_units WHERE id = $1", &new.org_unit_id).await? {
        return Err(invalid("org_unit_id", "no org unit has this id"));
    }
    let in_service = "SELECT id FROM people WHERE id = $1 AND status = 'active'";
    if !exists(tx, in_service, &new.owner_person_id).await? {
        return Err(invalid("owner_person_id", "must be a person in service"));
    }
    if !exists(tx, in_service, &new.approver_person_id).await? {
        return Err(invalid("approver_person_id", "must be a person in service"));
    }
    if new.approver_person_id == new.owner_person_id {
        return Err(invalid("approver_person_id", "the approver must not be the person responsible"));
    }
    if person_id == new.owner_person_id || person_id == new.approver_person_id {
        return Err(invalid("login_id", "a person's own account is not a shared ID"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let inserted = sqlx::query(
        "INSERT INTO shared_ids (id, login_id, person_id, org_unit_id, owner_person_id, justification,
                                 approver_person_id, expires_on, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(login_id.as_str())
    .bind(&person_id)
    .bind(&new.org_unit_id)
    .bind(&new.owner_person_id)
    .bind(&justification)
    .bind(&new.approver_person_id)
    .bind(format_date(expires))
    .bind(actor.as_text())
    .bind(now)
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if crate::store::is_unique_violation(&e) => {
            return Err(DirectoryError::Conflict("this login ID already has a shared-ID record in force"))
        }
        Err(e) => return Err(e.into()),
    }
    Event::success(
        actor,
        "shared_id.create",
        format!("person:{person_id}"),
        serde_json::json!({"shared_id": id, "login_id": login_id.as_str(), "org_unit_id": new.org_unit_id,
                           "owner": new.owner_person_id, "approver": new.approver_person_id,
                           "justification": justification, "expires_on": format_date(expires)}),
    )
    .record(tx, now)
    .await?;
    get(&mut **tx, &id).await?.ok_or(DirectoryError::NotFound("shared ID"))
}

/// Ends the record `id` now: the shared account is disabled and its sessions and tokens end.
pub async fn end(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    id: &str,
    reason: &str,
) -> Result<SharedId, DirectoryError> {
    let reason = crate::invalid::check_reason(reason)?;
    // The update is the claim: of two endings racing, the second ends nothing.
    let ended = sqlx::query(
        "UPDATE shared_ids SET ended_at = $1, ended_by = $2, end_reason = $3 WHERE id = $4 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(actor.as_text())
    .bind(&reason)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let record = get(&mut **tx, id).await?.ok_or(DirectoryError::NotFound("shared ID"))?;
    if ended == 0 {
        return Err(DirectoryError::Conflict("the shared-ID record has already ended"));
    }
    let disabled = super::updates::disable_account(tx, &record.person_id).await?;
    Event::success(
        actor,
        "shared_id.end",
        format!("person:{}", record.person_id),
        serde_json::json!({"shared_id": id, "login_id": record.login_id, "reason": reason, "account_disabled": disabled}),
    )
    .record(tx, now)
    .await?;
    revocation::revoke(tx, actor, now, Target::Person(&record.person_id), "shared ID ended").await?;
    Ok(record)
}

/// Ends every record past its expiry date (the job); returns how many.
pub async fn end_due(store: &Store, now: UnixTime) -> Result<u64, DirectoryError> {
    let today = format_date(today_in_japan(now));
    let rows = sqlx::query("SELECT id FROM shared_ids WHERE ended_at IS NULL AND expires_on < $1 LIMIT 500")
        .bind(today)
        .fetch_all(store.pool())
        .await?;
    let mut ended = 0;
    let ids: Vec<String> = rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
    for id in ids {
        let mut tx = store.begin().await?;
        match end(&mut tx, &Actor::System, now, &id, "expired").await {
            Ok(_) => ended += 1,
            // Ended meanwhile by an administrator.
            Err(DirectoryError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
        tx.commit().await?;
    }
    Ok(ended)
}

const SELECT: &str = "SELECT id, login_id, person_id, org_unit_id, owner_person_id, justification, approver_person_id,
     expires_on, created_by, created_at, ended_at, ended_by, end_reason FROM shared_ids";

fn from_row(row: &sqlx::any::AnyRow) -> Result<SharedId, sqlx::Error> {
    Ok(SharedId {
        id: row.try_get("id")?,
        login_id: row.try_get("login_id")?,
        person_id: row.try_get("person_id")?,
        org_unit_id: row.try_get("org_unit_id")?,
        owner_person_id: row.try_get("owner_person_id")?,
        justification: row.try_get("justification")?,
        approver_person_id: row.try_get("approver_person_id")?,
        expires_on: row.try_get("expires_on")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        ended_at: row.try_get("ended_at")?,
        ended_by: row.try_get("ended_by")?,
        end_reason: row.try_get("end_reason")?,
    })
}

pub async fn get<'e, E>(executor: E, id: &str) -> Result<Option<SharedId>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1")).bind(id).fetch_optional(executor).await?;
    row.as_ref().map(from_row).transpose()
}

/// Every record, newest first (at most 1000), ended ones included: what the compliance report
/// lists.
pub async fn list<'e, E>(executor: E) -> Result<Vec<SharedId>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!("{SELECT} ORDER BY created_at DESC, id LIMIT 1000")).fetch_all(executor).await?;
    rows.iter().map(from_row).collect()
}
