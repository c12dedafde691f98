//! The HR lifecycle (R2): effective-dated changes to people — join, update, move, concurrent
//! posts (兼務), suspend, return, leave — recorded as they arrive from any source (a CSV line, a
//! SCIM request) and applied by ONE [`apply`] when they take effect.
//!
//! The rules, so that a change arriving early, late, twice or out of order gives one result:
//! - **When**: a change takes effect at 00:00 Japan time on its date; a leave or the end of a
//!   concurrent post at the end of its last day (`[hr] leave_cutoff_hour`, 24 by default).
//! - **Order**: due changes of one person are applied by effective instant, endings before
//!   beginnings at the same instant (a leave at the end of March 31 before a re-appointment
//!   at 00:00 on April 1).
//! - **Replay**: a change equal to the newest one recorded for the same person, kind, aspect
//!   and date is not recorded again.
//! - **Correction**: a different one replaces a pending change of the same person, kind,
//!   aspect and date (the old one is kept, `superseded`, pointing to its replacement).
//! - **Late arrival**: a change older than one already applied to the same aspect of the person
//!   (status, unit, attributes, one concurrent post) is kept as `superseded`, never applied: the
//!   newer state stands.
//! - **Returning person** (再任用, re-appointed fixed-term staff): a join whose employee number
//!   exists reuses that person record and login ID (R1). Their account is opened again with
//!   its old password withdrawn; they set a new one through a reset link, as a joiner does.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::Date;

use crate::audit::{Actor, Event};
use crate::clock::{UnixTime, JAPAN};
use crate::config::HrConfig;
use crate::directory::types::{format_date, parse_date, parse_email, parse_kana, parse_name};
use crate::directory::updates::{self, Attributes, Reappointment};
use crate::directory::{DirectoryError, EmployeeNumber, InvalidField, LoginId, NewPerson, PersonKind, PersonStatus};
use crate::revocation::{self, Target};
use crate::store::{batch_query, in_json_array, Dialect, JsonArrayOf, Store, Tx};

/// What kind of change, as stored in `person_changes.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Join,
    Update,
    Move,
    AddPost,
    EndPost,
    Suspend,
    Return,
    Leave,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Join => "join",
            ChangeKind::Update => "update",
            ChangeKind::Move => "move",
            ChangeKind::AddPost => "add_post",
            ChangeKind::EndPost => "end_post",
            ChangeKind::Suspend => "suspend",
            ChangeKind::Return => "return",
            ChangeKind::Leave => "leave",
        }
    }

    /// Whether the change ends something, and so takes effect at the end of its date.
    fn is_ending(self) -> bool {
        matches!(self, ChangeKind::Leave | ChangeKind::EndPost)
    }
}

/// A joiner, or a returning person's new appointment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Joiner {
    pub family_name: String,
    pub given_name: String,
    /// The reading in kana; empty when the source has none (a SCIM feed).
    #[serde(default)]
    pub family_name_kana: String,
    #[serde(default)]
    pub given_name_kana: String,
    #[serde(default, with = "optional_date", skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<Date>,
    pub kind: PersonKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_unit_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The last day of a fixed-term appointment.
    #[serde(default, with = "optional_date", skip_serializing_if = "Option::is_none")]
    pub end_date: Option<Date>,
    /// The login ID of a new person's account (created without a password). A returning
    /// person keeps theirs, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
}

/// What a change does; stored as its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Action {
    Join(Joiner),
    Update(Attributes),
    Move { org_unit_code: String },
    AddPost { org_unit_code: String },
    EndPost { org_unit_code: String },
    Suspend,
    Return,
    Leave,
}

impl Action {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Action::Join(_) => ChangeKind::Join,
            Action::Update(_) => ChangeKind::Update,
            Action::Move { .. } => ChangeKind::Move,
            Action::AddPost { .. } => ChangeKind::AddPost,
            Action::EndPost { .. } => ChangeKind::EndPost,
            Action::Suspend => ChangeKind::Suspend,
            Action::Return => ChangeKind::Return,
            Action::Leave => ChangeKind::Leave,
        }
    }

    /// The part of the person the change sets, for corrections and late arrivals.
    fn aspect(&self) -> String {
        match self {
            Action::Join(_) | Action::Suspend | Action::Return | Action::Leave => "status".into(),
            Action::Move { .. } => "unit".into(),
            Action::Update(_) => "attributes".into(),
            Action::AddPost { org_unit_code } | Action::EndPost { org_unit_code } => format!("post:{org_unit_code}"),
        }
    }

    /// Every aspect the change writes: a join also sets the unit and the attributes.
    fn aspects_written(&self) -> Vec<String> {
        match self {
            Action::Join(_) => vec!["status".into(), "unit".into(), "attributes".into()],
            other => vec![other.aspect()],
        }
    }

    /// Checks every field, so that a bad change is refused when it arrives, not when it is due.
    fn check(&self) -> Result<(), InvalidField> {
        match self {
            Action::Join(joiner) => {
                parse_name("family_name", &joiner.family_name)?;
                parse_name("given_name", &joiner.given_name)?;
                if !joiner.family_name_kana.is_empty() || !joiner.given_name_kana.is_empty() {
                    parse_kana("family_name_kana", &joiner.family_name_kana)?;
                    parse_kana("given_name_kana", &joiner.given_name_kana)?;
                }
                if let Some(email) = &joiner.email {
                    parse_email(email)?;
                }
                if let Some(code) = &joiner.org_unit_code {
                    check_unit_code(code)?;
                }
                if let Some(login_id) = &joiner.login_id {
                    LoginId::parse(login_id)?;
                }
                if joiner.kind.requires_end_date() && joiner.end_date.is_none() {
                    let reason = format!("required for kind {}", joiner.kind.as_str());
                    return Err(InvalidField { field: "end_date", reason });
                }
            }
            Action::Update(attributes) => {
                if *attributes == Attributes::default() {
                    return Err(InvalidField { field: "update", reason: "changes nothing".into() });
                }
                attributes.family_name.as_deref().map(|v| parse_name("family_name", v)).transpose()?;
                attributes.given_name.as_deref().map(|v| parse_name("given_name", v)).transpose()?;
                attributes.family_name_kana.as_deref().map(|v| parse_kana("family_name_kana", v)).transpose()?;
                attributes.given_name_kana.as_deref().map(|v| parse_kana("given_name_kana", v)).transpose()?;
                attributes.email.as_deref().map(parse_email).transpose()?;
            }
            Action::Move { org_unit_code } | Action::AddPost { org_unit_code } | Action::EndPost { org_unit_code } => {
                check_unit_code(org_unit_code)?;
            }
            Action::Suspend | Action::Return | Action::Leave => {}
        }
        Ok(())
    }
}

fn check_unit_code(code: &str) -> Result<(), InvalidField> {
    // Org unit codes follow the employee number's alphabet (see `create_org_unit`).
    EmployeeNumber::parse(code).map(|_| ()).map_err(|_| InvalidField {
        field: "org_unit_code",
        reason: "must be 1 to 64 ASCII letters, digits or '-'".into(),
    })
}

/// One change to one person, from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub employee_number: EmployeeNumber,
    /// The date HR gave, in Japan: the first day of what begins, the last day of what ends.
    pub effective_date: Date,
    /// Where it came from: `csv:FILE:LINE`, `scim:REQUEST_ID`…
    pub source: String,
    pub action: Action,
}

/// The instant a change of `kind` dated `date` takes effect: 00:00 Japan time on the date, or
/// for an ending, `leave_cutoff_hour` hours after it (24: the end of the last day).
pub fn effective_at(kind: ChangeKind, date: Date, config: &HrConfig) -> UnixTime {
    let midnight = date.midnight().assume_offset(JAPAN).unix_timestamp();
    if kind.is_ending() {
        midnight + i64::from(config.leave_cutoff_hour) * 3600
    } else {
        midnight
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored as a new pending change.
    New { id: String },
    /// Stored, replacing the pending change `replaced` (now superseded).
    Replaced { id: String, replaced: String },
    /// Equal to the newest change already recorded (pending or applied): nothing stored.
    Unchanged { id: String },
}

impl Recorded {
    pub fn id(&self) -> &str {
        match self {
            Recorded::New { id } | Recorded::Replaced { id, .. } | Recorded::Unchanged { id } => id,
        }
    }
}

fn check_source(source: &str) -> Result<(), InvalidField> {
    if source.is_empty() || source.chars().count() > 200 || source.chars().any(char::is_control) {
        return Err(InvalidField {
            field: "source",
            reason: "must be 1 to 200 characters, no control characters".into(),
        });
    }
    Ok(())
}

/// Records `change` as pending (see the module's rules on replays and corrections), with an
/// audit event of its own.
pub async fn record(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    config: &HrConfig,
    change: &Change,
) -> Result<Recorded, DirectoryError> {
    let recorded = record_in_batch(tx, config, now, change).await?;
    if !matches!(recorded, Recorded::Unchanged { .. }) {
        let replaces = match &recorded {
            Recorded::Replaced { replaced, .. } => Some(replaced.as_str()),
            _ => None,
        };
        Event::success(
            actor,
            "person_change.record",
            format!("person_change:{}", recorded.id()),
            serde_json::json!({
                "employee_number": change.employee_number.as_str(),
                "kind": change.action.kind().as_str(),
                "effective_date": format_date(change.effective_date),
                "source": change.source,
                "replaces": replaces,
            }),
        )
        .record(tx, now)
        .await?;
    }
    Ok(recorded)
}

/// Records `change` as [`record`] does, without an audit event: for a caller that records a
/// whole file or batch and audits it in one event (each change keeps its source in
/// `person_changes`, and is audited again, with its source, when it is applied). One event per
/// file keeps the audit chain's head — which every login and token also needs — free while a
/// large file is recorded.
pub async fn record_in_batch(
    tx: &mut Tx,
    config: &HrConfig,
    now: UnixTime,
    change: &Change,
) -> Result<Recorded, DirectoryError> {
    // A file of one line: the rules are [`record_file`]'s, in one place.
    let mut outcomes = record_file(tx, config, now, std::slice::from_ref(change)).await?;
    match (outcomes.pop(), outcomes.is_empty()) {
        (Some(outcome), true) => outcome,
        _ => Err(sqlx::Error::Protocol("recording one change gave other than one outcome".into()).into()),
    }
}

/// Records the changes of a whole file, in their order (see the module's rules on replays and
/// corrections; a change replays or corrects a line before it as it would a recorded change),
/// without an audit event, in a few statements instead of two per change: the newest change
/// recorded for every person the file names is read in one query,
/// the file's changes are judged against it in memory, and the new rows are written many to an
/// INSERT. On SQLite a file holds the one write lock while it is recorded, so every login and
/// token waits for it: a file of 23,000 changes held it for 3–4 s, two statements a change
/// (BENCHMARKS.md, "April 1"). Returns each change's outcome, in order: a change refused by
/// the lifecycle is an `Err` of its own, and records nothing; an error of the database is the
/// outer one (the caller's transaction is then to be rolled back).
pub async fn record_file(
    tx: &mut Tx,
    config: &HrConfig,
    now: UnixTime,
    changes: &[Change],
) -> Result<Vec<Result<Recorded, DirectoryError>>, sqlx::Error> {
    let prepared: Vec<Result<Prepared<'_>, DirectoryError>> = changes.iter().map(Prepared::of).collect();
    let mut newest = newest_recorded(tx, prepared.iter().filter_map(|p| p.as_ref().ok())).await?;
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut rows: Vec<NewRow<'_>> = Vec::new();
    // (the replaced change, its replacement): each replaced one was pending when read, or is a
    // row of this file.
    let mut superseded: Vec<(String, String)> = Vec::new();
    for (change, prepared) in changes.iter().zip(prepared) {
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                outcomes.push(Err(e));
                continue;
            }
        };
        let key = prepared.key();
        let mut replaced = None;
        if let Some(known) = newest.get(&key) {
            if known.payload == prepared.payload {
                outcomes.push(Ok(Recorded::Unchanged { id: known.id.clone() }));
                continue;
            }
            // An applied change is history: a different one for its date is a new change.
            if known.pending {
                replaced = Some(known.id.clone());
            }
        }
        let id = crate::store::time_ordered_id();
        if let Some(old) = &replaced {
            superseded.push((old.clone(), id.clone()));
        }
        newest.insert(key, Known { id: id.clone(), pending: true, payload: prepared.payload.clone() });
        rows.push(NewRow { change, payload: prepared.payload, id: id.clone() });
        outcomes.push(Ok(match replaced {
            Some(replaced) => Recorded::Replaced { id, replaced },
            None => Recorded::New { id },
        }));
    }
    insert_rows(tx, config, now, &rows).await?;
    // After the inserts: a replacement may be a row of this file, which its foreign key needs.
    supersede_all(tx, &superseded).await?;
    Ok(outcomes)
}

/// A change checked and ready to be recorded.
struct Prepared<'a> {
    change: &'a Change,
    payload: String,
    date: String,
}

/// What identifies the changes that replay or correct one another: the person, the kind, the
/// aspect and the date.
type ChangeKey = (String, String, String, String);

/// The newest pending or applied change recorded for a key.
struct Known {
    id: String,
    /// Pending (it is replaced by a different change), or applied (history).
    pending: bool,
    payload: String,
}

/// A row of `person_changes` about to be written, pending.
struct NewRow<'a> {
    change: &'a Change,
    payload: String,
    id: String,
}

impl<'a> Prepared<'a> {
    fn of(change: &'a Change) -> Result<Self, DirectoryError> {
        check_source(&change.source)?;
        change.action.check()?;
        let payload = serde_json::to_string(&change.action)
            .map_err(|e| InvalidField { field: "payload", reason: e.to_string() })?;
        Ok(Prepared { change, payload, date: format_date(change.effective_date) })
    }

    fn key(&self) -> ChangeKey {
        let kind = self.change.action.kind();
        (
            self.change.employee_number.as_str().to_owned(),
            kind.as_str().to_owned(),
            self.change.action.aspect(),
            self.date.clone(),
        )
    }
}

/// The newest pending or applied change for each key the `changes` have, in one query (per
/// thousand people): the newest by creation time, then by id (ids are time-ordered).
async fn newest_recorded<'a>(
    tx: &mut Tx,
    changes: impl Iterator<Item = &'a Prepared<'a>>,
) -> Result<HashMap<ChangeKey, Known>, sqlx::Error> {
    let mut people = BTreeSet::new();
    let mut dates = BTreeSet::new();
    for prepared in changes {
        people.insert(prepared.change.employee_number.as_str());
        dates.insert(prepared.date.as_str());
    }
    let dialect = tx.dialect();
    let sql = format!(
        "SELECT id, employee_number, kind, aspect, effective_date, status, payload, created_at FROM person_changes
         WHERE {} AND {} AND status IN ('pending', 'applied')",
        in_json_array(dialect, "employee_number", "$1", JsonArrayOf::Text),
        in_json_array(dialect, "effective_date", "$2", JsonArrayOf::Text),
    );
    let dates = serde_json::json!(dates).to_string();
    let people: Vec<&str> = people.into_iter().collect();
    // (created_at, id) of the row kept for each key, to keep the newest.
    let mut newest: HashMap<ChangeKey, (i64, Known)> = HashMap::new();
    for some in people.chunks(1000) {
        let rows = batch_query(dialect, &sql)
            .bind(serde_json::json!(some).to_string())
            .bind(dates.as_str())
            .fetch_all(&mut **tx)
            .await?;
        for row in rows {
            let key = (
                row.try_get("employee_number")?,
                row.try_get("kind")?,
                row.try_get("aspect")?,
                row.try_get("effective_date")?,
            );
            let created_at: i64 = row.try_get("created_at")?;
            let status: String = row.try_get("status")?;
            let known =
                Known { id: row.try_get("id")?, pending: status == "pending", payload: row.try_get("payload")? };
            match newest.get(&key) {
                Some((at, kept)) if (*at, kept.id.as_str()) >= (created_at, known.id.as_str()) => {}
                _ => {
                    newest.insert(key, (created_at, known));
                }
            }
        }
    }
    Ok(newest.into_iter().map(|(key, (_, known))| (key, known)).collect())
}

/// Parameters of a row of [`insert_rows`].
const INSERT_WIDTH: usize = 10;

/// The most rows one INSERT of [`insert_rows`] writes.
const ROWS_PER_INSERT: usize = 100;

/// Writes `rows` as pending changes, [`ROWS_PER_INSERT`] to a statement.
async fn insert_rows(tx: &mut Tx, config: &HrConfig, now: UnixTime, rows: &[NewRow<'_>]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        // The columns not named (person, error, applied_at, superseded_by) are NULL.
        let values = (0..chunk.len())
            .map(|row| {
                let params: Vec<String> = (1..=INSERT_WIDTH).map(|k| format!("${}", row * INSERT_WIDTH + k)).collect();
                format!("({}, 'pending')", params.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO person_changes (id, employee_number, kind, aspect, phase, payload, effective_date,
                 effective_at, source, created_at, status)
             VALUES {values}"
        );
        let mut query = batch_query(tx.dialect(), &sql);
        for row in chunk {
            let change = row.change;
            let kind = change.action.kind();
            query = query
                .bind(row.id.as_str())
                .bind(change.employee_number.as_str())
                .bind(kind.as_str())
                .bind(change.action.aspect())
                .bind(if kind.is_ending() { 0_i64 } else { 1_i64 })
                .bind(row.payload.as_str())
                .bind(format_date(change.effective_date))
                .bind(effective_at(kind, change.effective_date, config))
                .bind(change.source.as_str())
                .bind(now);
        }
        let written = query.execute(&mut **tx).await?.rows_affected();
        if written != chunk.len() as u64 {
            return Err(sqlx::Error::Protocol(format!("recording changes wrote {written} rows, not {}", chunk.len())));
        }
    }
    Ok(())
}

/// Marks each replaced change, if still pending, superseded by its replacement, in one
/// statement for the lot.
async fn supersede_all(tx: &mut Tx, replaced: &[(String, String)]) -> Result<(), sqlx::Error> {
    if replaced.is_empty() {
        return Ok(());
    }
    let pairs: Vec<serde_json::Value> =
        replaced.iter().map(|(id, by)| serde_json::json!({"id": id, "replacement": by})).collect();
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            "UPDATE person_changes SET status = 'superseded', superseded_by = r.replacement
             FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.replacement') AS replacement
                   FROM json_each($1)) AS r
             WHERE person_changes.id = r.id AND person_changes.status = 'pending'"
        }
        Dialect::Postgres => {
            "UPDATE person_changes SET status = 'superseded', superseded_by = r.replacement
             FROM json_to_recordset(CAST($1 AS json)) AS r(id TEXT, replacement TEXT)
             WHERE person_changes.id = r.id AND person_changes.status = 'pending'"
        }
    };
    batch_query(tx.dialect(), sql).bind(serde_json::Value::Array(pairs).to_string()).execute(&mut **tx).await?;
    Ok(())
}

/// Stores `change` (its action already serialized as `payload`) as applied now, for a caller
/// that applies it in the same transaction (pending changes are written by [`insert_rows`]).
/// Returns its id.
async fn insert_applied(
    tx: &mut Tx,
    config: &HrConfig,
    now: UnixTime,
    change: &Change,
    payload: &str,
) -> Result<String, sqlx::Error> {
    let kind = change.action.kind();
    let id = crate::store::time_ordered_id();
    sqlx::query(
        "INSERT INTO person_changes (id, employee_number, person_id, kind, aspect, phase, payload, effective_date,
             effective_at, status, source, error, created_at, applied_at, superseded_by)
         VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8, 'applied', $9, NULL, $10, $10, NULL)",
    )
    .bind(&id)
    .bind(change.employee_number.as_str())
    .bind(kind.as_str())
    .bind(change.action.aspect())
    .bind(if kind.is_ending() { 0_i64 } else { 1_i64 })
    .bind(payload)
    .bind(format_date(change.effective_date))
    .bind(effective_at(kind, change.effective_date, config))
    .bind(&change.source)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Applies `change` now, in the caller's transaction: the one way every source changes a
/// person. Returns the person's id.
pub async fn apply(tx: &mut Tx, actor: &Actor, now: UnixTime, change: &Change) -> Result<String, DirectoryError> {
    check_source(&change.source)?;
    change.action.check()?;
    let date = change.effective_date;
    let existing = crate::directory::person_by_employee_number(&mut **tx, &change.employee_number).await?;
    let audit = |action: &'static str, person_id: &str, mut detail: serde_json::Value| {
        if let Some(fields) = detail.as_object_mut() {
            fields.insert("employee_number".into(), change.employee_number.as_str().into());
            fields.insert("effective_date".into(), format_date(date).into());
            fields.insert("source".into(), change.source.clone().into());
        }
        Event::success(actor, action, format!("person:{person_id}"), detail)
    };
    let joiner = match (&change.action, existing) {
        (Action::Join(joiner), None) => joiner,
        (Action::Join(joiner), Some(person)) => {
            if person.status != PersonStatus::Retired {
                return Err(DirectoryError::Conflict(
                    "this employee number belongs to a person still employed: send a move or an update",
                ));
            }
            let unit = resolve_unit(tx, joiner.org_unit_code.as_deref()).await?;
            check_dates(date, joiner.end_date)?;
            let attributes = Attributes {
                family_name: Some(joiner.family_name.trim().to_owned()),
                given_name: Some(joiner.given_name.trim().to_owned()),
                // A source without readings keeps the ones the person had.
                family_name_kana: Some(joiner.family_name_kana.trim().to_owned()).filter(|k| !k.is_empty()),
                given_name_kana: Some(joiner.given_name_kana.trim().to_owned()).filter(|k| !k.is_empty()),
                email: joiner.email.as_deref().map(parse_email).transpose()?,
                ..Attributes::default()
            };
            updates::set_attributes(tx, &person.id, &attributes, now).await?;
            let appointment = Reappointment {
                kind: joiner.kind,
                org_unit_id: unit.as_deref(),
                start_date: date,
                end_date: joiner.end_date,
            };
            updates::reappoint(tx, &person.id, &appointment, now).await?;
            let reopened = updates::reopen_account(tx, &person.id).await?;
            let login_id = crate::directory::login_id_of(&mut **tx, &person.id).await?;
            audit(
                "person.rejoin",
                &person.id,
                serde_json::json!({"kind": joiner.kind.as_str(), "org_unit_id": unit, "login_id": login_id,
                                   "account_reopened": reopened, "password_withdrawn": reopened}),
            )
            .record(tx, now)
            .await?;
            return Ok(person.id);
        }
        (_, None) => return Err(DirectoryError::NotFound("person")),
        (action, Some(person)) => {
            apply_to_existing(tx, actor, now, change, action, &person, &audit).await?;
            return Ok(person.id);
        }
    };
    // A new person: registered as an administrator would, from the effective date.
    let unit = resolve_unit(tx, joiner.org_unit_code.as_deref()).await?;
    let new = NewPerson {
        employee_number: change.employee_number.as_str().to_owned(),
        family_name: joiner.family_name.clone(),
        given_name: joiner.given_name.clone(),
        family_name_kana: joiner.family_name_kana.clone(),
        given_name_kana: joiner.given_name_kana.clone(),
        birth_date: joiner.birth_date.map(format_date),
        kind: joiner.kind.as_str().to_owned(),
        org_unit_id: unit.clone(),
        email: joiner.email.clone(),
        start_date: format_date(date),
        end_date: joiner.end_date.map(format_date),
    };
    let person = crate::directory::create_person(tx, actor, now, new).await?;
    if let Some(login_id) = &joiner.login_id {
        crate::directory::create_account(tx, actor, now, &person.id, &LoginId::parse(login_id)?, None).await?;
    }
    audit("person.join", &person.id, serde_json::json!({"kind": joiner.kind.as_str(), "org_unit_id": unit}))
        .record(tx, now)
        .await?;
    Ok(person.id)
}

/// Every change but a join, to a person who exists.
async fn apply_to_existing<'a>(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    change: &Change,
    action: &Action,
    person: &crate::directory::Person,
    audit: &impl Fn(&'static str, &str, serde_json::Value) -> Event<'a>,
) -> Result<(), DirectoryError> {
    let date = change.effective_date;
    let id = person.id.as_str();
    match action {
        Action::Join(_) => return Err(DirectoryError::Conflict("a join is not a change to an existing person")),
        Action::Update(attributes) => {
            let attributes = Attributes {
                family_name: attributes.family_name.as_deref().map(|v| parse_name("family_name", v)).transpose()?,
                given_name: attributes.given_name.as_deref().map(|v| parse_name("given_name", v)).transpose()?,
                family_name_kana: attributes
                    .family_name_kana
                    .as_deref()
                    .map(|v| parse_kana("family_name_kana", v))
                    .transpose()?,
                given_name_kana: attributes
                    .given_name_kana
                    .as_deref()
                    .map(|v| parse_kana("given_name_kana", v))
                    .transpose()?,
                email: attributes.email.as_deref().map(parse_email).transpose()?,
                remove_email: attributes.remove_email,
                kind: attributes.kind,
            };
            // A kind with a fixed term needs a last day (the CHECK on people says so too): the
            // end of the fiscal year, unless the person already has one.
            if let Some(kind) = attributes.kind {
                if kind.requires_end_date() && person.end_date.is_none() {
                    updates::set_end_date(tx, id, fiscal_year_end(date), now).await?;
                }
            }
            updates::set_attributes(tx, id, &attributes, now).await?;
            // The audit names the fields changed, not their values (names are personal data).
            let fields = serde_json::to_value(&attributes)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                .unwrap_or_default();
            audit("person.update", id, serde_json::json!({"fields": fields})).record(tx, now).await?;
        }
        Action::Move { org_unit_code } => {
            let unit = resolve_unit(tx, Some(org_unit_code)).await?.ok_or(DirectoryError::NotFound("org unit"))?;
            let from = person.org_unit_id.clone();
            updates::set_primary_unit(tx, id, &unit, now).await?;
            if from.as_deref().is_some_and(|from| from != unit) {
                end_grants_of_former_unit(tx, actor, now, id).await?;
            }
            audit("person.move", id, serde_json::json!({"from_org_unit_id": from, "to_org_unit_id": unit}))
                .record(tx, now)
                .await?;
        }
        Action::AddPost { org_unit_code } => {
            let unit = resolve_unit(tx, Some(org_unit_code)).await?.ok_or(DirectoryError::NotFound("org unit"))?;
            updates::add_post(tx, id, &unit, date, now).await?;
            audit("person.add_post", id, serde_json::json!({"org_unit_id": unit})).record(tx, now).await?;
        }
        Action::EndPost { org_unit_code } => {
            let unit = resolve_unit(tx, Some(org_unit_code)).await?.ok_or(DirectoryError::NotFound("org unit"))?;
            if !updates::end_post(tx, id, &unit, date).await? {
                return Err(DirectoryError::NotFound("open concurrent post in this unit"));
            }
            end_grants_of_former_unit(tx, actor, now, id).await?;
            audit("person.end_post", id, serde_json::json!({"org_unit_id": unit})).record(tx, now).await?;
        }
        Action::Suspend => {
            if person.status != PersonStatus::Active {
                return Err(DirectoryError::Conflict("only an active person can be suspended"));
            }
            updates::set_status(tx, id, PersonStatus::Suspended, now).await?;
            let revoked = revocation::revoke(tx, actor, now, Target::Person(id), "suspended").await?;
            audit("person.suspend", id, serde_json::json!({"sessions_ended": revoked.sessions}))
                .record(tx, now)
                .await?;
        }
        Action::Return => {
            if person.status != PersonStatus::Suspended {
                return Err(DirectoryError::Conflict("only a suspended person can return"));
            }
            updates::set_status(tx, id, PersonStatus::Active, now).await?;
            audit("person.return", id, serde_json::json!({})).record(tx, now).await?;
        }
        Action::Leave => {
            let start = parse_date("start_date", &person.start_date)?;
            if date < start {
                return Err(InvalidField {
                    field: "effective_date",
                    reason: "is before the person's start date".into(),
                }
                .into());
            }
            updates::retire(tx, id, date, now).await?;
            let account_disabled = updates::disable_account(tx, id).await?;
            let revoked = revocation::revoke(tx, actor, now, Target::Leaver(id), "left").await?;
            audit(
                "person.leave",
                id,
                serde_json::json!({"account_disabled": account_disabled, "sessions_ended": revoked.sessions,
                                   "authenticators_revoked": revoked.authenticators,
                                   "logout_notices": revoked.logout_notices}),
            )
            .record(tx, now)
            .await?;
        }
    }
    Ok(())
}

/// March 31 closing the fiscal year (April to March) that `date` falls in.
pub fn fiscal_year_end(date: Date) -> Date {
    let year = if u8::from(date.month()) >= 4 { date.year() + 1 } else { date.year() };
    Date::from_calendar_date(year, time::Month::March, 31).unwrap_or(date)
}

/// Records `change` as applied and applies it now, in the caller's transaction, whatever its
/// date: for a source that speaks for the present (a SCIM request without an effective date,
/// or dated today or earlier). The record keeps the source and date, as for a recorded change.
pub async fn record_and_apply(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    config: &HrConfig,
    change: &Change,
) -> Result<String, DirectoryError> {
    let prepared = Prepared::of(change)?;
    let id = insert_applied(tx, config, now, change, &prepared.payload).await?;
    let person_id = apply(tx, actor, now, change).await?;
    sqlx::query("UPDATE person_changes SET person_id = $1 WHERE id = $2")
        .bind(&person_id)
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    Ok(person_id)
}

/// A mover's access: a grant made while they worked in the owning section ends when they no
/// longer do, a cross-section grant ends when they leave the unit whose manager approved it
/// (`access::grants::after_move`); each ending ends their tokens for that system and tells it.
/// Their sessions stay: the systems log them in again with what they hold now.
pub async fn end_grants_of_former_unit(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    person_id: &str,
) -> Result<u64, DirectoryError> {
    use crate::access::AccessError;
    crate::access::grants::after_move(tx, actor, now, person_id).await.map_err(|e| match e {
        AccessError::Database(d) => DirectoryError::Database(d),
        AccessError::Invalid(i) => DirectoryError::Invalid(i),
        AccessError::NotFound(what) => DirectoryError::NotFound(what),
        AccessError::Forbidden(why) => DirectoryError::Conflict(why),
        AccessError::Conflict(_) => DirectoryError::Conflict("a grant of the person could not be ended"),
    })
}

/// The id of the unit HR calls `code`; an unknown code is the change's error, not a panic.
async fn resolve_unit(tx: &mut Tx, code: Option<&str>) -> Result<Option<String>, DirectoryError> {
    let Some(code) = code else { return Ok(None) };
    match crate::directory::org_unit_by_code(&mut **tx, code).await? {
        Some(unit) => Ok(Some(unit.id)),
        None => Err(InvalidField { field: "org_unit_code", reason: format!("no org unit has code {code}") }.into()),
    }
}

fn check_dates(start: Date, end: Option<Date>) -> Result<(), InvalidField> {
    if matches!(end, Some(end) if end < start) {
        return Err(InvalidField { field: "end_date", reason: "must not be before the effective date".into() });
    }
    Ok(())
}

/// What one run of [`apply_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Run {
    pub applied: u64,
    pub superseded: u64,
    pub failed: u64,
}

/// How many due changes one transaction applies. On April 1 tens of thousands are due at once,
/// and one transaction each made PostgreSQL wait for a WAL flush per change, and SQLite take its
/// write lock and give it back per change. A batch holds its people's rows (on SQLite, the
/// write lock) as long as its changes take, about a millisecond each; on SQLite a login waits
/// behind at most one batch, so SQLite's batches are the smaller.
fn applied_together(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Postgres => 50,
        Dialect::Sqlite => 10,
    }
}

/// Applies every pending change due by `now` from the server (its HR job, the admin API): see
/// [`apply_due_from_command`].
pub async fn apply_due(store: &Store, now: UnixTime) -> Result<Run, DirectoryError> {
    apply_due_as(store, now, Applier::Server).await
}

/// Applies every pending change due by `now` from a command (`sekimori hr import`, `hr
/// confirm`) while the server may be running on the same database. On SQLite the command is a
/// second process wanting the one write lock: the server's writer waits for it in SQLite's
/// busy handler, which sleeps and looks again, and a command that takes the lock again the
/// moment it commits leaves it no moment to find it free — logins waited 0.4 s to 2 s, grants
/// up to 1.7 s, while 23,000 changes were applied (BENCHMARKS.md, April 1). So after each batch
/// the command pauses as long as the batch took, and the server's answers stay as fast as
/// before the import. PostgreSQL locks rows, not the database: no pause there.
pub async fn apply_due_from_command(store: &Store, now: UnixTime) -> Result<Run, DirectoryError> {
    apply_due_as(store, now, Applier::Command).await
}

/// Who applies due changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applier {
    Server,
    Command,
}

/// Applies every pending change due by `now`, in effective order per person, several in one
/// transaction ([`applied_together`]). A batch in which a change cannot be applied (or
/// which the database gave up on) is rolled back and its changes applied again each in a
/// transaction of its own, so that one bad change is marked failed alone and the others are
/// not held responsible. Safe on several nodes at once: each change is claimed by a
/// conditional update in the transaction that applies it, so it is applied once; a change with
/// an earlier one of the same person still pending (perhaps being applied by another node)
/// waits for the next run.
async fn apply_due_as(store: &Store, now: UnixTime, applier: Applier) -> Result<Run, DirectoryError> {
    const PAGE: usize = 200;
    let pause = applier == Applier::Command && store.dialect() == Dialect::Sqlite;
    let mut run = Run::default();
    loop {
        let due = sqlx::query(
            "SELECT id FROM person_changes WHERE status = 'pending' AND effective_at <= $1
             ORDER BY effective_at, phase, created_at, id LIMIT $2",
        )
        .bind(now)
        .bind(PAGE as i64)
        .fetch_all(store.pool())
        .await?;
        let ids = due.iter().map(|row| row.try_get("id")).collect::<Result<Vec<String>, _>>()?;
        let mut progress = false;
        for batch in ids.chunks(applied_together(store.dialect())) {
            let started = std::time::Instant::now();
            let outcomes = match apply_together(store, batch, now).await? {
                Some(outcomes) => outcomes,
                None => {
                    let mut outcomes = Vec::with_capacity(batch.len());
                    for id in batch {
                        outcomes.push(apply_one(store, id, now).await?);
                    }
                    outcomes
                }
            };
            for outcome in outcomes {
                progress |= run.count(outcome);
            }
            if pause {
                tokio::time::sleep(started.elapsed()).await;
            }
        }
        // Nothing more due, or only changes another node holds: the next run finishes them.
        if ids.len() < PAGE || !progress {
            return Ok(run);
        }
    }
}

impl Run {
    /// Counts `outcome`; whether it was progress (a change that is no longer pending).
    fn count(&mut self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::NotClaimed => return false,
            Outcome::Applied => self.applied += 1,
            Outcome::Superseded => self.superseded += 1,
            Outcome::Failed => self.failed += 1,
        }
        true
    }
}

enum Outcome {
    NotClaimed,
    Applied,
    Superseded,
    Failed,
}

/// What claiming and applying one change inside a transaction came to.
enum Step {
    /// Another node holds it, an earlier change of the person is pending, or it is no longer
    /// pending: nothing was written.
    NotClaimed,
    Applied,
    Superseded,
    /// The change itself cannot be applied (a field, a conflict with the directory): the
    /// transaction holds a part of it and must be rolled back.
    Unusable(DirectoryError),
}

impl Step {
    /// The outcome of a step whose writes are to be kept; why, when the change cannot be
    /// applied and they are to be rolled back.
    fn settled(self) -> Result<Outcome, DirectoryError> {
        match self {
            Step::NotClaimed => Ok(Outcome::NotClaimed),
            Step::Applied => Ok(Outcome::Applied),
            Step::Superseded => Ok(Outcome::Superseded),
            Step::Unusable(error) => Err(error),
        }
    }
}

/// Applies `ids` in one transaction, in order, each seeing what those before it wrote (as if
/// each had committed alone). None, with nothing written, when there is only one, when one of
/// them cannot be applied, or when the database refused a statement (a deadlock it broke, a
/// lost connection): the caller then applies each alone.
async fn apply_together(store: &Store, ids: &[String], now: UnixTime) -> Result<Option<Vec<Outcome>>, DirectoryError> {
    if ids.len() < 2 {
        return Ok(None);
    }
    let mut tx = store.begin().await?;
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in ids {
        match claim_and_apply(&mut tx, id, now).await.map(Step::settled) {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(_)) | Err(_) => {
                tx.rollback().await?;
                return Ok(None);
            }
        }
    }
    // A commit that failed may or may not have taken effect; the claims make applying again
    // safe, and the next run does it.
    tx.commit().await?;
    Ok(Some(outcomes))
}

/// Claims and applies one change in its own transaction; a change that cannot be applied is
/// marked failed, with why.
async fn apply_one(store: &Store, id: &str, now: UnixTime) -> Result<Outcome, DirectoryError> {
    let mut tx = store.begin().await?;
    match claim_and_apply(&mut tx, id, now).await?.settled() {
        Ok(Outcome::NotClaimed) => {
            tx.rollback().await?;
            Ok(Outcome::NotClaimed)
        }
        Ok(outcome) => {
            tx.commit().await?;
            Ok(outcome)
        }
        Err(error) => {
            tx.rollback().await?;
            fail(store, id, now, &error).await
        }
    }
}

/// Claims the change `id` and applies it (or marks it superseded) inside `tx`. An error is the
/// database's: the change is not to blame and stays pending.
async fn claim_and_apply(tx: &mut Tx, id: &str, now: UnixTime) -> Result<Step, DirectoryError> {
    let claimed = sqlx::query(
        "UPDATE person_changes SET status = 'applied', applied_at = $1
         WHERE id = $2 AND status = 'pending' AND effective_at <= $1
             AND NOT EXISTS (SELECT 1 FROM person_changes e
                 WHERE e.employee_number = person_changes.employee_number AND e.status = 'pending'
                     AND e.id <> person_changes.id
                     AND (e.effective_at < person_changes.effective_at
                          OR (e.effective_at = person_changes.effective_at AND e.phase < person_changes.phase)))",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(Step::NotClaimed);
    }
    let row = sqlx::query(
        "SELECT employee_number, payload, effective_date, effective_at, phase, source FROM person_changes WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let change = match StoredChange::from_row(&row) {
        Ok(change) => change,
        Err(error) => return Ok(Step::Unusable(error)),
    };
    if let Some(newer) = newer_applied(tx, id, &change).await? {
        sqlx::query(
            "UPDATE person_changes SET status = 'superseded', applied_at = NULL, superseded_by = $1 WHERE id = $2",
        )
        .bind(&newer)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        Event::success(
            &Actor::System,
            "person_change.supersede",
            format!("person_change:{id}"),
            serde_json::json!({"superseded_by": newer,
                               "reason": "a later change to the same part of the person was already applied"}),
        )
        .record(tx, now)
        .await?;
        return Ok(Step::Superseded);
    }
    match apply(tx, &Actor::System, now, &change.change).await {
        Ok(person_id) => {
            sqlx::query("UPDATE person_changes SET person_id = $1 WHERE id = $2")
                .bind(&person_id)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            Ok(Step::Applied)
        }
        // The database failing is not the change's fault: it stays pending for the next run.
        Err(DirectoryError::Database(e)) => Err(DirectoryError::Database(e)),
        Err(error) => Ok(Step::Unusable(error)),
    }
}

/// Marks a change that cannot be applied as failed, with why, in a transaction of its own
/// (the one that tried to apply it was rolled back, so nothing of it is left half-done).
async fn fail(store: &Store, id: &str, now: UnixTime, error: &DirectoryError) -> Result<Outcome, DirectoryError> {
    let mut tx = store.begin().await?;
    let marked =
        sqlx::query("UPDATE person_changes SET status = 'failed', error = $1 WHERE id = $2 AND status = 'pending'")
            .bind(error.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if marked == 0 {
        tx.rollback().await?;
        return Ok(Outcome::NotClaimed);
    }
    Event::failure(
        &Actor::System,
        "person_change.apply",
        format!("person_change:{id}"),
        serde_json::json!({"error": error.to_string()}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok(Outcome::Failed)
}

/// A change as the job reads it back.
struct StoredChange {
    change: Change,
    effective_at: i64,
    phase: i64,
}

impl StoredChange {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, DirectoryError> {
        let employee_number: String = row.try_get("employee_number")?;
        let payload: String = row.try_get("payload")?;
        let date: String = row.try_get("effective_date")?;
        let action = serde_json::from_str(&payload)
            .map_err(|e| InvalidField { field: "payload", reason: format!("unreadable: {e}") })?;
        Ok(Self {
            change: Change {
                employee_number: EmployeeNumber::parse(&employee_number)?,
                effective_date: parse_date("effective_date", &date)?,
                source: row.try_get("source")?,
                action,
            },
            effective_at: row.try_get("effective_at")?,
            phase: row.try_get("phase")?,
        })
    }
}

/// The newest applied change to an aspect `stored` writes that comes after it in effective
/// order, if any: `stored` then arrived late and must not overwrite it.
async fn newer_applied(tx: &mut Tx, id: &str, stored: &StoredChange) -> Result<Option<String>, DirectoryError> {
    let aspects = stored.change.action.aspects_written();
    let placeholders = (0..aspects.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT id FROM person_changes
         WHERE employee_number = $1 AND status = 'applied' AND id <> $2
             AND (effective_at > $3 OR (effective_at = $3 AND phase > $4)) AND aspect IN ({placeholders})
         ORDER BY effective_at DESC, phase DESC LIMIT 1"
    );
    let mut query = sqlx::query(&sql)
        .bind(stored.change.employee_number.as_str())
        .bind(id)
        .bind(stored.effective_at)
        .bind(stored.phase);
    for aspect in &aspects {
        query = query.bind(aspect);
    }
    let row = query.fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

/// Dates in a payload, written YYYY-MM-DD.
mod optional_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(date: &Option<Date>, serializer: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => serializer.serialize_some(&super::format_date(*date)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Date>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| super::parse_date("date", &text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const APRIL_1_2027_JST: i64 = 1_806_505_200; // 2027-04-01T00:00:00+09:00

    #[test]
    fn a_beginning_takes_effect_at_midnight_in_japan() {
        let config = HrConfig::default();
        for kind in [ChangeKind::Join, ChangeKind::Move, ChangeKind::Update, ChangeKind::AddPost, ChangeKind::Suspend] {
            assert_eq!(effective_at(kind, date!(2027 - 04 - 01), &config), APRIL_1_2027_JST, "{kind:?}");
        }
    }

    #[test]
    fn a_leave_takes_effect_at_the_end_of_its_last_day() {
        let config = HrConfig::default();
        assert_eq!(effective_at(ChangeKind::Leave, date!(2027 - 03 - 31), &config), APRIL_1_2027_JST);
        assert_eq!(effective_at(ChangeKind::EndPost, date!(2027 - 03 - 31), &config), APRIL_1_2027_JST);
        let evening = HrConfig { leave_cutoff_hour: 18, ..HrConfig::default() };
        assert_eq!(effective_at(ChangeKind::Leave, date!(2027 - 03 - 31), &evening), APRIL_1_2027_JST - 6 * 3600);
    }

    #[test]
    fn payloads_round_trip_and_hostile_ones_are_refused() {
        let join = Action::Join(Joiner {
            family_name: "田中".into(),
            given_name: "花子".into(),
            family_name_kana: "タナカ".into(),
            given_name_kana: "ハナコ".into(),
            birth_date: None,
            kind: PersonKind::PartTime,
            org_unit_code: Some("ZEIMU".into()),
            email: None,
            end_date: Some(date!(2028 - 03 - 31)),
            login_id: Some("tanaka.hanako".into()),
        });
        let text = serde_json::to_string(&join).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&text).unwrap(), join);
        assert!(join.check().is_ok());
        assert!(Action::Move { org_unit_code: "ZEIMU'; --".into() }.check().is_err());
        assert!(Action::Update(Attributes::default()).check().is_err());
        assert!(serde_json::from_str::<Action>(r#"{"change":"join","family_name":"x"}"#).is_err());
        assert!(serde_json::from_str::<Action>(r#"{"change":"explode"}"#).is_err());
        assert!(check_source("csv:a.csv:3").is_ok());
        assert!(check_source("csv:\u{7}").is_err());
    }
}
