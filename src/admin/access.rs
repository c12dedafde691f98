//! The administrator's side of need-based access, right `access:admin`: the roles each
//! consuming system declares and whether a login to it needs one; requests and grants (seen,
//! and a grant revoked at once); managers' deputies named and ended; reviews opened and seen.
//! Thin: the domain functions of `crate::access` check, change and audit (with the API token
//! as the actor); this turns their answers into the API's shapes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::access::catalog::{self, Role, RoleSpec};
use crate::access::deputies::{self, Deputy, NewDeputy};
use crate::access::grants::{self, Grant, GrantFilter};
use crate::access::requests::{self, Request, RequestFilter};
use crate::access::reviews::{self, NewReview, Review};
use crate::access::AccessError;
use crate::directory::InvalidField;
use crate::systems::CONSOLE_CLIENT_ID;
use crate::App;

use super::problem::{ApiJson, ApiQuery, Problem};
use super::rights::{self, Authorized};
use super::List;

/// The statuses a request can have.
const REQUEST_STATUSES: [&str; 5] = ["pending", "approved", "rejected", "lapsed", "withdrawn"];

/// A query parameter outside its rule: 400 naming it.
fn bad(field: &'static str, reason: impl Into<String>) -> Problem {
    Problem::bad_parameter(InvalidField { field, reason: reason.into() })
}

/// An id as the server makes them (a lower-case UUID). Anything else names nothing, and is
/// not sent to the database (PostgreSQL refuses a NUL in text with an error, not a miss).
fn is_uuid(value: &str) -> bool {
    value.len() == 36
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// A `client_id` as registration allows them (3 to 64 of a-z, 0-9, `-`, `_`, `.`).
fn is_client_id(value: &str) -> bool {
    (3..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// A date exactly as the schema's `Date` says (`YYYY-MM-DD`, nothing around it); whether it
/// exists on the calendar is the domain's check.
fn is_date_shaped(value: &str) -> bool {
    value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
}

/// A body member outside its rule: 422 naming it.
fn invalid(field: &'static str, reason: impl Into<String>) -> Problem {
    Problem::invalid(field, format!("{field}: {}", reason.into()))
}

fn date_member(field: &'static str, value: &str) -> Result<(), Problem> {
    if is_date_shaped(value) {
        Ok(())
    } else {
        Err(invalid(field, "must be a date written YYYY-MM-DD"))
    }
}

fn uuid_member(field: &'static str, value: &str, what: &str) -> Result<(), Problem> {
    if is_uuid(value) {
        Ok(())
    } else {
        Err(invalid(field, format!("no {what} has this id")))
    }
}

/// The client a path names, as access sees it: 404 when there is none.
async fn known_system(app: &App, client_id: &str) -> Result<catalog::System, Problem> {
    if !is_client_id(client_id) {
        return Err(Problem::not_found("client"));
    }
    catalog::system(app.store.pool(), client_id).await?.ok_or_else(|| Problem::not_found("client"))
}

/// The console's roles are Sekimori's own (`super::roles`): declared at start, not here.
fn refuse_console(client_id: &str) -> Result<(), Problem> {
    if client_id == CONSOLE_CLIENT_ID {
        return Err(Problem::conflict("the console's administrative roles are defined by Sekimori itself"));
    }
    Ok(())
}

/// A system's access settings: whether a login needs a role, and the roles it declares.
#[derive(Serialize)]
pub struct RoleCatalog {
    client_id: String,
    requires_role: bool,
    /// By name, retired ones included (marked `retired`).
    items: Vec<Role>,
}

async fn role_catalog(app: &App, client_id: &str) -> Result<RoleCatalog, Problem> {
    let system = known_system(app, client_id).await?;
    let mut conn = app.store.pool().acquire().await?;
    let items = catalog::roles_of(&mut conn, &system.client_id).await?;
    Ok(RoleCatalog { client_id: system.client_id, requires_role: system.requires_role, items })
}

pub async fn list_roles(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    Path(client_id): Path<String>,
) -> Result<Json<RoleCatalog>, Problem> {
    Ok(Json(role_catalog(&app, &client_id).await?))
}

/// Declares role `name` of the client, or declares it again (the whole of it: the body replaces
/// what was declared, and a retired role is in use again). 201 when new, 200 when redeclared.
pub async fn declare_role(
    State(app): State<App>,
    caller: Authorized<rights::AccessAdmin>,
    Path((client_id, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<RoleSpec>,
) -> Result<(StatusCode, Json<Role>), Problem> {
    known_system(&app, &client_id).await?;
    refuse_console(&client_id)?;
    catalog::check_name(&name).map_err(|e| invalid(e.field, e.reason))?;
    // The schema's limits, on the value as sent (the domain trims before it counts).
    for (field, label) in [("label", Some(&spec.label)), ("label_en", spec.label_en.as_ref())] {
        if label.is_some_and(|l| l.chars().count() > 100) {
            return Err(invalid(field, "must be 1 to 100 characters without control characters"));
        }
    }
    for (i, other) in spec.incompatible_with.iter().enumerate() {
        if catalog::check_name(other).is_err() {
            return Err(invalid("incompatible_with", "names a role the system does not declare"));
        }
        if spec.incompatible_with.iter().take(i).any(|seen| seen == other) {
            return Err(invalid("incompatible_with", format!("names {other} twice")));
        }
    }
    let mut tx = app.store.begin().await?;
    let existed = catalog::role_by_name(&mut *tx, &client_id, &name).await?.is_some();
    let role = match catalog::declare_role(&mut tx, &caller.actor(), app.clock.now(), &client_id, &name, spec).await {
        Ok(role) => role,
        // Two declarations of the same role (or of exclusions between the same two) at once.
        Err(AccessError::Database(e)) if crate::store::is_unique_violation(&e) => {
            return Err(Problem::conflict("the role was being declared at the same time; try again"))
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok((if existed { StatusCode::OK } else { StatusCode::CREATED }, Json(role)))
}

/// What retiring a role ended.
#[derive(Serialize)]
pub struct RetiredRole {
    role: Role,
    /// The grants of it that ended now, each through the revocation path.
    grants_ended: u64,
}

pub async fn retire_role(
    State(app): State<App>,
    caller: Authorized<rights::AccessAdmin>,
    Path((client_id, name)): Path<(String, String)>,
) -> Result<Json<RetiredRole>, Problem> {
    if !is_client_id(&client_id) || catalog::check_name(&name).is_err() {
        return Err(Problem::not_found("role"));
    }
    refuse_console(&client_id)?;
    let mut tx = app.store.begin().await?;
    let grants_ended = catalog::retire_role(&mut tx, &caller.actor(), app.clock.now(), &client_id, &name).await?;
    let retired =
        catalog::role_by_name(&mut *tx, &client_id, &name).await?.ok_or_else(|| Problem::not_found("role"))?;
    let role = catalog::role_by_id(&mut tx, &retired.id).await?.ok_or_else(|| Problem::not_found("role"))?;
    tx.commit().await?;
    Ok(Json(RetiredRole { role, grants_ended }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiresRole {
    requires_role: bool,
}

/// Whether a login to the client needs at least one role of it.
pub async fn set_requires_role(
    State(app): State<App>,
    caller: Authorized<rights::AccessAdmin>,
    Path(client_id): Path<String>,
    ApiJson(body): ApiJson<RequiresRole>,
) -> Result<Json<RoleCatalog>, Problem> {
    known_system(&app, &client_id).await?;
    refuse_console(&client_id)?;
    let mut tx = app.store.begin().await?;
    catalog::set_requires_role(&mut tx, &caller.actor(), app.clock.now(), &client_id, body.requires_role).await?;
    tx.commit().await?;
    Ok(Json(role_catalog(&app, &client_id).await?))
}

/// `limit` (1 to 500, default 100) and `offset` (from 0), as the people list pages.
fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), Problem> {
    let limit = limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit", "must be 1 to 500"));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(bad("offset", "must not be negative"));
    }
    Ok((limit, offset))
}

fn uuid_parameter(field: &'static str, value: Option<String>) -> Result<Option<String>, Problem> {
    match value {
        Some(v) if !is_uuid(&v) => Err(bad(field, "must be an id (a lower-case UUID)")),
        other => Ok(other),
    }
}

fn client_parameter(value: Option<String>) -> Result<Option<String>, Problem> {
    match value {
        Some(v) if !is_client_id(&v) => {
            Err(bad("client_id", "must be 3 to 64 characters of a-z, 0-9, '-', '_' or '.'"))
        }
        other => Ok(other),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    person_id: Option<String>,
    status: Option<String>,
    client_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_requests(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    ApiQuery(query): ApiQuery<RequestsQuery>,
) -> Result<Json<List<Request>>, Problem> {
    let (limit, offset) = paging(query.limit, query.offset)?;
    if let Some(status) = &query.status {
        if !REQUEST_STATUSES.contains(&status.as_str()) {
            return Err(bad("status", format!("must be one of {}", REQUEST_STATUSES.join(", "))));
        }
    }
    let filter = RequestFilter {
        person_id: uuid_parameter("person_id", query.person_id)?,
        status: query.status,
        client_id: client_parameter(query.client_id)?,
    };
    let mut tx = app.store.begin().await?;
    let items = requests::page(&mut tx, &filter, limit, offset).await?;
    Ok(Json(List { items }))
}

pub async fn get_request(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Request>, Problem> {
    if !is_uuid(&id) {
        return Err(Problem::not_found("request"));
    }
    let mut tx = app.store.begin().await?;
    requests::get(&mut tx, &id).await?.map(Json).ok_or_else(|| Problem::not_found("request"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsQuery {
    person_id: Option<String>,
    client_id: Option<String>,
    owner_org_unit_id: Option<String>,
    include_ended: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_grants(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    ApiQuery(query): ApiQuery<GrantsQuery>,
) -> Result<Json<List<Grant>>, Problem> {
    let (limit, offset) = paging(query.limit, query.offset)?;
    let filter = GrantFilter {
        person_id: uuid_parameter("person_id", query.person_id)?,
        client_id: client_parameter(query.client_id)?,
        owner_org_unit_id: uuid_parameter("owner_org_unit_id", query.owner_org_unit_id)?,
        include_ended: query.include_ended.unwrap_or(false),
    };
    Ok(Json(List { items: grants::page(app.store.pool(), &filter, limit, offset).await? }))
}

pub async fn get_grant(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Grant>, Problem> {
    if !is_uuid(&id) {
        return Err(Problem::not_found("grant"));
    }
    let mut tx = app.store.begin().await?;
    grants::get(&mut tx, &id).await?.map(Json).ok_or_else(|| Problem::not_found("grant"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    reason: String,
}

/// Ends a grant now, through the one revocation path: the person's tokens for the system end,
/// the system hears by back-channel logout, the person is told.
pub async fn revoke_grant(
    State(app): State<App>,
    caller: Authorized<rights::AccessAdmin>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Revocation>,
) -> Result<Json<Grant>, Problem> {
    // The schema's rule on the value as sent (the domain trims before it checks).
    let raw = &body.reason;
    if raw.chars().count() > 1000 || raw.chars().any(|c| c.is_control() && c != '\n' && c != '\r') {
        return Err(invalid("reason", "must be 1 to 1000 characters"));
    }
    let reason = requests::check_reason(raw).map_err(|e| invalid(e.field, e.reason))?;
    if !is_uuid(&id) {
        return Err(Problem::not_found("grant"));
    }
    let mut tx = app.store.begin().await?;
    // An administrative role is ended by whoever may grant one, not by every access administrator.
    let ending = grants::get(&mut tx, &id).await?.ok_or_else(|| Problem::not_found("grant"))?;
    if ending.client_id == CONSOLE_CLIENT_ID {
        caller.require(rights::Right::AdminRolesGrant)?;
    }
    if !grants::end(&mut tx, &caller.actor(), app.clock.now(), &id, &reason).await? {
        return Err(Problem::conflict("the grant has already ended"));
    }
    let grant = grants::get(&mut tx, &id).await?.ok_or_else(|| Problem::not_found("grant"))?;
    tx.commit().await?;
    Ok(Json(grant))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeputiesQuery {
    org_unit_id: Option<String>,
}

pub async fn list_deputies(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    ApiQuery(query): ApiQuery<DeputiesQuery>,
) -> Result<Json<List<Deputy>>, Problem> {
    let unit = uuid_parameter("org_unit_id", query.org_unit_id)?;
    Ok(Json(List { items: deputies::list(app.store.pool(), unit.as_deref()).await? }))
}

/// Names a deputy for a unit's manager, as an administrator (not the manager in person).
pub async fn designate_deputy(
    State(app): State<App>,
    caller: Authorized<rights::AccessAdmin>,
    ApiJson(new): ApiJson<NewDeputy>,
) -> Result<(StatusCode, Json<Deputy>), Problem> {
    uuid_member("org_unit_id", &new.org_unit_id, "org unit")?;
    uuid_member("deputy_person_id", &new.deputy_person_id, "person")?;
    date_member("valid_from", &new.valid_from)?;
    date_member("valid_until", &new.valid_until)?;
    let mut tx = app.store.begin().await?;
    let deputy = match deputies::designate(&mut tx, &caller.actor(), app.clock.now(), None, new).await {
        Ok(deputy) => deputy,
        // A body member naming nothing is the member's fault (422), as elsewhere in the API.
        Err(AccessError::NotFound("org unit")) => return Err(invalid("org_unit_id", "no org unit has this id")),
        Err(AccessError::NotFound("person")) => return Err(invalid("deputy_person_id", "no person has this id")),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(deputy)))
}

pub async fn revoke_deputy(
    State(app): State<App>,
    caller: Authorized<rights::AccessAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Deputy>, Problem> {
    if !is_uuid(&id) {
        return Err(Problem::not_found("deputy"));
    }
    let mut tx = app.store.begin().await?;
    let deputy = deputies::revoke(&mut tx, &caller.actor(), app.clock.now(), None, &id).await?;
    tx.commit().await?;
    Ok(Json(deputy))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewsQuery {
    open_only: Option<bool>,
}

pub async fn list_reviews(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    ApiQuery(query): ApiQuery<ReviewsQuery>,
) -> Result<Json<List<Review>>, Problem> {
    let mut tx = app.store.begin().await?;
    Ok(Json(List { items: reviews::list(&mut tx, query.open_only.unwrap_or(false)).await? }))
}

/// Opens a review of one system or of every system a section owns, as an administrator.
pub async fn open_review(
    State(app): State<App>,
    caller: Authorized<rights::AccessAdmin>,
    ApiJson(new): ApiJson<NewReview>,
) -> Result<(StatusCode, Json<Review>), Problem> {
    if let Some(client_id) = &new.client_id {
        if !is_client_id(client_id) {
            return Err(invalid("client_id", "no client has this client_id"));
        }
    }
    if let Some(unit) = &new.org_unit_id {
        uuid_member("org_unit_id", unit, "org unit")?;
    }
    if let Some(deadline) = &new.deadline {
        date_member("deadline", deadline)?;
    }
    let mut tx = app.store.begin().await?;
    let opened = reviews::open(&mut tx, &caller.actor(), &app.config.access, app.clock.now(), None, new).await;
    let review = match opened {
        Ok(review) => review,
        Err(AccessError::NotFound("system")) => return Err(invalid("client_id", "no client has this client_id")),
        Err(AccessError::NotFound("org unit")) => return Err(invalid("org_unit_id", "no org unit has this id")),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(review)))
}

pub async fn get_review(
    State(app): State<App>,
    _caller: Authorized<rights::AccessAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Review>, Problem> {
    if !is_uuid(&id) {
        return Err(Problem::not_found("review"));
    }
    let mut tx = app.store.begin().await?;
    reviews::get(&mut tx, &id).await?.map(Json).ok_or_else(|| Problem::not_found("review"))
}
