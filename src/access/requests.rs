//! Requests for a role and their approvals (R5; 鳥栖 規則 第15条2). The steps come from the
//! org tree: the manager of the section that owns the system always; the requester's own
//! manager as well when the requester works in another section (the grant is then flagged
//! cross-section and always ends). A deputy may act inside their dates; nobody decides their
//! own request, and one person does not give both approvals. A request nobody decides lapses.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::catalog;
use super::grants::{self, clip_end_date, parse_end_date, NewGrant};
use super::{org, AccessError};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::AccessConfig;
use crate::directory::types::format_date;
use crate::directory::{self, today_in_japan, PersonStatus};
use crate::invalid::InvalidField;
use crate::notify::{self, Notice};
use crate::store::{Store, Tx};

/// A request as the requester fills it in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub client_id: String,
    pub role: String,
    /// The business reason (業務上の必要性).
    pub reason: String,
    /// The last day the requester needs the role (YYYY-MM-DD).
    #[serde(default)]
    pub end_date: Option<String>,
}

/// One approval step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `owner` (the owning section's manager) or `requester_manager`.
    pub step: String,
    pub org_unit_id: String,
    pub org_unit_name: String,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub acting_as: Option<String>,
    pub reason: Option<String>,
    pub decided_at: Option<UnixTime>,
}

/// A request with its steps.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub person_id: String,
    pub person_name: String,
    pub employee_number: String,
    pub client_id: String,
    pub system_name: String,
    pub role: String,
    pub role_label: String,
    pub classification: super::Classification,
    pub reason: String,
    pub end_date: Option<String>,
    pub cross_section: bool,
    /// `pending`, `approved`, `rejected`, `lapsed` or `withdrawn`.
    pub status: String,
    pub created_at: UnixTime,
    pub lapses_at: UnixTime,
    pub decided_at: Option<UnixTime>,
    pub grant_id: Option<String>,
    pub steps: Vec<Step>,
}

pub use crate::invalid::check_reason;

/// Files a request of `person_id` and tells the approvers of the first decisions.
pub async fn submit(
    tx: &mut Tx,
    config: &AccessConfig,
    now: UnixTime,
    person_id: &str,
    new: NewRequest,
) -> Result<Request, AccessError> {
    let today = today_in_japan(now);
    let reason = check_reason(&new.reason)?;
    let person = directory::get_person(&mut **tx, person_id).await?.ok_or(AccessError::NotFound("person"))?;
    if person.status != PersonStatus::Active || !person.may_log_in(today) {
        return Err(AccessError::Conflict("the person is not in service".into()));
    }
    let system = catalog::system(&mut **tx, &new.client_id).await?.ok_or(AccessError::NotFound("system"))?;
    let role =
        catalog::role_by_name(&mut **tx, &new.client_id, &new.role).await?.ok_or(AccessError::NotFound("role"))?;
    if role.retired || !system.active {
        return Err(AccessError::Conflict("the role or its system is not in use".into()));
    }
    let owner = system
        .owner_org_unit_id
        .clone()
        .ok_or_else(|| AccessError::Conflict("the system has no owning section to approve access".into()))?;
    let held = sqlx::query(
        "SELECT 1 AS yes FROM access_grants WHERE person_id = $1 AND role_id = $2 AND ended_at IS NULL
         UNION ALL SELECT 1 AS yes FROM access_requests WHERE person_id = $1 AND role_id = $2 AND status = 'pending'",
    )
    .bind(person_id)
    .bind(&role.id)
    .fetch_optional(&mut **tx)
    .await?;
    if held.is_some() {
        return Err(AccessError::Conflict("the role is already held or asked for".into()));
    }
    let conflicts = catalog::conflicts_of(tx, person_id, &role.id).await?;
    if !conflicts.is_empty() {
        return Err(grants::incompatible(&role.name, &conflicts));
    }
    let wished = parse_end_date(new.end_date.as_deref(), today)?;
    let cross = !org::works_in(tx, person_id, &owner, today).await?;
    let end = clip_end_date(&role, today, wished);
    if cross && end.is_none() {
        return Err(InvalidField {
            field: "end_date",
            reason: "access for a person of another section always ends: give the last day it is needed".into(),
        }
        .into());
    }
    let owner_unit = org::deciding_unit(tx, &owner, person_id)
        .await?
        .ok_or_else(|| AccessError::Conflict("nobody manages the section that owns the system".into()))?;
    let mut steps = vec![("owner", owner_unit)];
    if cross {
        let home = person
            .org_unit_id
            .clone()
            .ok_or_else(|| AccessError::Conflict("the person belongs to no unit whose manager could approve".into()))?;
        let home_unit = org::deciding_unit(tx, &home, person_id)
            .await?
            .ok_or_else(|| AccessError::Conflict("nobody manages the requester's unit".into()))?;
        steps.push(("requester_manager", home_unit));
    }
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO access_requests (id, person_id, role_id, reason, wished_end_date, requester_unit_id, cross_section,
                                      status, created_at, lapses_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
    )
    .bind(&id)
    .bind(person_id)
    .bind(&role.id)
    .bind(&reason)
    .bind(end.map(format_date))
    .bind(person.org_unit_id.as_deref())
    .bind(i64::from(cross))
    .bind(now)
    .bind(now + config.request_lapse_days * 86_400)
    .execute(&mut **tx)
    .await?;
    for (step, unit) in &steps {
        sqlx::query("INSERT INTO access_approvals (id, request_id, step, org_unit_id) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&id)
            .bind(*step)
            .bind(unit)
            .execute(&mut **tx)
            .await?;
    }
    let actor = Actor::Person(person_id.to_owned());
    Event::success(
        &actor,
        "access.request",
        format!("client:{}", system.client_id),
        serde_json::json!({
            "request_id": id, "role": role.name, "reason": reason, "cross_section": cross,
            "end_date": end.map(format_date),
        }),
    )
    .record(tx, now)
    .await?;
    let name = person.full_name();
    let mut told = Vec::new();
    for (_, unit) in &steps {
        for approver in org::deciders(tx, unit, today).await? {
            if approver != person_id && !told.contains(&approver) {
                notify::notify(
                    tx,
                    now,
                    &approver,
                    &Notice::ApprovalWaiting {
                        requester: &name,
                        system: &system.name,
                        role: &role.label,
                        reason: &reason,
                    },
                )
                .await?;
                told.push(approver);
            }
        }
    }
    get(tx, &id).await?.ok_or(AccessError::NotFound("request"))
}

/// Approves or rejects request `id` as `decider_id`, in whichever step they may decide today.
/// The last approval creates the grant; a rejection (which needs a reason) ends the request.
pub async fn decide(
    tx: &mut Tx,
    now: UnixTime,
    decider_id: &str,
    id: &str,
    approve: bool,
    reason: &str,
) -> Result<Request, AccessError> {
    let today = today_in_japan(now);
    let request = get(tx, id).await?.ok_or(AccessError::NotFound("request"))?;
    if request.person_id == decider_id {
        return Err(AccessError::Forbidden("nobody decides their own request"));
    }
    let reason = if approve && reason.trim().is_empty() { String::new() } else { check_reason(reason)? };
    if request.status != "pending" {
        return Err(AccessError::Conflict(format!("the request is already {}", request.status)));
    }
    if request.lapses_at <= now {
        return Err(AccessError::Conflict("the request has lapsed".into()));
    }
    if request.steps.iter().any(|s| s.decided_by.as_deref() == Some(decider_id)) {
        return Err(AccessError::Forbidden("one person does not give two approvals of the same request"));
    }
    let mut mine = None;
    for step in request.steps.iter().filter(|s| s.decision.is_none()) {
        if let Some(capacity) = org::capacity(tx, decider_id, &step.org_unit_id, today).await? {
            mine = Some((step.step.clone(), capacity));
            break;
        }
    }
    let Some((step, capacity)) = mine else {
        return Err(AccessError::Forbidden("this request is not for you to decide"));
    };
    let decision = if approve { "approved" } else { "rejected" };
    sqlx::query(
        "UPDATE access_approvals SET decision = $1, decided_by = $2, acting_as = $3, reason = $4, decided_at = $5
         WHERE request_id = $6 AND step = $7 AND decision IS NULL",
    )
    .bind(decision)
    .bind(decider_id)
    .bind(capacity.as_str())
    .bind((!reason.is_empty()).then_some(reason.as_str()))
    .bind(now)
    .bind(id)
    .bind(&step)
    .execute(&mut **tx)
    .await?;
    let actor = Actor::Person(decider_id.to_owned());
    Event::success(
        &actor,
        if approve { "access.approve" } else { "access.reject" },
        format!("person:{}", request.person_id),
        serde_json::json!({"request_id": id, "step": step, "acting_as": capacity.as_str(), "reason": reason}),
    )
    .record(tx, now)
    .await?;
    let all_approved =
        approve && request.steps.iter().filter(|s| s.step != step).all(|s| s.decision.as_deref() == Some("approved"));
    if !approve {
        finish(tx, now, id, "rejected", None).await?;
        notify::notify(
            tx,
            now,
            &request.person_id,
            &Notice::RequestDecided {
                system: &request.system_name,
                role: &request.role_label,
                approved: false,
                reason: &reason,
            },
        )
        .await?;
    } else if all_approved {
        let role = catalog::role_by_name(&mut **tx, &request.client_id, &request.role)
            .await?
            .ok_or(AccessError::NotFound("role"))?;
        let end = request.end_date.as_deref().map(|d| directory::types::parse_date("end_date", d)).transpose()?;
        let unit: Option<String> = sqlx::query("SELECT requester_unit_id FROM access_requests WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?
            .try_get("requester_unit_id")?;
        let grant_id = grants::create(
            tx,
            now,
            NewGrant {
                person_id: &request.person_id,
                role: &role,
                origin: "request",
                request_id: Some(id),
                granted_by: &actor,
                cross_section: request.cross_section,
                holder_unit_id: unit.as_deref(),
                end_date: end,
            },
        )
        .await?;
        finish(tx, now, id, "approved", Some(&grant_id)).await?;
        notify::notify(
            tx,
            now,
            &request.person_id,
            &Notice::RequestDecided {
                system: &request.system_name,
                role: &request.role_label,
                approved: true,
                reason: &reason,
            },
        )
        .await?;
    }
    get(tx, id).await?.ok_or(AccessError::NotFound("request"))
}

async fn finish(tx: &mut Tx, now: UnixTime, id: &str, status: &str, grant_id: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE access_requests SET status = $1, decided_at = $2, grant_id = $3 WHERE id = $4 AND status = 'pending'",
    )
    .bind(status)
    .bind(now)
    .bind(grant_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The requester takes back a request nobody has finished deciding.
pub async fn withdraw(tx: &mut Tx, now: UnixTime, person_id: &str, id: &str) -> Result<Request, AccessError> {
    let request = get(tx, id).await?.ok_or(AccessError::NotFound("request"))?;
    if request.person_id != person_id {
        return Err(AccessError::NotFound("request"));
    }
    if request.status != "pending" {
        return Err(AccessError::Conflict(format!("the request is already {}", request.status)));
    }
    finish(tx, now, id, "withdrawn", None).await?;
    Event::success(
        &Actor::Person(person_id.to_owned()),
        "access.withdraw",
        format!("person:{person_id}"),
        serde_json::json!({"request_id": id}),
    )
    .record(tx, now)
    .await?;
    get(tx, id).await?.ok_or(AccessError::NotFound("request"))
}

/// Lapses the requests nobody decided in time, telling each requester. Returns how many.
pub async fn lapse_due(store: &Store, now: UnixTime) -> Result<u64, AccessError> {
    let ids: Vec<String> = super::texts(
        &sqlx::query(
            "SELECT id FROM access_requests WHERE status = 'pending' AND lapses_at <= $1 ORDER BY lapses_at LIMIT 500",
        )
        .bind(now)
        .fetch_all(store.pool())
        .await?,
        "id",
    )?;
    let mut lapsed = 0;
    for id in ids {
        let mut tx = store.begin().await?;
        let Some(request) = get(&mut tx, &id).await? else { continue };
        if request.status != "pending" {
            continue;
        }
        finish(&mut tx, now, &id, "lapsed", None).await?;
        Event::success(
            &Actor::System,
            "access.lapse",
            format!("person:{}", request.person_id),
            serde_json::json!({"request_id": id}),
        )
        .record(&mut tx, now)
        .await?;
        notify::notify(
            &mut tx,
            now,
            &request.person_id,
            &Notice::RequestLapsed { system: &request.system_name, role: &request.role_label },
        )
        .await?;
        tx.commit().await?;
        lapsed += 1;
    }
    Ok(lapsed)
}

const REQUEST_SELECT: &str = "SELECT q.id, q.person_id, p.family_name, p.given_name, p.employee_number, r.client_id,
        c.name AS system_name, r.name AS role, r.label AS role_label, r.classification, q.reason, q.wished_end_date,
        q.cross_section, q.status, q.created_at, q.lapses_at, q.decided_at, q.grant_id
     FROM access_requests q JOIN people p ON p.id = q.person_id JOIN system_roles r ON r.id = q.role_id
     JOIN clients c ON c.client_id = r.client_id";

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Request>, sqlx::Error> {
    let sql = format!("{REQUEST_SELECT} WHERE q.id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await? else { return Ok(None) };
    let mut request = request_from_row(&row)?;
    request.steps = steps_of(tx, id).await?;
    Ok(Some(request))
}

async fn steps_of(tx: &mut Tx, id: &str) -> Result<Vec<Step>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.step, a.org_unit_id, u.name AS org_unit_name, a.decision, a.decided_by, a.acting_as, a.reason,
                a.decided_at
         FROM access_approvals a JOIN org_units u ON u.id = a.org_unit_id WHERE a.request_id = $1
         ORDER BY CASE a.step WHEN 'owner' THEN 0 ELSE 1 END",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Step {
                step: r.try_get("step")?,
                org_unit_id: r.try_get("org_unit_id")?,
                org_unit_name: r.try_get("org_unit_name")?,
                decision: r.try_get("decision")?,
                decided_by: r.try_get("decided_by")?,
                acting_as: r.try_get("acting_as")?,
                reason: r.try_get("reason")?,
                decided_at: r.try_get("decided_at")?,
            })
        })
        .collect()
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub person_id: Option<String>,
    pub status: Option<String>,
    pub client_id: Option<String>,
}

pub async fn list(tx: &mut Tx, filter: &RequestFilter, limit: i64) -> Result<Vec<Request>, sqlx::Error> {
    page(tx, filter, limit, 0).await
}

/// `limit` requests from the `offset`-th on, newest first.
pub async fn page(tx: &mut Tx, filter: &RequestFilter, limit: i64, offset: i64) -> Result<Vec<Request>, sqlx::Error> {
    let mut select = crate::store::Select::new(REQUEST_SELECT);
    select.push(" WHERE 1 = 1");
    if let Some(person) = &filter.person_id {
        select.push(" AND q.person_id = ").bind_text(person.clone());
    }
    if let Some(status) = &filter.status {
        select.push(" AND q.status = ").bind_text(status.clone());
    }
    if let Some(client) = &filter.client_id {
        select.push(" AND r.client_id = ").bind_text(client.clone());
    }
    select.push(" ORDER BY q.created_at DESC, q.id LIMIT ").bind_int(limit);
    select.push(" OFFSET ").bind_int(offset);
    let rows = select.query().fetch_all(&mut **tx).await?;
    let mut requests = rows.iter().map(request_from_row).collect::<Result<Vec<_>, _>>()?;
    for request in &mut requests {
        request.steps = steps_of(tx, &request.id).await?;
    }
    Ok(requests)
}

/// The pending requests with a step `person_id` may decide today (as manager or deputy), not
/// their own and not one they already approved.
pub async fn waiting_for(tx: &mut Tx, person_id: &str, now: UnixTime) -> Result<Vec<Request>, sqlx::Error> {
    let units = org::units_decided_by(tx, person_id, today_in_japan(now)).await?;
    let mut ids: Vec<String> = Vec::new();
    for (unit, _) in units {
        let rows = sqlx::query(
            "SELECT q.id FROM access_approvals a JOIN access_requests q ON q.id = a.request_id
             WHERE a.org_unit_id = $1 AND a.decision IS NULL AND q.status = 'pending' AND q.lapses_at > $2
               AND q.person_id <> $3
               AND NOT EXISTS (SELECT 1 FROM access_approvals d WHERE d.request_id = q.id AND d.decided_by = $3)",
        )
        .bind(&unit)
        .bind(now)
        .bind(person_id)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let mut requests = Vec::new();
    for id in ids {
        if let Some(request) = get(tx, &id).await? {
            requests.push(request);
        }
    }
    requests.sort_by_key(|r| r.created_at);
    Ok(requests)
}

fn request_from_row(row: &sqlx::any::AnyRow) -> Result<Request, sqlx::Error> {
    let classification: String = row.try_get("classification")?;
    let family: String = row.try_get("family_name")?;
    let given: String = row.try_get("given_name")?;
    Ok(Request {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        person_name: format!("{family} {given}"),
        employee_number: row.try_get("employee_number")?,
        client_id: row.try_get("client_id")?,
        system_name: row.try_get("system_name")?,
        role: row.try_get("role")?,
        role_label: row.try_get("role_label")?,
        classification: super::Classification::parse(&classification).unwrap_or(super::Classification::Secret),
        reason: row.try_get("reason")?,
        end_date: row.try_get("wished_end_date")?,
        cross_section: row.try_get::<i64, _>("cross_section")? != 0,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        lapses_at: row.try_get("lapses_at")?,
        decided_at: row.try_get("decided_at")?,
        grant_id: row.try_get("grant_id")?,
        steps: Vec::new(),
    })
}
