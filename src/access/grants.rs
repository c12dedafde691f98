//! Grants: a role held by a person on a system. A grant begins when its request's last
//! approval is given or when the owning manager grants directly, and ends — at once, through
//! `revocation` — at its end date, on a transfer, when revoked, when its role is retired, or
//! when a review removes it or lets it lapse. Ending a grant ends the person's tokens for that
//! system and tells the system by back-channel logout, so it logs the person in again with
//! what they hold now.

use serde::Serialize;
use sqlx::Row;
use time::Date;

use super::catalog::{self, Role};
use super::{org, AccessError, Classification};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::directory::types::{format_date, parse_date};
use crate::directory::{self, today_in_japan, PersonStatus};
use crate::invalid::InvalidField;
use crate::notify::{self, Notice};
use crate::revocation::{self, Target};
use crate::store::{Store, Tx};

/// A grant as the API and pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub id: String,
    pub person_id: String,
    pub person_name: String,
    pub employee_number: String,
    pub client_id: String,
    pub system_name: String,
    pub role: String,
    pub role_label: String,
    pub classification: Classification,
    /// `request` (approved) or `direct` (granted by the owning manager).
    pub origin: String,
    pub request_id: Option<String>,
    pub granted_by: String,
    pub cross_section: bool,
    pub start_date: String,
    pub end_date: Option<String>,
    pub created_at: UnixTime,
    pub last_confirmed_at: UnixTime,
    /// When a review must next confirm it (secret-class roles can ask for a shorter interval).
    pub review_due_at: Option<UnixTime>,
    pub ended_at: Option<UnixTime>,
    pub end_reason: Option<String>,
}

/// What begins a grant.
pub(crate) struct NewGrant<'a> {
    pub person_id: &'a str,
    pub role: &'a Role,
    pub origin: &'static str,
    pub request_id: Option<&'a str>,
    pub granted_by: &'a Actor,
    pub cross_section: bool,
    pub holder_unit_id: Option<&'a str>,
    pub end_date: Option<Date>,
}

/// The end date a grant gets: the one asked for, but never past the role's longest grant.
pub fn clip_end_date(role: &Role, today: Date, wished: Option<Date>) -> Option<Date> {
    let longest = role.max_duration_days.map(|days| today + time::Duration::days(days));
    match (wished, longest) {
        (Some(w), Some(l)) => Some(w.min(l)),
        (w, l) => w.or(l),
    }
}

/// Checks a wished end date: a date, not in the past.
pub fn parse_end_date(value: Option<&str>, today: Date) -> Result<Option<Date>, InvalidField> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else { return Ok(None) };
    let date = parse_date("end_date", value)?;
    if date < today {
        return Err(InvalidField { field: "end_date", reason: "must not be in the past".into() });
    }
    Ok(Some(date))
}

pub(crate) async fn create(tx: &mut Tx, now: UnixTime, new: NewGrant<'_>) -> Result<String, AccessError> {
    let conflicts = catalog::conflicts_of(tx, new.person_id, &new.role.id).await?;
    if !conflicts.is_empty() {
        return Err(incompatible(&new.role.name, &conflicts));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let today = today_in_japan(now);
    let inserted = sqlx::query(
        "INSERT INTO access_grants (id, person_id, role_id, client_id, origin, request_id, granted_by, cross_section,
                                    holder_unit_id, start_date, end_date, created_at, last_confirmed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(&id)
    .bind(new.person_id)
    .bind(&new.role.id)
    .bind(&new.role.client_id)
    .bind(new.origin)
    .bind(new.request_id)
    .bind(new.granted_by.as_text())
    .bind(i64::from(new.cross_section))
    .bind(new.holder_unit_id)
    .bind(format_date(today))
    .bind(new.end_date.map(format_date))
    .bind(now)
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if crate::store::is_unique_violation(&e) => {
            return Err(AccessError::Conflict("the person already holds this role".into()))
        }
        Err(e) => return Err(e.into()),
    }
    Event::success(
        new.granted_by,
        "access.grant",
        format!("person:{}", new.person_id),
        serde_json::json!({
            "grant_id": id, "client_id": new.role.client_id, "role": new.role.name, "origin": new.origin,
            "request_id": new.request_id, "cross_section": new.cross_section,
            "end_date": new.end_date.map(format_date),
        }),
    )
    .record(tx, now)
    .await?;
    // What a node keeps of the person's tokens (their roles) is read again.
    crate::store::changes::announce(tx, crate::store::changes::Change::People).await?;
    Ok(id)
}

pub(crate) fn incompatible(role: &str, held: &[String]) -> AccessError {
    AccessError::Conflict(format!(
        "role {role} cannot be held together with {} (separation of duties)",
        held.join(", ")
    ))
}

/// A direct grant by the owning section's manager (or their deputy today) to a person of that
/// section, recorded as such. A person of another section asks through a request, which their
/// own manager also approves.
#[allow(clippy::too_many_arguments)]
pub async fn grant_directly(
    tx: &mut Tx,
    now: UnixTime,
    manager_id: &str,
    person_id: &str,
    client_id: &str,
    role_name: &str,
    end_date: Option<&str>,
    reason: &str,
) -> Result<Grant, AccessError> {
    let today = today_in_japan(now);
    let reason = super::requests::check_reason(reason)?;
    let system = catalog::system(&mut **tx, client_id).await?.ok_or(AccessError::NotFound("system"))?;
    let role = catalog::role_by_name(&mut **tx, client_id, role_name).await?.ok_or(AccessError::NotFound("role"))?;
    if role.retired || !system.active {
        return Err(AccessError::Conflict("the role or its system is not in use".into()));
    }
    let owner =
        system.owner_org_unit_id.as_deref().ok_or(AccessError::Forbidden("the system has no owning section"))?;
    if manager_id == person_id {
        return Err(AccessError::Forbidden("nobody grants a role to themselves"));
    }
    let capacity = match org::deciding_unit(tx, owner, person_id).await? {
        Some(unit) => org::capacity(tx, manager_id, &unit, today).await?,
        None => None,
    };
    let Some(capacity) = capacity else {
        return Err(AccessError::Forbidden("only the manager of the section that owns the system grants directly"));
    };
    let person = directory::get_person(&mut **tx, person_id).await?.ok_or(AccessError::NotFound("person"))?;
    if person.status != PersonStatus::Active || !person.may_log_in(today) {
        return Err(AccessError::Conflict("the person is not in service".into()));
    }
    if !org::works_in(tx, person_id, owner, today).await? {
        return Err(AccessError::Forbidden(
            "a person of another section asks through a request, which their own manager also approves",
        ));
    }
    let wished = parse_end_date(end_date, today)?;
    let end = clip_end_date(&role, today, wished);
    let actor = Actor::Person(manager_id.to_owned());
    let id = create(
        tx,
        now,
        NewGrant {
            person_id,
            role: &role,
            origin: "direct",
            request_id: None,
            granted_by: &actor,
            cross_section: false,
            holder_unit_id: person.org_unit_id.as_deref(),
            end_date: end,
        },
    )
    .await?;
    Event::success(
        &actor,
        "access.grant_direct",
        format!("person:{person_id}"),
        serde_json::json!({"grant_id": id, "reason": reason, "acting_as": capacity.as_str()}),
    )
    .record(tx, now)
    .await?;
    notify::notify(
        tx,
        now,
        person_id,
        &Notice::RequestDecided { system: &system.name, role: &role.label, approved: true, reason: &reason },
    )
    .await?;
    get(tx, &id).await?.ok_or(AccessError::NotFound("grant"))
}

/// Ends grant `id` now for `reason`, through the one revocation path: the person's tokens for
/// the system end and the system is told. False when it had already ended.
pub async fn end(tx: &mut Tx, actor: &Actor, now: UnixTime, id: &str, reason: &str) -> Result<bool, AccessError> {
    let Some(grant) = get(tx, id).await? else { return Err(AccessError::NotFound("grant")) };
    if grant.ended_at.is_some() {
        return Ok(false);
    }
    let revoked = revocation::revoke(
        tx,
        actor,
        now,
        Target::AccessGrant { grant_id: id, person_id: &grant.person_id, client_id: &grant.client_id },
        reason,
    )
    .await?;
    if revoked.access_grants == 0 {
        // Ended meanwhile by someone else, who told the holder.
        return Ok(false);
    }
    notify::notify(
        tx,
        now,
        &grant.person_id,
        &Notice::GrantEnded { system: &grant.system_name, role: &grant.role_label, reason: reason_text(reason) },
    )
    .await?;
    Ok(true)
}

/// How a reason code reads in a notice.
fn reason_text(reason: &str) -> &str {
    match reason {
        "end_date" => "期限到来 / end date reached",
        "review_removed" => "棚卸しで削除 / removed by a review",
        "review_lapsed" => "棚卸しで未確認 / not confirmed in a review",
        "transfer" => "異動 / transfer",
        "role_retired" => "権限の廃止 / role retired",
        other => other,
    }
}

/// Ends every live grant of a role (the role is retired).
pub(crate) async fn end_all_of_role(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    role_id: &str,
    reason: &str,
) -> Result<u64, AccessError> {
    let ids: Vec<String> = super::texts(
        &sqlx::query("SELECT id FROM access_grants WHERE role_id = $1 AND ended_at IS NULL")
            .bind(role_id)
            .fetch_all(&mut **tx)
            .await?,
        "id",
    )?;
    let mut ended = 0;
    for id in ids {
        ended += u64::from(end(tx, actor, now, &id, reason).await?);
    }
    Ok(ended)
}

/// Ends the grants whose last day has passed (the job runs this every minute): each in its own
/// transaction, so one failure does not hold the others. Returns how many ended.
pub async fn end_due(store: &Store, now: UnixTime) -> Result<u64, AccessError> {
    let today = format_date(today_in_japan(now));
    let ids: Vec<String> = super::texts(
        &sqlx::query(
            "SELECT id FROM access_grants WHERE ended_at IS NULL AND end_date < $1 ORDER BY end_date LIMIT 500",
        )
        .bind(today)
        .fetch_all(store.pool())
        .await?,
        "id",
    )?;
    let mut ended = 0;
    for id in ids {
        let mut tx = store.begin().await?;
        if end(&mut tx, &Actor::System, now, &id, "end_date").await? {
            ended += 1;
        }
        tx.commit().await?;
    }
    Ok(ended)
}

/// After a person moved (or a concurrent post ended): a grant made while they worked in the
/// owning section ends when they no longer do; a cross-section grant, approved by the manager
/// of the unit they worked in, ends when they leave that unit. The new manager asks again.
pub async fn after_move(tx: &mut Tx, actor: &Actor, now: UnixTime, person_id: &str) -> Result<u64, AccessError> {
    let today = today_in_japan(now);
    let rows = sqlx::query(
        "SELECT g.id, g.cross_section, g.holder_unit_id, c.owner_org_unit_id FROM access_grants g
         JOIN clients c ON c.client_id = g.client_id WHERE g.person_id = $1 AND g.ended_at IS NULL",
    )
    .bind(person_id)
    .fetch_all(&mut **tx)
    .await?;
    let units = org::units_of(tx, person_id, today).await?;
    let mut ended = 0;
    for row in rows {
        let id: String = row.try_get("id")?;
        let cross = row.try_get::<i64, _>("cross_section")? != 0;
        let holder: Option<String> = row.try_get("holder_unit_id")?;
        let owner: Option<String> = row.try_get("owner_org_unit_id")?;
        let still = if cross {
            holder.as_ref().is_some_and(|h| units.contains(h))
        } else {
            match owner {
                Some(owner) => org::works_in(tx, person_id, &owner, today).await?,
                None => false,
            }
        };
        if !still {
            ended += u64::from(end(tx, actor, now, &id, "transfer").await?);
        }
    }
    Ok(ended)
}

/// Which grants to list.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub person_id: Option<String>,
    pub client_id: Option<String>,
    /// Systems owned by this unit.
    pub owner_org_unit_id: Option<String>,
    pub include_ended: bool,
}

const GRANT_SELECT: &str = "SELECT g.id, g.person_id, p.family_name, p.given_name, p.employee_number, g.client_id,
        c.name AS system_name, r.name AS role, r.label AS role_label, r.classification, r.review_interval_days,
        g.origin, g.request_id, g.granted_by, g.cross_section, g.start_date, g.end_date, g.created_at,
        g.last_confirmed_at, g.ended_at, g.end_reason
     FROM access_grants g JOIN people p ON p.id = g.person_id JOIN clients c ON c.client_id = g.client_id
     JOIN system_roles r ON r.id = g.role_id";

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Grant>, sqlx::Error> {
    let sql = format!("{GRANT_SELECT} WHERE g.id = $1");
    sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?.map(|r| grant_from_row(&r)).transpose()
}

pub async fn list<'e, E>(executor: E, filter: &GrantFilter, limit: i64) -> Result<Vec<Grant>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    page(executor, filter, limit, 0).await
}

/// `limit` grants from the `offset`-th on, by system, role and employee number.
pub async fn page<'e, E>(executor: E, filter: &GrantFilter, limit: i64, offset: i64) -> Result<Vec<Grant>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut select = crate::store::Select::new(GRANT_SELECT);
    select.push(" WHERE 1 = 1");
    if let Some(person) = &filter.person_id {
        select.push(" AND g.person_id = ").bind_text(person.clone());
    }
    if let Some(client) = &filter.client_id {
        select.push(" AND g.client_id = ").bind_text(client.clone());
    }
    if let Some(unit) = &filter.owner_org_unit_id {
        select.push(" AND c.owner_org_unit_id = ").bind_text(unit.clone());
    }
    if !filter.include_ended {
        select.push(" AND g.ended_at IS NULL");
    }
    select.push(" ORDER BY c.name, r.name, p.employee_number, g.created_at, g.id LIMIT ").bind_int(limit);
    select.push(" OFFSET ").bind_int(offset);
    select.query().fetch_all(executor).await?.iter().map(grant_from_row).collect()
}

fn grant_from_row(row: &sqlx::any::AnyRow) -> Result<Grant, sqlx::Error> {
    let classification: String = row.try_get("classification")?;
    let family: String = row.try_get("family_name")?;
    let given: String = row.try_get("given_name")?;
    let last_confirmed_at: i64 = row.try_get("last_confirmed_at")?;
    let interval: Option<i64> = row.try_get("review_interval_days")?;
    Ok(Grant {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        person_name: format!("{family} {given}"),
        employee_number: row.try_get("employee_number")?,
        client_id: row.try_get("client_id")?,
        system_name: row.try_get("system_name")?,
        role: row.try_get("role")?,
        role_label: row.try_get("role_label")?,
        classification: Classification::parse(&classification).unwrap_or(Classification::Secret),
        origin: row.try_get("origin")?,
        request_id: row.try_get("request_id")?,
        granted_by: row.try_get("granted_by")?,
        cross_section: row.try_get::<i64, _>("cross_section")? != 0,
        start_date: row.try_get("start_date")?,
        end_date: row.try_get("end_date")?,
        created_at: row.try_get("created_at")?,
        last_confirmed_at,
        review_due_at: interval.map(|days| last_confirmed_at + days * 86_400),
        ended_at: row.try_get("ended_at")?,
        end_reason: row.try_get("end_reason")?,
    })
}
