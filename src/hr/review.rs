//! An administrator's review of the recorded changes (issue 11): list them, newest first, by
//! status and person; and put a failed change back to pending once its cause is fixed (an org
//! unit created, a person registered), for the job — or the caller, through
//! [`changes::apply_due`] — to apply it again. The apply and record rules stay in [`changes`].

use sqlx::Row;

use super::changes::{self, Run};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::directory::{DirectoryError, EmployeeNumber};
use crate::store::Store;

/// The statuses a recorded change can have.
pub const STATUSES: [&str; 4] = ["pending", "applied", "superseded", "failed"];

/// A recorded change, as an administrator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedChange {
    pub id: String,
    pub employee_number: String,
    /// Set once applied: the person it changed (or created).
    pub person_id: Option<String>,
    pub kind: String,
    /// The unit a join, move or concurrent post names, if any.
    pub org_unit_code: Option<String>,
    pub effective_date: String,
    pub effective_at: UnixTime,
    pub status: String,
    pub source: String,
    /// Why a failed change could not be applied.
    pub error: Option<String>,
    pub created_at: UnixTime,
    pub applied_at: Option<UnixTime>,
    pub superseded_by: Option<String>,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One of [`STATUSES`].
    pub status: Option<String>,
    pub employee_number: Option<EmployeeNumber>,
}

const COLUMNS: &str = "id, employee_number, person_id, kind, payload, effective_date, effective_at, status, source, \
                       error, created_at, applied_at, superseded_by";

fn from_row(row: &sqlx::any::AnyRow) -> Result<RecordedChange, DirectoryError> {
    let payload: String = row.try_get("payload")?;
    // The unit is read from the payload as stored, whatever its version: a payload that does
    // not parse is shown without one rather than hiding the change.
    let org_unit_code = serde_json::from_str::<serde_json::Value>(&payload)
        .ok()
        .and_then(|p| p.get("org_unit_code").and_then(|c| c.as_str()).map(str::to_owned));
    Ok(RecordedChange {
        id: row.try_get("id")?,
        employee_number: row.try_get("employee_number")?,
        person_id: row.try_get("person_id")?,
        kind: row.try_get("kind")?,
        org_unit_code,
        effective_date: row.try_get("effective_date")?,
        effective_at: row.try_get("effective_at")?,
        status: row.try_get("status")?,
        source: row.try_get("source")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        applied_at: row.try_get("applied_at")?,
        superseded_by: row.try_get("superseded_by")?,
    })
}

/// Changes matching `filter`, newest recorded first, at most `limit`, after the change `after`
/// (the last one of the previous page). `None` when `after` names no change.
pub async fn list(
    store: &Store,
    filter: &Filter,
    after: Option<&str>,
    limit: i64,
) -> Result<Option<Vec<RecordedChange>>, DirectoryError> {
    enum Bind {
        Int(i64),
        Text(String),
    }
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(after) = after {
        let row = sqlx::query("SELECT created_at FROM person_changes WHERE id = $1")
            .bind(after)
            .fetch_optional(store.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        // Keyset paging: changes recorded meanwhile never shift a page.
        conditions.push("(created_at < $1 OR (created_at = $1 AND id < $2))".to_owned());
        binds.push(Bind::Int(row.try_get("created_at")?));
        binds.push(Bind::Text(after.to_owned()));
    }
    if let Some(status) = &filter.status {
        conditions.push(format!("status = ${}", binds.len() + 1));
        binds.push(Bind::Text(status.clone()));
    }
    if let Some(number) = &filter.employee_number {
        conditions.push(format!("employee_number = ${}", binds.len() + 1));
        binds.push(Bind::Text(number.as_str().to_owned()));
    }
    let filter_sql = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let sql = format!(
        "SELECT {COLUMNS} FROM person_changes {filter_sql} ORDER BY created_at DESC, id DESC LIMIT ${}",
        binds.len() + 1
    );
    binds.push(Bind::Int(limit));
    let mut query = sqlx::query(&sql);
    for bind in binds {
        query = match bind {
            Bind::Int(value) => query.bind(value),
            Bind::Text(value) => query.bind(value),
        };
    }
    let rows = query.fetch_all(store.pool()).await?;
    Ok(Some(rows.iter().map(from_row).collect::<Result<_, _>>()?))
}

/// The change `id`, if recorded.
pub async fn get(store: &Store, id: &str) -> Result<Option<RecordedChange>, DirectoryError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM person_changes WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Why a change could not be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no change has this ID")]
    NotFound,
    #[error("only a failed change can be retried; this one is {0}")]
    NotFailed(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<sqlx::Error> for RetryError {
    fn from(e: sqlx::Error) -> Self {
        RetryError::Directory(e.into())
    }
}

/// What a retry did: the change as it stands after the due changes were applied, and that run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    pub change: RecordedChange,
    pub previous_error: Option<String>,
    pub run: Run,
}

/// Puts the failed change `id` back to pending — by a conditional update, so that two
/// administrators retrying at once put it back once — audited with who asked and why it had
/// failed (`person_change.retry`); then applies what is due, as the job would.
pub async fn retry(store: &Store, actor: &Actor, now: UnixTime, id: &str) -> Result<Retried, RetryError> {
    let mut tx = store.begin().await?;
    let row = sqlx::query("SELECT status, error, employee_number, kind FROM person_changes WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Err(RetryError::NotFound) };
    let status: String = row.try_get("status")?;
    if status != "failed" {
        return Err(RetryError::NotFailed(status));
    }
    let previous_error: Option<String> = row.try_get("error")?;
    let reopened =
        sqlx::query("UPDATE person_changes SET status = 'pending', error = NULL WHERE id = $1 AND status = 'failed'")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if reopened == 0 {
        // Another administrator retried it between our read and our update.
        return Err(RetryError::NotFailed("pending again".into()));
    }
    Event::success(
        actor,
        "person_change.retry",
        format!("person_change:{id}"),
        serde_json::json!({
            "employee_number": row.try_get::<String, _>("employee_number")?,
            "kind": row.try_get::<String, _>("kind")?,
            "previous_error": previous_error,
        }),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    // Asked from the command line, it is a process beside the server, which leaves the server
    // room on SQLite (`changes::apply_due_from_command`).
    let run = match actor {
        Actor::Cli => changes::apply_due_from_command(store, now).await?,
        _ => changes::apply_due(store, now).await?,
    };
    let change = get(store, id).await?.ok_or(RetryError::NotFound)?;
    Ok(Retried { change, previous_error, run })
}
