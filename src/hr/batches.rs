//! The HR safety valve (issue 11): a file that would leave, suspend or move more active people
//! than `[hr] max_share_percent` or `max_people` allow — a wrong export, a truncated file, a
//! section code typed over the whole town — is not recorded. It is held whole as a batch, and
//! nothing of it takes effect until an administrator confirms it (its changes are then recorded
//! as pending, and the job applies them) or discards it (kept, never applied).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::changes::{self, Action, Change, ChangeKind};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::HrConfig;
use crate::directory::types::{format_date, parse_date};
use crate::directory::{DirectoryError, EmployeeNumber, InvalidField};
use crate::store::{Store, Tx};

/// Whether a change counts against the valve: it takes an active person out of their work or
/// their section.
pub fn is_disruptive(kind: ChangeKind) -> bool {
    matches!(kind, ChangeKind::Leave | ChangeKind::Suspend | ChangeKind::Move)
}

/// Which limit a batch went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More than `max_people` active people.
    People(u64),
    /// More than `max_share_percent` % of the active people.
    Share(u8),
    /// More than `feed_max_per_day` active people from one feed in a day.
    FeedDaily(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::People(n) => write!(f, "{n} people (hr.max_people)"),
            Limit::FeedDaily(n) => write!(f, "{n} people a day from one feed (hr.feed_max_per_day)"),
            Limit::Share(p) => write!(f, "{p} % of active people (hr.max_share_percent)"),
        }
    }
}

/// The limit `affected` of `active` people goes over, if any; the absolute count is looked at
/// first, as it is the one a large directory reaches first.
pub fn over_limit(affected: u64, active: u64, config: &HrConfig) -> Option<Limit> {
    if affected > config.max_people {
        return Some(Limit::People(config.max_people));
    }
    // In integers, so that 10 % of 25 people is 2.5 and a third leaver is over it.
    if u128::from(affected) * 100 > u128::from(config.max_share_percent) * u128::from(active) {
        return Some(Limit::Share(config.max_share_percent));
    }
    None
}

/// The number of active people, the valve's denominator.
pub async fn active_people(tx: &mut Tx) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM people WHERE status = 'active'")
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Whether the person with `employee_number` is active now (a joiner is nobody yet).
pub async fn is_active(tx: &mut Tx, employee_number: &EmployeeNumber) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS one FROM people WHERE employee_number = $1 AND status = 'active'")
        .bind(employee_number.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

/// One line of a batch's summary: how many changes of `kind` concern `section`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionCount {
    pub section: String,
    pub kind: String,
    pub count: u64,
}

/// A batch the valve stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: String,
    pub source: String,
    pub status: String,
    pub changes: u64,
    pub affected: u64,
    pub active: u64,
    pub summary: Vec<SectionCount>,
    pub created_at: UnixTime,
}

/// A change as a batch stores it (the payload format of `person_changes`, plus its keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldChange {
    pub employee_number: String,
    /// YYYY-MM-DD, as `person_changes.effective_date`.
    pub effective_date: String,
    pub source: String,
    pub action: Action,
    /// A feed's change that was to take effect when it arrived (a SCIM request without a
    /// date): once confirmed, it takes effect at once, not at its date's usual instant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_once: bool,
}

impl HeldChange {
    /// `change` as a batch keeps it; `at_once` for a feed's change that was to take effect on
    /// arrival.
    pub fn of(change: &Change, at_once: bool) -> Self {
        HeldChange {
            employee_number: change.employee_number.as_str().to_owned(),
            effective_date: format_date(change.effective_date),
            source: change.source.clone(),
            action: change.action.clone(),
            at_once,
        }
    }
}

fn parse_changes(text: &str) -> Result<Vec<HeldChange>, DirectoryError> {
    serde_json::from_str(text).map_err(|e| InvalidField { field: "batch", reason: format!("unreadable: {e}") }.into())
}

/// The changes of the batch `id`, whatever its status.
pub async fn held_changes(store: &Store, id: &str) -> Result<Vec<HeldChange>, DirectoryError> {
    let row = sqlx::query("SELECT changes FROM hr_batches WHERE id = $1").bind(id).fetch_optional(store.pool()).await?;
    match row {
        Some(row) => parse_changes(&row.try_get::<String, _>("changes")?),
        None => Err(DirectoryError::NotFound("HR batch")),
    }
}

/// What the valve saw, for the batch and its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub affected: u64,
    pub active: u64,
    pub limit: Limit,
}

/// Holds `changes` from `source` as one batch, in the caller's transaction; returns its id.
pub async fn hold(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    source: &str,
    held: &[HeldChange],
    by_section: &BTreeMap<(String, &'static str), u64>,
    verdict: Verdict,
) -> Result<String, DirectoryError> {
    let summary: Vec<SectionCount> = by_section
        .iter()
        .map(|((section, kind), count)| SectionCount {
            section: section.clone(),
            kind: (*kind).to_owned(),
            count: *count,
        })
        .collect();
    let unreadable = |e: serde_json::Error| InvalidField { field: "batch", reason: e.to_string() };
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO hr_batches (id, source, status, changes, summary, affected, active, created_at, decided_at)
         VALUES ($1, $2, 'held', $3, $4, $5, $6, $7, NULL)",
    )
    .bind(&id)
    .bind(source)
    .bind(serde_json::to_string(&held).map_err(unreadable)?)
    .bind(serde_json::to_string(&summary).map_err(unreadable)?)
    .bind(i64::try_from(verdict.affected).unwrap_or(i64::MAX))
    .bind(i64::try_from(verdict.active).unwrap_or(i64::MAX))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Event::success(
        actor,
        "hr_batch.hold",
        format!("hr_batch:{id}"),
        serde_json::json!({"source": source, "changes": held.len(), "affected": verdict.affected,
                           "active": verdict.active, "limit": verdict.limit.to_string()}),
    )
    .record(tx, now)
    .await?;
    Ok(id)
}

/// The valve for a feed that sends changes one request at a time (SCIM): its leaves,
/// suspensions and moves of active people are counted over the last 24 hours. Once this one
/// would pass `[hr] feed_max_per_day`, it — and every later one from the feed until an
/// administrator decides — waits in the feed's held batch instead of being applied. Returns the
/// batch's id when the change was held; the caller decides nothing else about it.
pub async fn hold_feed_change(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    config: &HrConfig,
    feed: &str,
    change: &Change,
    at_once: bool,
) -> Result<Option<String>, DirectoryError> {
    if !is_disruptive(change.action.kind()) || !is_active(tx, &change.employee_number).await? {
        return Ok(None);
    }
    let held = HeldChange::of(change, at_once);
    let unreadable = |e: serde_json::Error| InvalidField { field: "batch", reason: e.to_string() };
    let open = sqlx::query(
        "SELECT id, changes, affected FROM hr_batches WHERE source = $1 AND status = 'held'
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(feed)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(open) = open {
        let id: String = open.try_get("id")?;
        let mut changes = parse_changes(&open.try_get::<String, _>("changes")?)?;
        changes.push(held);
        let affected: i64 = open.try_get("affected")?;
        sqlx::query("UPDATE hr_batches SET changes = $1, affected = $2 WHERE id = $3")
            .bind(serde_json::to_string(&changes).map_err(unreadable)?)
            .bind(affected + 1)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        Event::success(
            actor,
            "hr_batch.hold",
            format!("hr_batch:{id}"),
            serde_json::json!({"source": change.source, "employee_number": change.employee_number.as_str(),
                               "kind": change.action.kind().as_str(), "changes": changes.len()}),
        )
        .record(tx, now)
        .await?;
        return Ok(Some(id));
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM person_changes
         WHERE source LIKE $1 AND kind IN ('leave', 'suspend', 'move') AND created_at > $2",
    )
    .bind(format!("{feed}:%"))
    .bind(now - 86_400)
    .fetch_one(&mut **tx)
    .await?;
    let sent = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
    if sent < config.feed_max_per_day {
        return Ok(None);
    }
    let verdict = Verdict {
        affected: sent + 1,
        active: active_people(tx).await?,
        limit: Limit::FeedDaily(config.feed_max_per_day),
    };
    let mut by_section = BTreeMap::new();
    let section = match &change.action {
        Action::Move { org_unit_code } => org_unit_code.clone(),
        _ => "-".to_owned(),
    };
    by_section.insert((section, change.action.kind().as_str()), 1);
    hold(tx, actor, now, feed, std::slice::from_ref(&held), &by_section, verdict).await.map(Some)
}

/// Batches still waiting for an administrator, oldest first.
pub async fn held(store: &Store) -> Result<Vec<Batch>, DirectoryError> {
    let rows = sqlx::query(
        "SELECT id, source, status, changes, summary, affected, active, created_at FROM hr_batches
         WHERE status = 'held' ORDER BY created_at, id",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(batch_from_row).collect()
}

fn batch_from_row(row: &sqlx::any::AnyRow) -> Result<Batch, DirectoryError> {
    let changes: String = row.try_get("changes")?;
    let summary: String = row.try_get("summary")?;
    let unreadable = |e: serde_json::Error| InvalidField { field: "batch", reason: format!("unreadable: {e}") };
    let count = serde_json::from_str::<Vec<serde_json::Value>>(&changes).map_err(unreadable)?.len();
    Ok(Batch {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        status: row.try_get("status")?,
        changes: count as u64,
        affected: u64::try_from(row.try_get::<i64, _>("affected")?).unwrap_or(0),
        active: u64::try_from(row.try_get::<i64, _>("active")?).unwrap_or(0),
        summary: serde_json::from_str(&summary).map_err(unreadable)?,
        created_at: row.try_get("created_at")?,
    })
}

/// Why a batch could not be confirmed or discarded.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no held batch has this ID (it may have been confirmed or discarded already)")]
    NotHeld,
    /// A change the lifecycle refuses now; nothing of the batch was recorded.
    #[error("{origin}: {message}")]
    Refused { origin: String, message: String },
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<sqlx::Error> for DecisionError {
    fn from(e: sqlx::Error) -> Self {
        DecisionError::Directory(e.into())
    }
}

/// Confirms a held batch: in one transaction, the batch is marked confirmed and every change of
/// it is recorded as pending (with the usual replay and correction rules), or — if one is
/// refused — nothing is, and the batch stays held. Returns the batch as it was held.
pub async fn confirm(
    store: &Store,
    actor: &Actor,
    now: UnixTime,
    config: &HrConfig,
    id: &str,
) -> Result<Batch, DecisionError> {
    let mut tx = store.begin().await?;
    let batch = decide(&mut tx, actor, now, id, Decision::Confirm).await?;
    let text: String = sqlx::query("SELECT changes FROM hr_batches WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("changes")?;
    let held = parse_changes(&text)?;
    // The changes to record, in their order: each run of them between two applied at once is
    // recorded together (`changes::record_file`: an April file held by the valve is tens of
    // thousands of lines, and on SQLite every write of the server waits for this transaction).
    let mut to_record: Vec<Change> = Vec::new();
    for change in held {
        let source = change.source.clone();
        let refused = |message: String| DecisionError::Refused { origin: source.clone(), message };
        let at_once = change.at_once;
        let change = Change {
            employee_number: EmployeeNumber::parse(&change.employee_number).map_err(|e| refused(e.to_string()))?,
            effective_date: parse_date("effective_date", &change.effective_date).map_err(|e| refused(e.to_string()))?,
            source: change.source,
            action: change.action,
        };
        if !at_once {
            to_record.push(change);
            continue;
        }
        record_together(&mut tx, config, now, &to_record).await?;
        to_record.clear();
        match changes::record_and_apply(&mut tx, actor, now, config, &change).await {
            Ok(_) => {}
            Err(DirectoryError::Database(e)) => return Err(e.into()),
            // Dropping the transaction rolls it back: the batch stays held.
            Err(e) => return Err(refused(e.to_string())),
        }
    }
    record_together(&mut tx, config, now, &to_record).await?;
    tx.commit().await?;
    Ok(batch)
}

/// Records `held` changes of a batch being confirmed as pending; the confirmation is the
/// batch's one audit event (hr_batch.confirm). The first change refused refuses the batch.
async fn record_together(tx: &mut Tx, config: &HrConfig, now: UnixTime, held: &[Change]) -> Result<(), DecisionError> {
    let outcomes = changes::record_file(tx, config, now, held).await?;
    for (change, outcome) in held.iter().zip(outcomes) {
        if let Err(e) = outcome {
            // Dropping the transaction rolls it back: the batch stays held.
            return Err(DecisionError::Refused { origin: change.source.clone(), message: e.to_string() });
        }
    }
    Ok(())
}

/// Discards a held batch: kept as `discarded`, none of it ever recorded or applied.
pub async fn discard(store: &Store, actor: &Actor, now: UnixTime, id: &str) -> Result<Batch, DecisionError> {
    let mut tx = store.begin().await?;
    let batch = decide(&mut tx, actor, now, id, Decision::Discard).await?;
    tx.commit().await?;
    Ok(batch)
}

#[derive(Clone, Copy)]
enum Decision {
    Confirm,
    Discard,
}

/// Moves a held batch to confirmed or discarded by a conditional update, so that two
/// administrators deciding at once cannot both confirm, or confirm what the other discarded;
/// and audits the decision in the same transaction.
async fn decide(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    id: &str,
    decision: Decision,
) -> Result<Batch, DecisionError> {
    let (status, action) = match decision {
        Decision::Confirm => ("confirmed", "hr_batch.confirm"),
        Decision::Discard => ("discarded", "hr_batch.discard"),
    };
    let claimed = sqlx::query("UPDATE hr_batches SET status = $1, decided_at = $2 WHERE id = $3 AND status = 'held'")
        .bind(status)
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if claimed == 0 {
        return Err(DecisionError::NotHeld);
    }
    let row = sqlx::query(
        "SELECT id, source, status, changes, summary, affected, active, created_at FROM hr_batches WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let batch = batch_from_row(&row)?;
    Event::success(
        actor,
        action,
        format!("hr_batch:{id}"),
        serde_json::json!({"source": batch.source, "changes": batch.changes, "affected": batch.affected}),
    )
    .record(tx, now)
    .await?;
    Ok(batch)
}

/// The statuses a batch can have.
pub const STATUSES: [&str; 3] = ["held", "confirmed", "discarded"];

/// A batch as an administrator reads it: what was held, when it was decided, and the limit it
/// went over as the valve recorded it when it held the batch (`hr_batch.hold`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub batch: Batch,
    pub decided_at: Option<UnixTime>,
    pub limit: Option<String>,
}

/// Batches of `status` (one of [`STATUSES`]): held ones oldest first, the order to decide them
/// in; decided ones most recently decided first.
pub async fn list(store: &Store, status: &str) -> Result<Vec<BatchRecord>, DirectoryError> {
    let order = if status == "held" { "created_at, id" } else { "decided_at DESC, id DESC" };
    let rows = sqlx::query(&format!(
        "SELECT id, source, status, changes, summary, affected, active, created_at, decided_at FROM hr_batches
         WHERE status = $1 ORDER BY {order}"
    ))
    .bind(status)
    .fetch_all(store.pool())
    .await?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        records.push(record_from_row(store, row).await?);
    }
    Ok(records)
}

/// The batch `id`, whatever its status.
pub async fn get(store: &Store, id: &str) -> Result<Option<BatchRecord>, DirectoryError> {
    let row = sqlx::query(
        "SELECT id, source, status, changes, summary, affected, active, created_at, decided_at FROM hr_batches
         WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    match row {
        Some(row) => Ok(Some(record_from_row(store, &row).await?)),
        None => Ok(None),
    }
}

async fn record_from_row(store: &Store, row: &sqlx::any::AnyRow) -> Result<BatchRecord, DirectoryError> {
    let batch = batch_from_row(row)?;
    let held = sqlx::query(
        "SELECT detail FROM audit_events WHERE target = $1 AND action = 'hr_batch.hold' ORDER BY seq LIMIT 1",
    )
    .bind(format!("hr_batch:{}", batch.id))
    .fetch_optional(store.pool())
    .await?;
    let limit = match held {
        Some(row) => serde_json::from_str::<serde_json::Value>(&row.try_get::<String, _>("detail")?)
            .ok()
            .and_then(|detail| detail.get("limit").and_then(|l| l.as_str()).map(str::to_owned)),
        None => None,
    };
    Ok(BatchRecord { decided_at: row.try_get("decided_at")?, limit, batch })
}

/// One change of a batch, as an administrator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLine {
    pub employee_number: String,
    pub kind: ChangeKind,
    pub effective_date: String,
    pub source: String,
    /// The section the change names (a join's, a move's or a post's unit), else the person's
    /// primary unit now; none for a person without one.
    pub section: Option<String>,
}

/// The changes of the batch `id`, in the file's order, each with the section it concerns.
pub async fn lines(store: &Store, id: &str) -> Result<Vec<BatchLine>, DirectoryError> {
    let mut lines = Vec::new();
    for change in held_changes(store, id).await? {
        let named = match &change.action {
            Action::Join(joiner) => joiner.org_unit_code.clone(),
            Action::Move { org_unit_code } | Action::AddPost { org_unit_code } | Action::EndPost { org_unit_code } => {
                Some(org_unit_code.clone())
            }
            _ => None,
        };
        let section = match named {
            Some(code) => Some(code),
            None => sqlx::query(
                "SELECT o.code FROM people p JOIN org_units o ON o.id = p.org_unit_id WHERE p.employee_number = $1",
            )
            .bind(&change.employee_number)
            .fetch_optional(store.pool())
            .await?
            .map(|row| row.try_get::<String, _>("code"))
            .transpose()?,
        };
        lines.push(BatchLine {
            kind: change.action.kind(),
            employee_number: change.employee_number,
            effective_date: change.effective_date,
            source: change.source,
            section,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_valve_holds_at_whichever_limit_is_reached_first() {
        let config = HrConfig { max_share_percent: 10, max_people: 200, ..HrConfig::default() };
        assert_eq!(over_limit(0, 0, &config), None);
        assert_eq!(over_limit(2, 25, &config), None, "8 %");
        assert_eq!(over_limit(3, 25, &config), Some(Limit::Share(10)), "12 %");
        assert_eq!(over_limit(10, 100, &config), None, "exactly the share is not more than it");
        assert_eq!(over_limit(200, 100_000, &config), None);
        assert_eq!(over_limit(201, 100_000, &config), Some(Limit::People(200)));
        assert_eq!(over_limit(u64::MAX, u64::MAX, &config), Some(Limit::People(200)));
    }
}
