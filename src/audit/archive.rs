//! Archiving old audit events (R16: records are kept for a set period). `sekimori audit
//! archive` writes the events older than a date, in order, to a file with a signed last line
//! — the archive's anchor — and only once that file is on disk removes them from the
//! database, recording the anchor in the same transaction. The chain left in the database then
//! starts at the anchor, and the archive can be verified on its own and against it.
//!
//! Events inside the retention period are never removed.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{hmac_hex, Actor, Event, Link, ARCHIVED_ACTION};
use crate::clock::UnixTime;
use crate::store::{AuditKey, Store};

const ARCHIVE_LABEL: &str = "sekimori audit archive v1";

/// One archived event, with every field its link covers exactly as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedEvent {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    /// The detail as stored (JSON text): the link covers these bytes.
    pub detail: String,
    pub source_ip: Option<String>,
    /// The event's own MAC (events sealed by the sealer; absent on earlier ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its chain position, when it differs from `seq` or was given by the sealer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_pos: Option<i64>,
    pub prev_hash: String,
    pub hash: String,
}

impl ArchivedEvent {
    /// The event as its row holds it, links included (`audit_log`).
    pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        let mut event = Self::unsealed_from_row(row)?;
        event.chain_pos = row.try_get("chain_pos")?;
        event.prev_hash = row.try_get("prev_hash")?;
        event.hash = row.try_get("hash")?;
        Ok(event)
    }

    /// An event without a link, from a row of its own columns only (`audit_events`).
    pub(crate) fn unsealed_from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ArchivedEvent {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            outcome: row.try_get("outcome")?,
            detail: row.try_get("detail")?,
            source_ip: row.try_get("source_ip")?,
            mac: row.try_get("mac")?,
            chain_pos: None,
            prev_hash: String::new(),
            hash: String::new(),
        })
    }

    /// Its place in the chain (events before the sealer were placed by their number).
    pub(crate) fn position(&self) -> i64 {
        self.chain_pos.unwrap_or(self.seq)
    }

    /// The fields its MAC covers.
    pub(super) fn fields(&self) -> super::EventFields<'_> {
        super::EventFields {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            detail: &self.detail,
            source_ip: self.source_ip.as_deref(),
        }
    }

    /// The fields its link covers (the links before the sealer).
    pub(super) fn link(&self) -> Link<'_> {
        Link {
            prev_hash: &self.prev_hash,
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            detail: &self.detail,
            source_ip: self.source_ip.as_deref(),
        }
    }
}

/// The archive's last line: what it holds, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: String,
    /// The hash the first event follows (the previous archive's anchor, or the genesis).
    pub first_prev_hash: String,
    /// The chain's keyed start, needed to recompute the links.
    pub keyed_from: i64,
    /// The first position linked by the sealer (absent in archives made before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_from: Option<i64>,
    pub signature: String,
}

impl Anchor {
    fn signature(&self, key: &AuditKey) -> String {
        let mut fields = serde_json::json!([
            ARCHIVE_LABEL,
            self.first_seq,
            self.last_seq,
            self.last_hash,
            self.first_prev_hash,
            self.keyed_from
        ]);
        if let (Some(sealed_from), Some(list)) = (self.sealed_from, fields.as_array_mut()) {
            list.push(sealed_from.into());
        }
        hmac_hex(key, fields.to_string().as_bytes())
    }
}

/// A line of an archive file: an event, or the anchor that ends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Anchor { anchor: Anchor },
    Event(ArchivedEvent),
}

/// `(last_seq, last_hash)` as an `audit.archived` event's detail names them.
pub(crate) fn anchor_named(detail: &serde_json::Value) -> Option<(i64, String)> {
    Some((detail.get("last_seq")?.as_i64()?, detail.get("last_hash")?.as_str()?.to_owned()))
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0} is inside the retention period: only events before {1} may be archived (audit.retention_days)")]
    InsideRetention(String, String),
    #[error("the date must be written YYYY-MM-DD")]
    BadDate,
    #[error("the audit chain is broken at event {0} ({1}): it is not archived until that is explained")]
    BrokenChain(i64, String),
    #[error("{0} already exists: an archive never overwrites a file")]
    FileExists(String),
    #[error("cannot write the archive {0}: {1}")]
    Io(String, std::io::Error),
    #[error("another archive ran at the same time; nothing was removed: run it again")]
    Concurrent,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What an archive run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub events: i64,
    pub anchor: Option<Anchor>,
}

/// Midnight at the start of `date` in Japan, Unix seconds.
fn japan_midnight(date: time::Date) -> UnixTime {
    date.midnight().assume_offset(crate::clock::JAPAN).unix_timestamp()
}

/// Archives to `out` the events before `before` (YYYY-MM-DD, Japan), which must lie at least
/// `retention_days` before today, and removes them. Events are taken in sequence order up to
/// the first one at or after the date, so the archive is always a prefix of the chain. With
/// no such events, no file is written.
const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

pub async fn archive(
    store: &Store,
    signing_key: &AuditKey,
    now: UnixTime,
    before: &str,
    retention_days: i64,
    out: &Path,
) -> Result<Archived, ArchiveError> {
    // A calendar date, YYYY-MM-DD (the audit log sits below the directory and keeps its own parser).
    let date = time::Date::parse(before, DATE).map_err(|_| ArchiveError::BadDate)?;
    let today = time::OffsetDateTime::from_unix_timestamp(now)
        .map_err(|_| ArchiveError::BadDate)?
        .to_offset(crate::clock::JAPAN)
        .date();
    let limit = today.checked_sub(time::Duration::days(retention_days.max(0))).ok_or(ArchiveError::BadDate)?;
    if date > limit {
        let name = |d: time::Date| d.format(DATE).unwrap_or_default();
        return Err(ArchiveError::InsideRetention(name(date), name(limit)));
    }
    let cutoff = japan_midnight(date);
    if let super::Verification::Broken { seq, reason } = super::verify(store).await? {
        return Err(ArchiveError::BrokenChain(seq, reason));
    }
    let head = super::head(store.pool()).await?;
    // The archive is the prefix of the chain before the first event at or after the cutoff.
    let boundary: Option<i64> =
        sqlx::query("SELECT MIN(chain_pos) AS n FROM audit_log WHERE chain_pos > $1 AND at >= $2")
            .bind(head.anchor_seq)
            .bind(cutoff)
            .fetch_one(store.pool())
            .await?
            .try_get("n")?;
    let end = boundary.map_or(head.seq, |seq| seq - 1);
    if end <= head.anchor_seq {
        return Ok(Archived { events: 0, anchor: None });
    }
    let anchor =
        match write_file(store, out, head.anchor_seq, end, (head.keyed_from, head.sealed_from), signing_key).await {
            Ok(anchor) => anchor,
            Err(e) => {
                // A file cut short is no archive; nothing was removed.
                if !matches!(e, ArchiveError::FileExists(_)) {
                    let _ = std::fs::remove_file(out);
                }
                return Err(e);
            }
        };

    // The anchor is moved before the rows go: the guard lets only rows at or before it be
    // removed. The update only succeeds from the anchor read above, so two archives at once
    // cannot both remove.
    let mut tx = store.begin().await?;
    let moved = sqlx::query("UPDATE audit_head SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1 AND anchor_seq = $3")
        .bind(anchor.last_seq)
        .bind(&anchor.last_hash)
        .bind(head.anchor_seq)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if moved != 1 {
        return Err(ArchiveError::Concurrent);
    }
    // The events first: the guard lets one go only while its link shows it archived.
    sqlx::query("DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_links WHERE chain_pos <= $1)")
        .bind(anchor.last_seq)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM audit_links WHERE chain_pos <= $1").bind(anchor.last_seq).execute(&mut *tx).await?;
    let file = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Event::success(
        &Actor::Cli,
        ARCHIVED_ACTION,
        "audit",
        serde_json::json!({
            "first_seq": anchor.first_seq,
            "last_seq": anchor.last_seq,
            "last_hash": anchor.last_hash,
            "before": before,
            "file": file,
        }),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    // The anchor's own event joins the chain now rather than at the sealer's next round.
    super::seal::seal(store, now).await?;
    Ok(Archived { events: anchor.last_seq - anchor.first_seq + 1, anchor: Some(anchor) })
}

/// Writes the events after `after` up to `end` as JSON lines, page by page, then the signed
/// anchor, and makes the file durable (the file and its directory entry) before anything is
/// removed.
async fn write_file(
    store: &Store,
    out: &Path,
    after: i64,
    end: i64,
    (keyed_from, sealed_from): (i64, i64),
    signing_key: &AuditKey,
) -> Result<Anchor, ArchiveError> {
    let name = out.display().to_string();
    let io = |e: std::io::Error| ArchiveError::Io(name.clone(), e);
    let file = match std::fs::OpenOptions::new().write(true).create_new(true).open(out) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(ArchiveError::FileExists(name)),
        Err(e) => return Err(io(e)),
    };
    let mut writer = std::io::BufWriter::new(file);
    let mut first: Option<(i64, String)> = None;
    let mut last = (after, String::new());
    const PAGE: i64 = 1000;
    while last.0 < end {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM audit_log WHERE chain_pos > $1 AND chain_pos <= $2 ORDER BY chain_pos LIMIT $3",
            super::EVENT_COLUMNS
        ))
        .bind(last.0)
        .bind(end)
        .bind(PAGE)
        .fetch_all(store.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = ArchivedEvent::from_row(row)?;
            serde_json::to_writer(&mut writer, &Line::Event(event.clone())).map_err(|e| io(e.into()))?;
            writer.write_all(b"\n").map_err(io)?;
            first.get_or_insert_with(|| (event.position(), event.prev_hash.clone()));
            last = (event.position(), event.hash);
        }
    }
    let Some((first_seq, first_prev_hash)) = first else {
        return Err(io(std::io::Error::other("no events to archive")));
    };
    let mut anchor = Anchor {
        first_seq,
        last_seq: last.0,
        last_hash: last.1,
        first_prev_hash,
        keyed_from,
        sealed_from: Some(sealed_from),
        signature: String::new(),
    };
    anchor.signature = anchor.signature(signing_key);
    serde_json::to_writer(&mut writer, &Line::Anchor { anchor: anchor.clone() }).map_err(|e| io(e.into()))?;
    writer.write_all(b"\n").map_err(io)?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(anchor)
}

/// What checking an archive file found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveCheck {
    pub events: i64,
    pub anchor: Option<Anchor>,
    /// Readable failures; empty when the archive holds and meets the database's chain.
    pub failures: Vec<String>,
}

/// Checks an archive on its own — every link, in order, and the signed anchor that ends it —
/// and against the database: its anchor must be the one the database's chain starts from (or
/// an earlier one, for an older archive).
pub async fn check_file(
    store: &Store,
    chain_key: &AuditKey,
    signing_key: &AuditKey,
    text: &str,
) -> Result<ArchiveCheck, sqlx::Error> {
    let mut check = ArchiveCheck::default();
    let mut events = Vec::new();
    let mut anchor = None;
    for (index, text_line) in text.lines().enumerate() {
        let number = index + 1;
        if text_line.trim().is_empty() {
            continue;
        }
        if anchor.is_some() {
            check.failures.push(format!("line {number}: lines after the anchor"));
            break;
        }
        match serde_json::from_str::<Line>(text_line) {
            Ok(Line::Event(event)) => events.push(event),
            Ok(Line::Anchor { anchor: found }) => anchor = Some(found),
            Err(e) => check.failures.push(format!("line {number}: neither an event nor the anchor ({e})")),
        }
    }
    let Some(anchor) = anchor else {
        check.failures.push("the archive has no anchor line (cut short?)".into());
        return Ok(check);
    };
    if !crate::crypto::ct_eq(anchor.signature(signing_key).as_bytes(), anchor.signature.as_bytes()) {
        check.failures.push("bad signature on the anchor: altered or not made with this master key".into());
    }
    let mut expected = anchor.first_seq;
    let mut prev = anchor.first_prev_hash.clone();
    // An archive made before the sealer has only the earlier links.
    let sealed_from = anchor.sealed_from.unwrap_or(i64::MAX);
    for event in &events {
        let position = event.position();
        if position != expected {
            check.failures.push(format!("event {expected} is missing from the archive"));
            break;
        }
        if event.prev_hash != prev {
            check.failures.push(format!("event {position}: previous-hash does not match the preceding event"));
            break;
        }
        if let Some(reason) = super::link_fault(chain_key, anchor.keyed_from, sealed_from, event) {
            check.failures.push(format!("event {position}: {reason}"));
            break;
        }
        prev = event.hash.clone();
        expected += 1;
    }
    if check.failures.is_empty() && (expected - 1 != anchor.last_seq || prev != anchor.last_hash) {
        check.failures.push(format!(
            "the archive's events end at event {} but its anchor names event {}",
            expected - 1,
            anchor.last_seq
        ));
    }
    let head = super::head(store.pool()).await?;
    if anchor.last_seq == head.anchor_seq {
        if anchor.last_hash != head.anchor_hash {
            check.failures.push(format!(
                "the database's anchor (event {}) has another hash than the archive's last event",
                head.anchor_seq
            ));
        }
    } else if anchor.last_seq > head.anchor_seq {
        check.failures.push(format!(
            "the archive ends at event {} but the database's chain starts after event {}: the anchor was moved back",
            anchor.last_seq, head.anchor_seq
        ));
    }
    check.events = events.len() as i64;
    check.anchor = Some(anchor);
    Ok(check)
}
