//! The administrator's side of the HR feed (issue 11), right `hr:admin`: the batches the safety
//! valve holds (see them, confirm or discard them), the recorded changes (see them, retry a
//! failed one once its cause is fixed), and a section manager's preview. The same domain
//! functions as `sekimori hr …`; each decision is audited by them, once.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::directory::types::{format_date, parse_date};
use crate::directory::{self, DirectoryError, EmployeeNumber, InvalidField};
use crate::hr::batches::{self, BatchRecord, DecisionError};
use crate::hr::changes::{self, Run};
use crate::hr::preview::{self, Effect};
use crate::hr::review::{self, RecordedChange, RetryError};
use crate::App;

use super::problem::{ApiQuery, Problem};
use super::rights::{self, Authorized};
use super::List;

fn bad(field: &'static str, reason: impl Into<String>) -> Problem {
    Problem::bad_parameter(InvalidField { field, reason: reason.into() })
}

/// A code or employee number as openapi.yaml's `Code` says: the directory's rule
/// (`EmployeeNumber::parse`), with nothing trimmed — a value the schema refuses is refused here.
fn code(field: &'static str, value: &str) -> Result<EmployeeNumber, Problem> {
    match EmployeeNumber::parse(value) {
        Ok(parsed) if parsed.as_str() == value => Ok(parsed),
        _ => Err(bad(field, "must be 1 to 64 ASCII letters, digits or '-'")),
    }
}

fn status(field: &'static str, value: &str, allowed: &[&str]) -> Result<(), Problem> {
    if !allowed.contains(&value) {
        return Err(bad(field, format!("must be one of {}", allowed.join(", "))));
    }
    Ok(())
}

/// A stored batch that cannot be read, or the database failing: not the caller's fault.
fn internal(e: DirectoryError) -> Problem {
    match e {
        DirectoryError::Database(db) => Problem::database(db),
        other => Problem::internal(other),
    }
}

#[derive(Serialize)]
pub struct SectionCount {
    section: String,
    kind: String,
    count: u64,
}

#[derive(Serialize)]
pub struct HrBatch {
    id: String,
    source: String,
    status: String,
    change_count: u64,
    /// Active people the batch would leave, suspend or move, and active people, when held.
    affected: u64,
    active: u64,
    /// The limit it went over, as recorded when it was held.
    limit: Option<String>,
    summary: Vec<SectionCount>,
    created_at: UnixTime,
    decided_at: Option<UnixTime>,
}

impl From<BatchRecord> for HrBatch {
    fn from(record: BatchRecord) -> Self {
        let b = record.batch;
        HrBatch {
            id: b.id,
            source: b.source,
            status: b.status,
            change_count: b.changes,
            affected: b.affected,
            active: b.active,
            limit: record.limit,
            summary: b
                .summary
                .into_iter()
                .map(|s| SectionCount { section: s.section, kind: s.kind, count: s.count })
                .collect(),
            created_at: b.created_at,
            decided_at: record.decided_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchesQuery {
    status: Option<String>,
}

pub async fn list_batches(
    State(app): State<App>,
    _caller: Authorized<rights::HrAdmin>,
    ApiQuery(query): ApiQuery<BatchesQuery>,
) -> Result<Json<List<HrBatch>>, Problem> {
    let wanted = query.status.as_deref().unwrap_or("held");
    status("status", wanted, &batches::STATUSES)?;
    let items = batches::list(&app.store, wanted).await.map_err(internal)?;
    Ok(Json(List { items: items.into_iter().map(HrBatch::from).collect() }))
}

#[derive(Serialize)]
pub struct BatchChange {
    employee_number: String,
    kind: &'static str,
    effective_date: String,
    source: String,
    section: Option<String>,
}

#[derive(Serialize)]
pub struct HrBatchDetail {
    #[serde(flatten)]
    batch: HrBatch,
    changes: Vec<BatchChange>,
}

pub async fn get_batch(
    State(app): State<App>,
    _caller: Authorized<rights::HrAdmin>,
    Path(id): Path<String>,
) -> Result<Json<HrBatchDetail>, Problem> {
    let record =
        batches::get(&app.store, &id).await.map_err(internal)?.ok_or_else(|| Problem::not_found("HR batch"))?;
    let changes = batches::lines(&app.store, &id)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|line| BatchChange {
            employee_number: line.employee_number,
            kind: line.kind.as_str(),
            effective_date: line.effective_date,
            source: line.source,
            section: line.section,
        })
        .collect();
    Ok(Json(HrBatchDetail { batch: record.into(), changes }))
}

/// What a run of the job did.
#[derive(Serialize)]
pub struct Applied {
    applied: u64,
    superseded: u64,
    failed: u64,
}

impl From<Run> for Applied {
    fn from(run: Run) -> Self {
        Applied { applied: run.applied, superseded: run.superseded, failed: run.failed }
    }
}

#[derive(Serialize)]
pub struct ConfirmedBatch {
    batch: HrBatch,
    /// The changes due now, applied at once (the rest when they fall due).
    applied_now: Applied,
}

/// 404 for a batch nobody held, 409 for one decided already or refused now.
async fn decision_problem(app: &App, id: &str, error: DecisionError) -> Problem {
    match error {
        DecisionError::NotHeld => match batches::get(&app.store, id).await {
            Ok(Some(record)) => Problem::conflict(format!("this batch is {} already", record.batch.status)),
            Ok(None) => Problem::not_found("HR batch"),
            Err(e) => internal(e),
        },
        DecisionError::Refused { origin, message } => Problem::conflict(format!(
            "the batch cannot be confirmed as things stand ({origin}: {message}); it stays held"
        )),
        DecisionError::Directory(e) => internal(e),
    }
}

/// Confirms a held batch and applies what is due now (API and console alike).
pub(crate) async fn confirm(app: &App, actor: &crate::audit::Actor, id: &str) -> Result<changes::Run, Problem> {
    let now = app.clock.now();
    if let Err(e) = batches::confirm(&app.store, actor, now, &app.config.hr, id).await {
        return Err(decision_problem(app, id, e).await);
    }
    changes::apply_due(&app.store, now).await.map_err(internal)
}

/// Discards a held batch: none of it is ever applied (API and console alike).
pub(crate) async fn discard(app: &App, actor: &crate::audit::Actor, id: &str) -> Result<(), Problem> {
    if let Err(e) = batches::discard(&app.store, actor, app.clock.now(), id).await {
        return Err(decision_problem(app, id, e).await);
    }
    Ok(())
}

pub async fn confirm_batch(
    State(app): State<App>,
    caller: Authorized<rights::HrAdmin>,
    Path(id): Path<String>,
) -> Result<Json<ConfirmedBatch>, Problem> {
    let run = confirm(&app, &caller.actor(), &id).await?;
    let record =
        batches::get(&app.store, &id).await.map_err(internal)?.ok_or_else(|| Problem::not_found("HR batch"))?;
    Ok(Json(ConfirmedBatch { batch: record.into(), applied_now: run.into() }))
}

pub async fn discard_batch(
    State(app): State<App>,
    caller: Authorized<rights::HrAdmin>,
    Path(id): Path<String>,
) -> Result<Json<HrBatch>, Problem> {
    discard(&app, &caller.actor(), &id).await?;
    let record =
        batches::get(&app.store, &id).await.map_err(internal)?.ok_or_else(|| Problem::not_found("HR batch"))?;
    Ok(Json(record.into()))
}

#[derive(Serialize)]
pub struct HrChange {
    id: String,
    employee_number: String,
    person_id: Option<String>,
    kind: String,
    org_unit_code: Option<String>,
    effective_date: String,
    effective_at: UnixTime,
    status: String,
    source: String,
    error: Option<String>,
    created_at: UnixTime,
    applied_at: Option<UnixTime>,
    superseded_by: Option<String>,
}

impl From<RecordedChange> for HrChange {
    fn from(c: RecordedChange) -> Self {
        HrChange {
            id: c.id,
            employee_number: c.employee_number,
            person_id: c.person_id,
            kind: c.kind,
            org_unit_code: c.org_unit_code,
            effective_date: c.effective_date,
            effective_at: c.effective_at,
            status: c.status,
            source: c.source,
            error: c.error,
            created_at: c.created_at,
            applied_at: c.applied_at,
            superseded_by: c.superseded_by,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    status: Option<String>,
    employee_number: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ChangePage {
    items: Vec<HrChange>,
    /// The `cursor` of the next page; null on the last one.
    next_cursor: Option<String>,
}

/// A change's id as the server makes them (a lower-case UUID), the only form of a cursor.
fn is_uuid(value: &str) -> bool {
    value.len() == 36
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

pub async fn list_changes(
    State(app): State<App>,
    _caller: Authorized<rights::HrAdmin>,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<Json<ChangePage>, Problem> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit", "must be 1 to 500"));
    }
    if let Some(wanted) = &query.status {
        status("status", wanted, &review::STATUSES)?;
    }
    let employee_number = match &query.employee_number {
        Some(number) => Some(code("employee_number", number)?),
        None => None,
    };
    if let Some(cursor) = &query.cursor {
        if !is_uuid(cursor) {
            return Err(bad("cursor", "must be the next_cursor of a previous page"));
        }
    }
    let filter = review::Filter { status: query.status, employee_number };
    // One more than asked, to know whether another page follows.
    let mut found = review::list(&app.store, &filter, query.cursor.as_deref(), limit + 1)
        .await
        .map_err(internal)?
        .ok_or_else(|| bad("cursor", "names no recorded change"))?;
    let more = found.len() as i64 > limit;
    found.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more { found.last().map(|c| c.id.clone()) } else { None };
    Ok(Json(ChangePage { items: found.into_iter().map(HrChange::from).collect(), next_cursor }))
}

#[derive(Serialize)]
pub struct RetriedChange {
    /// The change after the due changes were applied: `applied` if its cause is fixed,
    /// `failed` again (with the new error) if not, `pending` if an earlier change of the same
    /// person still waits.
    change: HrChange,
    previous_error: Option<String>,
    applied_now: Applied,
}

pub async fn retry_change(
    State(app): State<App>,
    caller: Authorized<rights::HrAdmin>,
    Path(id): Path<String>,
) -> Result<Json<RetriedChange>, Problem> {
    match review::retry(&app.store, &caller.actor(), app.clock.now(), &id).await {
        Ok(retried) => Ok(Json(RetriedChange {
            change: retried.change.into(),
            previous_error: retried.previous_error,
            applied_now: retried.run.into(),
        })),
        Err(RetryError::NotFound) => Err(Problem::not_found("HR change")),
        Err(e @ RetryError::NotFailed(_)) => Err(Problem::conflict(e.to_string())),
        Err(RetryError::Directory(e)) => Err(internal(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    section: Option<String>,
    date: Option<String>,
}

#[derive(Serialize)]
pub struct PreviewEntry {
    effective_date: String,
    effect: &'static str,
    /// The effect in Japanese and English, as the CLI prints it.
    label: &'static str,
    employee_number: String,
    name: Option<String>,
    other_section: Option<String>,
    held_in: Option<String>,
}

#[derive(Serialize)]
pub struct Preview {
    section: String,
    date: String,
    entries: Vec<PreviewEntry>,
}

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Arrival => "arrival",
        Effect::Departure => "departure",
        Effect::Leaver => "leaver",
        Effect::PostBegins => "post_begins",
        Effect::PostEnds => "post_ends",
    }
}

pub async fn preview(
    State(app): State<App>,
    _caller: Authorized<rights::HrAdmin>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
) -> Result<Json<Preview>, Problem> {
    let section = query.section.ok_or_else(|| bad("section", "is required: the section's org unit code"))?;
    code("section", &section)?;
    let until = match &query.date {
        Some(date) => {
            // Exactly YYYY-MM-DD, nothing trimmed, as the schema says.
            let shaped = date.len() == 10
                && date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
            if !shaped {
                return Err(bad("date", "must be a date written YYYY-MM-DD"));
            }
            parse_date("date", date).map_err(Problem::bad_parameter)?
        }
        None => directory::today_in_japan(app.clock.now()),
    };
    let entries = match preview::section(&app.store, &section, until).await {
        Ok(entries) => entries,
        Err(DirectoryError::NotFound(what)) => return Err(Problem::not_found(what)),
        Err(e) => return Err(internal(e)),
    };
    let entries = entries
        .into_iter()
        .map(|e| PreviewEntry {
            effective_date: format_date(e.effective_date),
            effect: effect_name(e.effect),
            label: e.effect.label(),
            employee_number: e.employee_number,
            name: e.name,
            other_section: e.other_section,
            held_in: e.held_in,
        })
        .collect();
    Ok(Json(Preview { section, date: format_date(until), entries }))
}
