//! SCIM Groups: the org units (部・課・係). A Group's members are the people whose unit it is
//! or who hold a concurrent post in it — read-only, because membership follows each person's
//! HR record (move a person by changing their User's `orgUnitCode`). A Group created through
//! SCIM is a department (部) at the top of the tree; its externalId, when it is a valid code,
//! becomes the unit's code.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use sqlx::Row;

use super::error::ScimError;
use super::query::{self, ListParams};
use super::{check_if_match, member, version_of, Scim, ScimJson, ScimResponse, GROUP};
use crate::clock::UnixTime;
use crate::directory::{self, EmployeeNumber, NewOrgUnit};
use crate::store::Tx;
use crate::App;

#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub id: String,
    pub code: String,
    pub name: String,
    pub external_id: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: Option<UnixTime>,
}

pub const GROUP_COLUMNS: &str = "g.id, g.code, g.name, g.external_id, g.created_at, g.updated_at";

pub fn record_from_row(row: &sqlx::any::AnyRow) -> Result<GroupRecord, sqlx::Error> {
    Ok(GroupRecord {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        external_id: row.try_get("external_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The codes of the open org units: what a User's `orgUnitCode` may be.
pub async fn open_unit_codes(app: &App) -> Result<Vec<String>, ScimError> {
    let rows = sqlx::query("SELECT code FROM org_units WHERE closed_at IS NULL ORDER BY code")
        .fetch_all(app.store.pool())
        .await?;
    Ok(rows.iter().map(|r| r.try_get("code")).collect::<Result<_, _>>()?)
}

async fn load(tx: &mut Tx, id: &str) -> Result<Option<GroupRecord>, ScimError> {
    let row = sqlx::query(&format!("SELECT {GROUP_COLUMNS} FROM org_units g WHERE g.id = $1 AND g.closed_at IS NULL"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.as_ref().map(record_from_row).transpose()?)
}

/// The people working in a unit: its own and those with a concurrent post there.
async fn members<'e, E>(executor: E, scim: &Scim, unit_id: &str) -> Result<Vec<Value>, ScimError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT p.id, p.family_name, p.given_name FROM people p
         WHERE p.scim_deleted_at IS NULL AND p.status <> 'retired'
             AND (p.org_unit_id = $1
                  OR EXISTS (SELECT 1 FROM person_posts pp
                             WHERE pp.person_id = p.id AND pp.org_unit_id = $1 AND pp.end_date IS NULL))
         ORDER BY p.employee_number",
    )
    .bind(unit_id)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let family: String = row.try_get("family_name")?;
            let given: String = row.try_get("given_name")?;
            Ok(json!({"value": id, "$ref": scim.url(&format!("/Users/{id}")), "display": format!("{family} {given}"), "type": "User"}))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ScimError::from)
}

fn to_json(scim: &Scim, record: &GroupRecord, members: Option<Vec<Value>>) -> Value {
    let mut group = Map::new();
    group.insert("schemas".into(), json!([GROUP]));
    group.insert("id".into(), record.id.clone().into());
    if let Some(external_id) = &record.external_id {
        group.insert("externalId".into(), external_id.clone().into());
    }
    group.insert("displayName".into(), record.name.clone().into());
    if let Some(members) = members.filter(|m| !m.is_empty()) {
        group.insert("members".into(), members.into());
    }
    let mut group = Value::Object(group);
    // The unit's own fields make its version, whatever a projection leaves out.
    let version = version_of(&json!([record.name, record.external_id, record.code, record.updated_at]));
    if let Some(fields) = group.as_object_mut() {
        fields.insert(
            "meta".into(),
            json!({
                "resourceType": "Group",
                "created": super::users::rfc3339(record.created_at),
                "lastModified": super::users::rfc3339(record.updated_at.unwrap_or(record.created_at)),
                "location": scim.url(&format!("/Groups/{}", record.id)),
                "version": version,
            }),
        );
    }
    group
}

/// What a request says the unit should be.
struct Desired {
    name: String,
    external_id: Option<String>,
}

fn desired(body: &Value) -> Result<Desired, ScimError> {
    let name = member(body, "displayName")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_value("displayName is required and must be a string"))?
        .to_owned();
    let external_id = match member(body, "externalId") {
        None => None,
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(_) => return Err(ScimError::invalid_value("externalId must be a string")),
    };
    // Members are read-only: a request that tries to set them is told, not ignored, so that a
    // connector learns people move through their Users.
    if member(body, "members").and_then(Value::as_array).is_some_and(|m| !m.is_empty()) {
        return Err(ScimError::bad(
            "mutability",
            "members are read-only: a unit's people follow their own records (change a User's orgUnitCode)",
        ));
    }
    Ok(Desired { name, external_id })
}

async fn respond(scim: &Scim, tx: &mut Tx, id: &str, status: StatusCode) -> Result<ScimResponse, ScimError> {
    let record = load(tx, id).await?.ok_or_else(|| ScimError::not_found("Group"))?;
    let members = members(&mut **tx, scim, id).await?;
    Ok(ScimResponse::resource(status, to_json(scim, &record, Some(members))))
}

pub async fn create(State(app): State<App>, scim: Scim, ScimJson(body): ScimJson) -> Result<ScimResponse, ScimError> {
    let wanted = desired(&body)?;
    let now = app.clock.now();
    let actor = scim.actor();
    let code = wanted
        .external_id
        .as_deref()
        .and_then(|e| EmployeeNumber::parse(e).ok())
        .map(|c| c.as_str().to_owned())
        .unwrap_or_else(|| format!("G-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]).to_ascii_uppercase());
    let mut tx = app.store.begin().await?;
    let unit = directory::create_org_unit(
        &mut tx,
        &actor,
        now,
        NewOrgUnit { code, name: wanted.name.clone(), name_en: None, level: "department".into(), parent_id: None },
    )
    .await?;
    directory::update_org_unit(&mut tx, &actor, now, &unit.id, &wanted.name, wanted.external_id.as_deref()).await?;
    let response = respond(&scim, &mut tx, &unit.id, StatusCode::CREATED).await?;
    tx.commit().await?;
    Ok(response)
}

pub async fn get(
    State(app): State<App>,
    scim: Scim,
    Path(id): Path<String>,
    params: query::QueryParams,
) -> Result<ScimResponse, ScimError> {
    let projection = params.projection()?;
    let mut tx = app.store.begin().await?;
    let response = respond(&scim, &mut tx, &id, StatusCode::OK).await?;
    tx.commit().await?;
    let ScimResponse { status, body, etag, location } = response;
    Ok(ScimResponse { status, body: projection.apply(body, GROUP), etag, location })
}

async fn change(
    app: &App,
    scim: &Scim,
    id: &str,
    update: impl FnOnce(Value) -> Result<Value, ScimError>,
) -> Result<ScimResponse, ScimError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let record = load(&mut tx, id).await?.ok_or_else(|| ScimError::not_found("Group"))?;
    let members = members(&mut *tx, scim, id).await?;
    let current = to_json(scim, &record, Some(members.clone()));
    check_if_match(scim, current.pointer("/meta/version").and_then(Value::as_str).unwrap_or_default())?;
    let mut wanted_body = update(current)?;
    // The members in the result are the ones there were (a PUT need not repeat them).
    if let Some(fields) = wanted_body.as_object_mut() {
        fields.remove("members");
    }
    let wanted = desired(&wanted_body)?;
    if wanted.name != record.name || wanted.external_id != record.external_id {
        directory::update_org_unit(&mut tx, &scim.actor(), now, id, &wanted.name, wanted.external_id.as_deref())
            .await?;
    }
    let response = respond(scim, &mut tx, id, StatusCode::OK).await?;
    tx.commit().await?;
    Ok(response)
}

pub async fn replace(
    State(app): State<App>,
    scim: Scim,
    Path(id): Path<String>,
    ScimJson(body): ScimJson,
) -> Result<ScimResponse, ScimError> {
    // Members sent in a PUT must be the ones the unit has: anything else is a change of
    // membership, which is read-only.
    change(&app, &scim, &id, |current| {
        let sent: Vec<&str> = member(&body, "members")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(|m| member(m, "value").and_then(Value::as_str)).collect())
            .unwrap_or_default();
        let have: Vec<&str> = current
            .get("members")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(|m| m.get("value").and_then(Value::as_str)).collect())
            .unwrap_or_default();
        if !sent.is_empty() && (sent.len() != have.len() || sent.iter().any(|s| !have.contains(s))) {
            return Err(ScimError::bad("mutability", "members are read-only: change a User's orgUnitCode"));
        }
        let mut body = body.clone();
        if let Some(fields) = body.as_object_mut() {
            fields.remove("members");
        }
        Ok(body)
    })
    .await
}

pub async fn modify(
    State(app): State<App>,
    scim: Scim,
    Path(id): Path<String>,
    ScimJson(body): ScimJson,
) -> Result<ScimResponse, ScimError> {
    let operations = super::patch::parse(&body)?;
    change(&app, &scim, &id, |current| super::patch::apply(current, &operations, &super::patch::GROUP_RULES)).await
}

/// DELETE: the unit is closed (kept for the records that name it); refused while people work in it.
pub async fn delete(State(app): State<App>, scim: Scim, Path(id): Path<String>) -> Result<StatusCode, ScimError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let record = load(&mut tx, &id).await?.ok_or_else(|| ScimError::not_found("Group"))?;
    let members = members(&mut *tx, &scim, &id).await?;
    check_if_match(
        &scim,
        to_json(&scim, &record, Some(members)).pointer("/meta/version").and_then(Value::as_str).unwrap_or_default(),
    )?;
    directory::close_org_unit(&mut tx, &scim.actor(), now, &id).await.map_err(|e| match e {
        directory::DirectoryError::Conflict(detail) => ScimError::new(StatusCode::CONFLICT, None, detail),
        other => other.into(),
    })?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(State(app): State<App>, scim: Scim, params: query::QueryParams) -> Result<ScimResponse, ScimError> {
    let params = params.list()?;
    run_list(&app, &scim, params).await
}

pub async fn search(State(app): State<App>, scim: Scim, ScimJson(body): ScimJson) -> Result<ScimResponse, ScimError> {
    let params = ListParams::from_search_request(&body)?;
    run_list(&app, &scim, params).await
}

async fn run_list(app: &App, scim: &Scim, params: ListParams) -> Result<ScimResponse, ScimError> {
    let page = query::groups(app, &params).await?;
    let with_members = params.projection.wants("members");
    let mut resources = Vec::new();
    for record in &page.records {
        let members = if with_members { Some(members(app.store.pool(), scim, &record.id).await?) } else { None };
        resources.push(params.projection.apply(to_json(scim, record, members), GROUP));
    }
    Ok(ScimResponse::ok(super::list_response(resources, page.total, params.start_index)))
}
