//! SCIM Users: the people of the directory. A request's wishes become lifecycle changes
//! (`hr::changes`), applied at once or recorded for the date of the `Sekimori-Effective-Date`
//! header; identifiers (login ID, employee number, externalId) change at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use sqlx::Row;
use time::Date;

use super::error::ScimError;
use super::query::{self, ListParams};
use super::{check_if_match, member, version_of, Scim, ScimJson, ScimResponse, ENTERPRISE_USER, SEKIMORI_USER, USER};
use crate::audit::Event;
use crate::clock::UnixTime;
use crate::directory::types::parse_email;
use crate::directory::updates::{self, Attributes};
use crate::directory::{self, today_in_japan, EmployeeNumber, LoginId, PersonKind};
use crate::hr::batches;
use crate::hr::changes::{self, Action, Change, Joiner};
use crate::store::Tx;
use crate::App;

/// A person as the SCIM service shows them.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub employee_number: String,
    pub external_id: Option<String>,
    pub login_id: Option<String>,
    pub family_name: String,
    pub given_name: String,
    pub email: Option<String>,
    pub kind: String,
    pub status: String,
    pub unit: Option<Unit>,
    pub posts: Vec<Unit>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub id: String,
    pub code: String,
    pub name: String,
}

/// The columns every User query selects (people `p`, accounts `a`, primary unit `o`).
pub const USER_FROM: &str = "FROM people p LEFT JOIN accounts a ON a.person_id = p.id \
     LEFT JOIN org_units o ON o.id = p.org_unit_id";
pub const USER_COLUMNS: &str = "p.id, p.employee_number, p.external_id, p.family_name, p.given_name, p.email, \
     p.kind, p.status, p.created_at, p.updated_at, a.login_id, o.id AS unit_id, o.code AS unit_code, \
     o.name AS unit_name";

pub fn record_from_row(row: &sqlx::any::AnyRow) -> Result<UserRecord, sqlx::Error> {
    let unit_id: Option<String> = row.try_get("unit_id")?;
    let unit = match unit_id {
        Some(id) => Some(Unit { id, code: row.try_get("unit_code")?, name: row.try_get("unit_name")? }),
        None => None,
    };
    Ok(UserRecord {
        id: row.try_get("id")?,
        employee_number: row.try_get("employee_number")?,
        external_id: row.try_get("external_id")?,
        login_id: row.try_get("login_id")?,
        family_name: row.try_get("family_name")?,
        given_name: row.try_get("given_name")?,
        email: row.try_get("email")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        unit,
        posts: Vec::new(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Fills in the open concurrent posts of `records`, in one query.
pub async fn with_posts<'e, E>(executor: E, mut records: Vec<UserRecord>) -> Result<Vec<UserRecord>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    if records.is_empty() {
        return Ok(records);
    }
    let placeholders: Vec<String> = (1..=records.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT pp.person_id, o.id, o.code, o.name FROM person_posts pp JOIN org_units o ON o.id = pp.org_unit_id
         WHERE pp.end_date IS NULL AND pp.person_id IN ({}) ORDER BY pp.start_date, o.code",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for record in &records {
        q = q.bind(record.id.clone());
    }
    for row in q.fetch_all(executor).await? {
        let person_id: String = row.try_get("person_id")?;
        let unit = Unit { id: row.try_get("id")?, code: row.try_get("code")?, name: row.try_get("name")? };
        if let Some(record) = records.iter_mut().find(|r| r.id == person_id) {
            record.posts.push(unit);
        }
    }
    Ok(records)
}

/// The person with SCIM id `id`, unless the feed deleted them.
pub async fn load(tx: &mut Tx, id: &str) -> Result<Option<UserRecord>, ScimError> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} {USER_FROM} WHERE p.id = $1 AND p.scim_deleted_at IS NULL"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let record = record_from_row(&row)?;
    Ok(with_posts(&mut **tx, vec![record]).await?.into_iter().next())
}

/// SCIM's dateTime (xsd:dateTime): RFC 3339 in UTC.
pub fn rfc3339(at: UnixTime) -> String {
    crate::clock::utc_rfc3339(at)
}

/// The User resource of `record`, with its meta (and so its version).
pub fn to_json(scim: &Scim, record: &UserRecord) -> Value {
    let mut user = Map::new();
    user.insert("schemas".into(), json!([USER, ENTERPRISE_USER, SEKIMORI_USER]));
    user.insert("id".into(), record.id.clone().into());
    if let Some(external_id) = &record.external_id {
        user.insert("externalId".into(), external_id.clone().into());
    }
    if let Some(login_id) = &record.login_id {
        user.insert("userName".into(), login_id.clone().into());
    }
    user.insert("name".into(), json!({"familyName": record.family_name, "givenName": record.given_name}));
    user.insert("displayName".into(), format!("{} {}", record.family_name, record.given_name).into());
    user.insert("active".into(), (record.status != "retired").into());
    if let Some(email) = &record.email {
        user.insert("emails".into(), json!([{"value": email}]));
    }
    let mut groups = Vec::new();
    if let Some(unit) = &record.unit {
        groups.push(group_ref(scim, unit, "primary"));
    }
    groups.extend(record.posts.iter().map(|unit| group_ref(scim, unit, "concurrent")));
    if !groups.is_empty() {
        user.insert("groups".into(), groups.into());
    }
    user.insert(ENTERPRISE_USER.into(), json!({"employeeNumber": record.employee_number}));
    let mut sekimori = Map::new();
    if let Some(unit) = &record.unit {
        sekimori.insert("orgUnitCode".into(), unit.code.clone().into());
    }
    sekimori.insert("kind".into(), record.kind.clone().into());
    if !record.posts.is_empty() {
        let posts: Vec<Value> = record.posts.iter().map(|unit| json!({"orgUnitCode": unit.code})).collect();
        sekimori.insert("posts".into(), posts.into());
    }
    user.insert(SEKIMORI_USER.into(), sekimori.into());
    let mut user = Value::Object(user);
    let version = version_of(&user);
    if let Some(fields) = user.as_object_mut() {
        fields.insert(
            "meta".into(),
            json!({
                "resourceType": "User",
                "created": rfc3339(record.created_at),
                "lastModified": rfc3339(record.updated_at.max(record.created_at)),
                "location": scim.url(&format!("/Users/{}", record.id)),
                "version": version,
            }),
        );
    }
    user
}

fn group_ref(scim: &Scim, unit: &Unit, kind: &str) -> Value {
    json!({"value": unit.id, "$ref": scim.url(&format!("/Groups/{}", unit.id)), "display": unit.name, "type": kind})
}

/// What a request says the person should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// None only for a person who has no account yet and is not given one.
    pub login_id: Option<LoginId>,
    pub family_name: String,
    pub given_name: String,
    /// None: not said (kept on a replace, true on a create).
    pub active: Option<bool>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub employee_number: EmployeeNumber,
    /// None only for a person who has no unit and is not given one.
    pub org_unit_code: Option<String>,
    pub kind: PersonKind,
    pub posts: Vec<String>,
}

fn text<'a>(value: &'a Value, what: &str) -> Result<&'a str, ScimError> {
    value.as_str().ok_or_else(|| ScimError::invalid_value(format!("{what} must be a string")))
}

/// `true`, `false`, or the strings "True"/"False" some HR connectors send.
pub fn boolean(value: &Value, what: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!("{what} must be true or false"))),
    }
}

fn invalid(e: directory::InvalidField) -> ScimError {
    ScimError::invalid_value(e.to_string())
}

impl Desired {
    /// Reads a User resource body. Read-only attributes (id, meta, displayName, groups) are
    /// ignored, as RFC 7643 §2.2 asks; a wrong type or value is `invalidValue`.
    pub fn parse(body: &Value) -> Result<Desired, ScimError> {
        let login_id = member(body, "userName")
            .map(|v| text(v, "userName").and_then(|v| LoginId::parse(v).map_err(invalid)))
            .transpose()?;
        let name = member(body, "name").ok_or_else(|| ScimError::invalid_value("name is required"))?;
        let part = |field: &'static str, attr: &str| -> Result<String, ScimError> {
            let value =
                member(name, attr).ok_or_else(|| ScimError::invalid_value(format!("name.{attr} is required")))?;
            directory::types::parse_name(field, text(value, &format!("name.{attr}"))?).map_err(invalid)
        };
        let family_name = part("family_name", "familyName")?;
        let given_name = part("given_name", "givenName")?;
        let active = member(body, "active").map(|v| boolean(v, "active")).transpose()?;
        let email = match member(body, "emails") {
            None => None,
            Some(Value::Array(emails)) => {
                let chosen = emails
                    .iter()
                    .find(|e| {
                        member(e, "primary").map(|p| boolean(p, "emails.primary")).transpose().ok().flatten()
                            == Some(true)
                    })
                    // Without a primary, the last: a PATCH `add` appends the new address.
                    .or_else(|| emails.last());
                match chosen {
                    None => None,
                    Some(email) => {
                        let value = member(email, "value")
                            .ok_or_else(|| ScimError::invalid_value("emails.value is required"))?;
                        Some(parse_email(text(value, "emails.value")?).map_err(invalid)?)
                    }
                }
            }
            Some(_) => return Err(ScimError::invalid_value("emails must be an array")),
        };
        let external_id = match member(body, "externalId") {
            None => None,
            Some(value) => {
                let value = text(value, "externalId")?.trim();
                if value.is_empty() || value.chars().count() > 255 || value.chars().any(char::is_control) {
                    return Err(ScimError::invalid_value(
                        "externalId must be 1 to 255 characters, no control characters",
                    ));
                }
                Some(value.to_owned())
            }
        };
        let enterprise = member(body, ENTERPRISE_USER);
        let employee_number = match enterprise.and_then(|e| member(e, "employeeNumber")).or(member(body, "externalId"))
        {
            Some(value) => EmployeeNumber::parse(text(value, "employeeNumber")?).map_err(invalid)?,
            None => {
                return Err(ScimError::invalid_value(format!(
                    "{ENTERPRISE_USER}:employeeNumber is required: Sekimori knows people by their employee number"
                )))
            }
        };
        let sekimori = member(body, SEKIMORI_USER)
            .ok_or_else(|| ScimError::invalid_value(format!("{SEKIMORI_USER} is required (orgUnitCode, kind)")))?;
        let org_unit_code =
            member(sekimori, "orgUnitCode").map(|v| text(v, "orgUnitCode").map(|c| c.trim().to_owned())).transpose()?;
        let kind = member(sekimori, "kind")
            .ok_or_else(|| ScimError::invalid_value(format!("{SEKIMORI_USER}:kind is required")))
            .and_then(|v| text(v, "kind"))
            .and_then(|v| PersonKind::parse(v.trim()).map_err(invalid))?;
        let mut posts = Vec::new();
        match member(sekimori, "posts") {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let code = member(item, "orgUnitCode")
                        .ok_or_else(|| ScimError::invalid_value("posts.orgUnitCode is required"))
                        .and_then(|v| text(v, "posts.orgUnitCode"))?
                        .trim()
                        .to_owned();
                    if !posts.contains(&code) {
                        posts.push(code);
                    }
                }
            }
            Some(_) => return Err(ScimError::invalid_value("posts must be an array")),
        }
        Ok(Desired {
            login_id,
            family_name,
            given_name,
            active,
            email,
            external_id,
            employee_number,
            org_unit_code,
            kind,
            posts,
        })
    }
}

/// Makes the changes a request's lifecycle wishes need: at once, or recorded for their date.
struct Writer<'a> {
    app: &'a App,
    scim: &'a Scim,
    now: UnixTime,
    date: Date,
    /// A date after today: record, do not apply.
    later: bool,
    employee_number: EmployeeNumber,
    /// The held batch a change went to, when the feed's valve held one.
    held: Option<String>,
}

impl Writer<'_> {
    fn new<'a>(app: &'a App, scim: &'a Scim, employee_number: EmployeeNumber) -> Writer<'a> {
        let now = app.clock.now();
        let today = today_in_japan(now);
        let date = scim.effective_date.unwrap_or(today);
        Writer { app, scim, now, date, later: date > today, employee_number, held: None }
    }

    /// A DELETE is not dated: the leave takes effect now, whatever the header says.
    fn undated(mut self) -> Self {
        self.date = today_in_japan(self.now);
        self.later = false;
        self
    }

    async fn change(&mut self, tx: &mut Tx, action: Action) -> Result<(), ScimError> {
        let change = Change {
            employee_number: self.employee_number.clone(),
            effective_date: self.date,
            source: self.scim.source(),
            action,
        };
        let actor = self.scim.actor();
        // The feed's safety valve: too many people taken out of work or moved in a day, and the
        // change waits for an administrator instead.
        let feed = format!("scim:{}", self.scim.caller.token_id().unwrap_or("console"));
        if let Some(batch) =
            batches::hold_feed_change(tx, &actor, self.now, &self.app.config.hr, &feed, &change, !self.later).await?
        {
            self.held = Some(batch);
            return Ok(());
        }
        // A join is applied at once even when dated later: the person exists from now, and their
        // start date keeps them from logging in before the day.
        if self.later && !matches!(change.action, Action::Join(_)) {
            changes::record(tx, &actor, self.now, &self.app.config.hr, &change).await?;
        } else {
            changes::record_and_apply(tx, &actor, self.now, &self.app.config.hr, &change).await?;
        }
        Ok(())
    }
}

/// The concurrent posts `desired` wants that `current` lacks, and the ones it no longer wants.
fn post_changes(current: &[Unit], desired: &[String]) -> (Vec<String>, Vec<String>) {
    let add = desired.iter().filter(|code| !current.iter().any(|u| &u.code == *code)).cloned().collect();
    let end = current.iter().filter(|u| !desired.contains(&u.code)).map(|u| u.code.clone()).collect();
    (add, end)
}

/// Makes the person `record` into what `desired` says, in `tx`. Returns the held batch when the
/// feed's safety valve held part of it.
async fn reconcile(
    app: &App,
    scim: &Scim,
    tx: &mut Tx,
    record: &UserRecord,
    desired: &Desired,
) -> Result<Option<String>, ScimError> {
    let now = app.clock.now();
    let actor = scim.actor();
    // Identifiers first, at once: they are how everything else finds the person.
    let mut identifiers = Vec::new();
    if desired.employee_number.as_str() != record.employee_number {
        updates::set_employee_number(tx, &record.id, &record.employee_number, &desired.employee_number, now).await?;
        identifiers.push("employee_number");
    }
    if desired.external_id != record.external_id {
        updates::set_external_id(tx, &record.id, desired.external_id.as_deref(), now).await?;
        identifiers.push("external_id");
    }
    if let Some(login_id) = desired.login_id.as_ref().filter(|l| record.login_id.as_deref() != Some(l.as_str())) {
        if record.login_id.is_some() {
            updates::set_login_id(tx, &record.id, login_id).await?;
        } else {
            directory::create_account(tx, &actor, now, &record.id, login_id, None).await?;
        }
        identifiers.push("login_id");
    }
    if !identifiers.is_empty() {
        Event::success(
            &actor,
            "person.identifiers",
            format!("person:{}", record.id),
            json!({"fields": identifiers, "source": scim.source()}),
        )
        .record(tx, now)
        .await?;
    }
    let mut writer = Writer::new(app, scim, desired.employee_number.clone());
    let retired = record.status == "retired";
    if retired && desired.active == Some(true) {
        // Appointed again: the same record and login ID (R1).
        writer.change(tx, Action::Join(joiner(desired, writer.date))).await?;
        for code in &desired.posts {
            writer.change(tx, Action::AddPost { org_unit_code: code.clone() }).await?;
        }
        return Ok(writer.held);
    }
    let attributes = Attributes {
        family_name: Some(desired.family_name.clone()).filter(|n| *n != record.family_name),
        given_name: Some(desired.given_name.clone()).filter(|n| *n != record.given_name),
        email: desired.email.clone().filter(|e| Some(e) != record.email.as_ref()),
        remove_email: desired.email.is_none() && record.email.is_some(),
        kind: Some(desired.kind).filter(|k| k.as_str() != record.kind),
        ..Attributes::default()
    };
    if attributes != Attributes::default() {
        writer.change(tx, Action::Update(attributes)).await?;
    }
    if let Some(code) = desired.org_unit_code.as_ref().filter(|c| record.unit.as_ref().map(|u| &u.code) != Some(*c)) {
        writer.change(tx, Action::Move { org_unit_code: code.clone() }).await?;
    }
    let (add, end) = post_changes(&record.posts, &desired.posts);
    for code in end {
        writer.change(tx, Action::EndPost { org_unit_code: code }).await?;
    }
    for code in add {
        writer.change(tx, Action::AddPost { org_unit_code: code }).await?;
    }
    if desired.active == Some(false) && !retired {
        writer.change(tx, Action::Leave).await?;
    }
    Ok(writer.held)
}

/// A joiner (or a person appointed again) from `date`. A fixed-term kind from a feed that
/// sends no end date ends with the fiscal year, the longest a 会計年度任用 appointment runs.
fn joiner(desired: &Desired, date: Date) -> Joiner {
    Joiner {
        family_name: desired.family_name.clone(),
        given_name: desired.given_name.clone(),
        family_name_kana: String::new(),
        given_name_kana: String::new(),
        birth_date: None,
        kind: desired.kind,
        org_unit_code: desired.org_unit_code.clone(),
        email: desired.email.clone(),
        end_date: desired.kind.requires_end_date().then(|| changes::fiscal_year_end(date)),
        login_id: desired.login_id.as_ref().map(|l| l.as_str().to_owned()),
    }
}

/// The SCIM id of the person with `employee_number`, whatever their state.
async fn person_id_of(
    tx: &mut Tx,
    employee_number: &EmployeeNumber,
) -> Result<Option<(String, String, bool)>, ScimError> {
    let row = sqlx::query("SELECT id, status, scim_deleted_at FROM people WHERE employee_number = $1")
        .bind(employee_number.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(row) => {
            let deleted: Option<UnixTime> = row.try_get("scim_deleted_at")?;
            Some((row.try_get("id")?, row.try_get("status")?, deleted.is_some()))
        }
        None => None,
    })
}

async fn respond(scim: &Scim, tx: &mut Tx, id: &str, status: StatusCode) -> Result<ScimResponse, ScimError> {
    let record = load(tx, id).await?.ok_or_else(|| ScimError::not_found("User"))?;
    Ok(ScimResponse::resource(status, to_json(scim, &record)))
}

pub async fn create(State(app): State<App>, scim: Scim, ScimJson(body): ScimJson) -> Result<ScimResponse, ScimError> {
    let desired = Desired::parse(&body)?;
    // A new person needs a login ID and a unit; a person already known keeps what they have.
    if desired.login_id.is_none() {
        return Err(ScimError::invalid_value("userName is required"));
    }
    if desired.org_unit_code.is_none() {
        return Err(ScimError::invalid_value(format!("{SEKIMORI_USER}:orgUnitCode is required")));
    }
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let held;
    let id = match person_id_of(&mut tx, &desired.employee_number).await? {
        Some((id, status, deleted)) => {
            // An employed person is another's record, unless the feed deleted them itself (its
            // deletion held by the safety valve and then discarded): then it sends them again.
            if status != "retired" && !deleted {
                return Err(ScimError::uniqueness(format!(
                    "a person with employee number {} exists (id {id}): change them with PUT or PATCH",
                    desired.employee_number.as_str()
                )));
            }
            // A person who left comes back (再任用, a new fixed term): the same record and ID.
            if deleted {
                updates::set_scim_deleted(&mut tx, &id, None).await?;
            }
            let record = load(&mut tx, &id).await?.ok_or_else(|| ScimError::not_found("User"))?;
            let desired = Desired { active: Some(desired.active.unwrap_or(true)), ..desired.clone() };
            held = reconcile(&app, &scim, &mut tx, &record, &desired).await?;
            id
        }
        None => {
            let mut writer = Writer::new(&app, &scim, desired.employee_number.clone());
            writer.change(&mut tx, Action::Join(joiner(&desired, writer.date))).await?;
            let (id, _, _) = person_id_of(&mut tx, &desired.employee_number)
                .await?
                .ok_or_else(|| ScimError::internal("the joiner was not created"))?;
            if let Some(external_id) = &desired.external_id {
                updates::set_external_id(&mut tx, &id, Some(external_id), now).await?;
            }
            for code in &desired.posts {
                writer.change(&mut tx, Action::AddPost { org_unit_code: code.clone() }).await?;
            }
            if desired.active == Some(false) {
                // Created as someone who has left: the record exists, nothing of it can log in.
                writer.change(&mut tx, Action::Leave).await?;
            }
            held = writer.held;
            id
        }
    };
    let response = respond(&scim, &mut tx, &id, status_for(StatusCode::CREATED, &held)).await?;
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
    let record = load(&mut tx, &id).await?.ok_or_else(|| ScimError::not_found("User"))?;
    tx.commit().await?;
    let user = to_json(&scim, &record);
    Ok(ScimResponse::resource(StatusCode::OK, projection.apply(user, USER)))
}

/// PUT: the resource becomes what the body says.
pub async fn replace(
    State(app): State<App>,
    scim: Scim,
    Path(id): Path<String>,
    ScimJson(body): ScimJson,
) -> Result<ScimResponse, ScimError> {
    let mut tx = app.store.begin().await?;
    let record = load(&mut tx, &id).await?.ok_or_else(|| ScimError::not_found("User"))?;
    check_if_match(&scim, &version_of_record(&scim, &record))?;
    let desired = Desired::parse(&body)?;
    let held = reconcile(&app, &scim, &mut tx, &record, &desired).await?;
    let response = respond(&scim, &mut tx, &id, status_for(StatusCode::OK, &held)).await?;
    tx.commit().await?;
    Ok(response)
}

/// 202 instead of `done` when the feed's safety valve held part of the request: the answer is
/// the resource as it is, without what waits for an administrator.
fn status_for(done: StatusCode, held: &Option<String>) -> StatusCode {
    if held.is_some() {
        StatusCode::ACCEPTED
    } else {
        done
    }
}

fn version_of_record(scim: &Scim, record: &UserRecord) -> String {
    to_json(scim, record).pointer("/meta/version").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// PATCH: the operations are applied to the resource as it is, and the result replaces it.
pub async fn modify(
    State(app): State<App>,
    scim: Scim,
    Path(id): Path<String>,
    ScimJson(body): ScimJson,
) -> Result<ScimResponse, ScimError> {
    let operations = super::patch::parse(&body)?;
    let mut tx = app.store.begin().await?;
    let record = load(&mut tx, &id).await?.ok_or_else(|| ScimError::not_found("User"))?;
    let current = to_json(&scim, &record);
    check_if_match(&scim, current.pointer("/meta/version").and_then(Value::as_str).unwrap_or_default())?;
    let patched = super::patch::apply(current, &operations, &super::patch::USER_RULES)?;
    let desired = Desired::parse(&patched)?;
    let held = reconcile(&app, &scim, &mut tx, &record, &desired).await?;
    let response = respond(&scim, &mut tx, &id, status_for(StatusCode::OK, &held)).await?;
    tx.commit().await?;
    Ok(response)
}

/// DELETE: the person leaves at once, and their resource is gone from the feed's view; the
/// person record, their history and their login ID stay (R1: an ID is never given to another).
pub async fn delete(State(app): State<App>, scim: Scim, Path(id): Path<String>) -> Result<StatusCode, ScimError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let record = load(&mut tx, &id).await?.ok_or_else(|| ScimError::not_found("User"))?;
    check_if_match(&scim, &version_of_record(&scim, &record))?;
    let employee_number = EmployeeNumber::parse(&record.employee_number).map_err(invalid)?;
    let mut held = None;
    if record.status != "retired" {
        let mut writer = Writer::new(&app, &scim, employee_number).undated();
        writer.change(&mut tx, Action::Leave).await?;
        held = writer.held;
    }
    // Gone from the feed's view even while the feed's safety valve holds the leave: the feed
    // sent its deletion. If an administrator discards the batch, the person stays employed,
    // and the feed can send them again (a POST finds them).
    updates::set_scim_deleted(&mut tx, &id, Some(now)).await?;
    Event::success(
        &scim.actor(),
        "person.scim_delete",
        format!("person:{id}"),
        json!({"source": scim.source(), "held_in_batch": held}),
    )
    .record(&mut tx, now)
    .await?;
    if held.is_some() {
        tx.commit().await?;
        return Ok(StatusCode::ACCEPTED);
    }
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
    let page = query::users(app, &params).await?;
    let resources = page.records.iter().map(|r| params.projection.apply(to_json(scim, r), USER)).collect();
    Ok(ScimResponse::ok(super::list_response(resources, page.total, params.start_index)))
}
