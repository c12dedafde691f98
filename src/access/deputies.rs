//! Designated deputies (代理): while a manager is away, the person they name decides for
//! their unit — approvals, direct grants and reviews — on the days given, and not after.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{org, AccessError};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::directory::types::{format_date, parse_date};
use crate::directory::{self, today_in_japan};
use crate::invalid::InvalidField;
use crate::store::Tx;

/// The longest a designation may run: a deputy stands in, they do not take over.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDeputy {
    pub org_unit_id: String,
    pub deputy_person_id: String,
    pub valid_from: String,
    pub valid_until: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deputy {
    pub id: String,
    pub org_unit_id: String,
    pub deputy_person_id: String,
    pub valid_from: String,
    pub valid_until: String,
    pub created_by: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Who may name a deputy for a unit: an administrator (`by_manager` None) or the unit's own
/// manager (`by_manager` Some, checked here).
pub async fn designate(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    by_manager: Option<&str>,
    new: NewDeputy,
) -> Result<Deputy, AccessError> {
    let from = parse_date("valid_from", &new.valid_from)?;
    let until = parse_date("valid_until", &new.valid_until)?;
    if until < from {
        return Err(InvalidField { field: "valid_until", reason: "must not be before valid_from".into() }.into());
    }
    if until < today_in_japan(now) {
        return Err(InvalidField { field: "valid_until", reason: "must not be in the past".into() }.into());
    }
    if (until - from).whole_days() >= MAX_DAYS {
        return Err(InvalidField {
            field: "valid_until",
            reason: format!("a designation runs at most {MAX_DAYS} days"),
        }
        .into());
    }
    let unit = directory::get_org_unit(&mut **tx, &new.org_unit_id).await?.ok_or(AccessError::NotFound("org unit"))?;
    if let Some(manager) = by_manager {
        if unit.manager_person_id.as_deref() != Some(manager) {
            return Err(AccessError::Forbidden("only the unit's manager names its deputy"));
        }
    }
    if unit.manager_person_id.as_deref() == Some(new.deputy_person_id.as_str()) {
        return Err(
            InvalidField { field: "deputy_person_id", reason: "the manager is not their own deputy".into() }.into()
        );
    }
    let deputy =
        directory::get_person(&mut **tx, &new.deputy_person_id).await?.ok_or(AccessError::NotFound("person"))?;
    if deputy.status != crate::directory::PersonStatus::Active {
        return Err(AccessError::Conflict("the deputy is not in service".into()));
    }
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO deputies (id, org_unit_id, deputy_person_id, valid_from, valid_until, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&unit.id)
    .bind(&deputy.id)
    .bind(format_date(from))
    .bind(format_date(until))
    .bind(actor.as_text())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Event::success(
        actor,
        "access.deputy_designated",
        format!("org_unit:{}", unit.id),
        serde_json::json!({"deputy_id": id, "deputy_person_id": deputy.id, "valid_from": format_date(from), "valid_until": format_date(until)}),
    )
    .record(tx, now)
    .await?;
    get(tx, &id).await?.ok_or(AccessError::NotFound("deputy"))
}

/// Ends a designation now.
pub async fn revoke(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    by_manager: Option<&str>,
    id: &str,
) -> Result<Deputy, AccessError> {
    let deputy = get(tx, id).await?.ok_or(AccessError::NotFound("deputy"))?;
    if let Some(manager) = by_manager {
        if org::capacity(tx, manager, &deputy.org_unit_id, today_in_japan(now)).await? != Some(org::Capacity::Manager) {
            return Err(AccessError::Forbidden("only the unit's manager ends its deputy's designation"));
        }
    }
    if deputy.revoked_at.is_some() {
        return Err(AccessError::Conflict("the designation has already ended".into()));
    }
    sqlx::query("UPDATE deputies SET revoked_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut **tx).await?;
    Event::success(
        actor,
        "access.deputy_revoked",
        format!("org_unit:{}", deputy.org_unit_id),
        serde_json::json!({"deputy_id": id}),
    )
    .record(tx, now)
    .await?;
    get(tx, id).await?.ok_or(AccessError::NotFound("deputy"))
}

const DEPUTY_COLUMNS: &str =
    "id, org_unit_id, deputy_person_id, valid_from, valid_until, created_by, created_at, revoked_at";

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Deputy>, sqlx::Error> {
    let sql = format!("SELECT {DEPUTY_COLUMNS} FROM deputies WHERE id = $1");
    sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?.map(|r| from_row(&r)).transpose()
}

/// Designations of one unit (or all), newest first.
pub async fn list<'e, E>(executor: E, org_unit_id: Option<&str>) -> Result<Vec<Deputy>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!(
        "SELECT {DEPUTY_COLUMNS} FROM deputies WHERE ($1 = '' OR org_unit_id = $1) ORDER BY created_at DESC, id LIMIT 1000"
    );
    let rows = sqlx::query(&sql).bind(org_unit_id.unwrap_or("")).fetch_all(executor).await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Deputy, sqlx::Error> {
    Ok(Deputy {
        id: row.try_get("id")?,
        org_unit_id: row.try_get("org_unit_id")?,
        deputy_person_id: row.try_get("deputy_person_id")?,
        valid_from: row.try_get("valid_from")?,
        valid_until: row.try_get("valid_until")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
