//! R8 (江戸川区 基準 第30条): the access records taken away for reading elsewhere, and the
//! designated reader's own reading record, which they print and report on.
//!
//! An export is recorded (`audit.export`, with its filters and how many rows it holds) before
//! a row is read. It covers the log as it stood at that moment: the rows up to the newest
//! event then, so the recorded count is exactly what the file holds.

use super::{CsvSheet, DateRange, Format};
use crate::audit::query::{self, Filter, Params};
use crate::audit::{Actor, Event, StoredEvent};
use crate::clock::UnixTime;
use crate::invalid::InvalidField;
use crate::store::Store;
use serde::Deserialize;

/// The most rows one export holds; a larger selection is cut there and says so.
pub const EXPORT_MAX_LIMIT: i64 = 50_000;
pub const EXPORT_DEFAULT_LIMIT: i64 = 10_000;

/// The actions that are someone reading access records.
pub const READING_ACTIONS: [&str; 3] = ["audit.read", "audit.export", "report.read"];

/// The export's query string: the filters of the event list, the format and a limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    pub person: Option<String>,
    pub system: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub order: Option<String>,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
    pub format: Option<String>,
}

impl ExportParams {
    /// The filter and the format; the limit may go to [`EXPORT_MAX_LIMIT`].
    pub fn parse(&self) -> Result<(Filter, Format), InvalidField> {
        let format = Format::parse("format", self.format.as_deref(), &[Format::Json, Format::Csv])?;
        let limit = self.limit.unwrap_or(EXPORT_DEFAULT_LIMIT);
        if !(1..=EXPORT_MAX_LIMIT).contains(&limit) {
            return Err(InvalidField { field: "limit", reason: format!("must be 1 to {EXPORT_MAX_LIMIT}") });
        }
        let params = Params {
            person: self.person.clone(),
            system: self.system.clone(),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            order: self.order.clone(),
            before: self.before,
            after: self.after,
            limit: None,
        };
        let mut filter = Filter::parse(&params)?;
        filter.limit = limit;
        Ok((filter, format))
    }
}

/// Fills in how the log names the person the filter asks for: their account, the login ID
/// that failed logins name, and their cards.
pub async fn resolve_person(store: &Store, filter: &mut Filter) -> Result<(), crate::Error> {
    let Some(person) = &filter.person else { return Ok(()) };
    let pool = store.pool();
    let mut subjects = crate::directory::audit_names(pool, person).await?;
    for card in crate::authenticators::list_for_person(pool, person).await? {
        subjects.push(format!("authenticator:{}", card.id));
    }
    filter.subjects = subjects;
    Ok(())
}

/// What an export holds.
#[derive(Debug, Clone)]
pub struct Export {
    pub events: Vec<StoredEvent>,
    /// Events that matched up to the snapshot; more than `events.len()` when the limit cut it.
    pub matched: i64,
    /// The newest event the export could include.
    pub up_to_seq: i64,
}

impl Export {
    pub fn truncated(&self) -> bool {
        self.matched > self.events.len() as i64
    }
}

/// Records the export by `actor`, then reads it. `filter.subjects` must be resolved.
pub async fn export(
    store: &Store,
    actor: &Actor,
    now: UnixTime,
    mut filter: Filter,
    format: Format,
) -> Result<Export, sqlx::Error> {
    let up_to_seq = query::last_seq(store).await?;
    filter.before = Some(filter.before.map_or(up_to_seq + 1, |b| b.min(up_to_seq + 1)));
    let matched = query::count(store, &filter).await?;
    let rows = matched.min(filter.limit);
    let mut detail = filter.describe();
    if let Some(fields) = detail.as_object_mut() {
        fields.insert("format".into(), format.as_str().into());
        fields.insert("rows".into(), rows.into());
        fields.insert("matched".into(), matched.into());
        fields.insert("up_to_seq".into(), up_to_seq.into());
    }
    let mut tx = store.begin().await?;
    Event::success(actor, "audit.export", "audit_events", detail).record(&mut tx, now).await?;
    tx.commit().await?;
    let events = query::find(store, &filter).await?;
    Ok(Export { events, matched, up_to_seq })
}

/// The events as CSV, one row each, in the JSON's field names.
pub fn events_csv(events: &[StoredEvent]) -> Result<Vec<u8>, csv::Error> {
    let mut sheet = CsvSheet::new(&[
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "outcome",
        "source_ip",
        "detail",
        "prev_hash",
        "hash",
    ])?;
    for event in events {
        sheet.row([
            event.seq.to_string(),
            crate::clock::japan_rfc3339(event.at).unwrap_or_default(),
            event.actor.clone(),
            event.action.clone(),
            event.target.clone(),
            event.outcome.clone(),
            event.source_ip.clone().unwrap_or_default(),
            event.detail.to_string(),
            event.prev_hash.clone().unwrap_or_default(),
            event.hash.clone().unwrap_or_default(),
        ])?;
    }
    sheet.finish()
}

/// The most entries of one reading record.
pub const READING_MAX: i64 = 10_000;

/// `actor`'s reading of the access records in `range`, oldest first: every list, export and
/// report they read. Reading it is itself a read of the log, recorded first.
pub async fn reading_record(
    store: &Store,
    actor: &Actor,
    now: UnixTime,
    range: DateRange,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut tx = store.begin().await?;
    let detail = serde_json::json!({
        "own_reading_record": true,
        "from": crate::directory::types::format_date(range.from),
        "to": crate::directory::types::format_date(range.to),
    });
    Event::success(actor, "audit.read", "audit_events", detail).record(&mut tx, now).await?;
    tx.commit().await?;
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, target, outcome, detail, source_ip, mac, chain_pos, prev_hash, hash FROM audit_log
         WHERE actor = $1 AND action IN ($2, $3, $4) AND at >= $5 AND at < $6 ORDER BY seq LIMIT $7",
    )
    .bind(actor.as_text())
    .bind(READING_ACTIONS[0])
    .bind(READING_ACTIONS[1])
    .bind(READING_ACTIONS[2])
    .bind(range.start())
    .bind(range.end())
    .bind(READING_MAX)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(crate::audit::stored_event).collect()
}

/// The reading record as a printable sheet: when, what was read, with which filters, how much.
pub fn reading_csv(events: &[StoredEvent]) -> Result<Vec<u8>, csv::Error> {
    let mut sheet = CsvSheet::new(&["日時 at", "操作 action", "対象 target", "条件 filters", "件数 rows"])?;
    for event in events {
        let rows = event.detail.get("rows").map(|r| r.to_string()).unwrap_or_default();
        sheet.row([
            crate::clock::japan_rfc3339(event.at).unwrap_or_default(),
            event.action.clone(),
            event.target.clone(),
            event.detail.to_string(),
            rows,
        ])?;
    }
    sheet.finish()
}
