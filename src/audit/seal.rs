//! The sealer: links committed audit events into the chain, in batches, shortly after their
//! transactions commit.
//!
//! On PostgreSQL, writers ([`super::record`]) only give an event its sequence number and its
//! own MAC, and put its number on the sealer's work list (`audit_unsealed`) in the same
//! statement; no writer waits for another. (On SQLite, which has one writer at a time anyway,
//! `record` links each event in its own transaction, and the sealer finds nothing to do.) The
//! sealer takes the chain's head row once per batch (a row lock on PostgreSQL, the write lock
//! on SQLite), reads the work list in sequence order, appends each event's link to
//! `audit_links` — HMAC under the chain key over the position, the previous link, the sequence
//! number and the event's MAC — takes the events off the list and moves the head, all in one
//! transaction. Events are written once and never updated: sealing only appends.
//! Several nodes may each run a sealer: the head row makes them take turns, and the one that
//! comes second finds nothing left to seal.
//!
//! What someone who can write the database can do in the window between commit and seal (the
//! seal lag, milliseconds under load; `/metrics` shows it): remove an event no sealer has seen.
//! Editing, forging or renumbering one breaks its MAC. An event removed while its entry stays
//! on the work list is found by any node's sealer; one removed together with its entry, by the
//! sealer of the process that committed it, which checks that each of its events was sealed.
//! Either records the loss in the chain, and `audit verify` reports it. Taking an event off the
//! work list without removing it leaves it unsealed, which `audit verify` reports too.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::Row;

use super::{chunk_size, hmac_hex, insert_sql, no_key, Actor, Event, Insert, MISSING_ACTION};
use crate::clock::UnixTime;
use crate::store::{batch_query, in_json_array, AnyQuery, AuditKey, JsonArrayOf, Store, Tx};

const SEAL_LABEL: &str = "sekimori audit seal v2";

/// How many events one batch seals at most (one transaction).
const BATCH: i64 = 2000;

/// The link of the event at chain `position`.
pub(crate) fn link(key: &AuditKey, position: i64, prev_hash: &str, seq: i64, mac: &str) -> String {
    hmac_hex(key, serde_json::json!([SEAL_LABEL, position, prev_hash, seq, mac]).to_string().as_bytes())
}

/// A row of `audit_links` about to be written.
#[derive(Debug, Clone)]
pub(crate) struct NewLink {
    pub position: i64,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

impl NewLink {
    /// Binds its four columns, in the order of `audit_links (chain_pos, seq, prev_hash, hash)`.
    pub(crate) fn bind<'q>(&'q self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query.bind(self.position).bind(self.seq).bind(self.prev_hash.as_str()).bind(self.hash.as_str())
    }
}

/// Appends `links` to the chain: as few INSERTs as their count allows.
pub(crate) async fn append_links(tx: &mut Tx, links: &[NewLink]) -> Result<(), sqlx::Error> {
    let mut rest = links;
    while !rest.is_empty() {
        let size = chunk_size(rest.len());
        let (chunk, after) = rest.split_at(size);
        rest = after;
        let mut insert = sqlx::query(insert_sql(Insert::Links, size)?);
        for link in chunk {
            insert = link.bind(insert);
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Seals every committed event not yet sealed; returns how many it sealed. An entry of the
/// work list whose event is gone is recorded in the chain (at `now`), which breaks it.
pub async fn seal(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    Ok(seal_reporting(store, now).await?.0)
}

/// [`seal`], also returning the events it found gone and recorded.
async fn seal_reporting(store: &Store, now: UnixTime) -> Result<(u64, Vec<i64>), sqlx::Error> {
    let (mut sealed, mut reported) = (0, Vec::new());
    loop {
        let batch = seal_batch(store).await?;
        sealed += batch.linked;
        if !batch.vanished.is_empty() {
            report_missing(store, now, &batch.vanished).await?;
            reported.extend(batch.vanished);
            continue;
        }
        if !batch.full {
            return Ok((sealed, reported));
        }
    }
}

/// What one batch did.
#[derive(Debug, Default)]
struct BatchSealed {
    linked: u64,
    /// Entries of the work list whose event is gone: removed before it was sealed.
    vanished: Vec<i64>,
    /// The batch took as many entries as it may: there may be more.
    full: bool,
}

async fn seal_batch(store: &Store) -> Result<BatchSealed, sqlx::Error> {
    let key = *store.audit_key().ok_or_else(no_key)?;
    // Looked for without a lock first: most rounds find nothing (always, on SQLite, where
    // events are sealed as they are written), and must not queue for the writer for that.
    let waiting = sqlx::query("SELECT seq FROM audit_unsealed LIMIT 1").fetch_optional(store.pool()).await?;
    if waiting.is_none() {
        return Ok(BatchSealed::default());
    }
    let mut tx = store.begin().await?;
    // The head row, locked for the batch: sealers on other nodes wait here.
    let head =
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash").fetch_one(&mut *tx).await?;
    let first: i64 = head.try_get("seq")?;
    let mut position = first;
    let mut prev: String = head.try_get("hash")?;
    // The work list in sequence order, each entry with its event's MAC and whether the event
    // exists and is linked already. The entries are taken first and each is looked up by its
    // number: a join was planned as a scan of every event (10.8 ms a batch with 44,000
    // events, growing with the table).
    let rows = sqlx::query(
        "SELECT u.seq,
                (SELECT e.seq FROM audit_events e WHERE e.seq = u.seq) AS event_seq,
                (SELECT e.mac FROM audit_events e WHERE e.seq = u.seq) AS mac,
                (SELECT l.chain_pos FROM audit_links l WHERE l.seq = u.seq) AS chain_pos
         FROM (SELECT seq FROM audit_unsealed ORDER BY seq LIMIT $1) u
         ORDER BY u.seq",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut batch = BatchSealed { full: rows.len() as i64 == BATCH, ..BatchSealed::default() };
    let mut links = Vec::with_capacity(rows.len());
    let mut done = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        done.push(seq);
        if row.try_get::<Option<i64>, _>("chain_pos")?.is_some() {
            // Linked already: an entry put back on the list by hand; it only leaves the list.
            continue;
        }
        if row.try_get::<Option<i64>, _>("event_seq")?.is_none() {
            batch.vanished.push(seq);
            continue;
        }
        // An event without a MAC was not written by `record`: it is sealed as it is, and
        // `verify` reports it.
        let mac: Option<String> = row.try_get("mac")?;
        position += 1;
        let hash = link(&key, position, &prev, seq, mac.as_deref().unwrap_or_default());
        links.push(NewLink { position, seq, prev_hash: std::mem::replace(&mut prev, hash.clone()), hash });
    }
    append_links(&mut tx, &links).await?;
    // Exactly the entries read (not a range: an entry with a lower number may have been
    // committed since), as one JSON array so that one statement text serves every batch.
    let delete = format!(
        "DELETE FROM audit_unsealed WHERE {}",
        in_json_array(store.dialect(), "seq", "$1", JsonArrayOf::Integers)
    );
    let removed = batch_query(store.dialect(), &delete)
        .bind(serde_json::json!(done).to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed != done.len() as u64 {
        // Another sealer cannot be here (the head row is ours): the list was changed under
        // us. Nothing is half-sealed: the batch is rolled back and retried.
        tx.rollback().await?;
        return Err(sqlx::Error::Protocol(format!("sealing expected {} entries, removed {removed}", done.len())));
    }
    if position > first {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(position)
            .bind(&prev)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    batch.linked = links.len() as u64;
    Ok(batch)
}

/// How far sealing lags: the number of committed events not yet sealed, and the age in
/// seconds of the first of them the sealer will take (the lowest number; 0 when none).
pub async fn lag(store: &Store, now: UnixTime) -> Result<(i64, i64), sqlx::Error> {
    // Lookups by number only: `/metrics` asks on every scrape, and a join may be planned as a
    // scan of every event.
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM audit_unsealed) AS n,
                (SELECT e.at FROM audit_events e WHERE e.seq = (SELECT MIN(seq) FROM audit_unsealed)) AS oldest",
    )
    .fetch_one(store.pool())
    .await?;
    let oldest: Option<i64> = row.try_get("oldest")?;
    Ok((row.try_get("n")?, oldest.map_or(0, |at| (now - at).max(0))))
}

/// The events this process committed that were not sealed when last looked at.
#[derive(Debug, Default)]
pub struct Watch {
    pending: BTreeSet<i64>,
}

impl Watch {
    /// Adds the events committed since the last look, then checks the pending ones: a sealed
    /// one is done, an unsealed one stays pending, one that no longer exists was removed
    /// before it was sealed. Returns the removed ones.
    pub async fn missing(&mut self, store: &Store) -> Result<Vec<i64>, sqlx::Error> {
        self.pending.extend(store.committed_events().take());
        let (Some(&low), Some(&high)) = (self.pending.first(), self.pending.last()) else {
            return Ok(Vec::new());
        };
        // Planned at each execution on PostgreSQL (`batch_query`), as the sealer asks once a
        // round: the view joins the links, and a plan kept from when the tables were small can
        // be a scan of every link, each time.
        let sql = "SELECT seq, chain_pos FROM audit_log WHERE seq >= $1 AND seq <= $2";
        let rows = batch_query(store.dialect(), sql).bind(low).bind(high).fetch_all(store.pool()).await?;
        let mut existing = BTreeSet::new();
        let mut unsealed = BTreeSet::new();
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            existing.insert(seq);
            if row.try_get::<Option<i64>, _>("chain_pos")?.is_none() {
                unsealed.insert(seq);
            }
        }
        let missing: Vec<i64> = self.pending.iter().copied().filter(|seq| !existing.contains(seq)).collect();
        self.pending = unsealed.intersection(&self.pending).copied().collect();
        Ok(missing)
    }
}

/// Records in the chain that events committed here vanished before they were sealed.
async fn report_missing(store: &Store, now: UnixTime, missing: &[i64]) -> Result<(), sqlx::Error> {
    tracing::error!(events = ?missing, "audit events were removed from the database before they were sealed");
    let mut tx = store.begin().await?;
    Event::failure(&Actor::System, MISSING_ACTION, "audit", serde_json::json!({ "seq": missing }))
        .record(&mut tx, now)
        .await?;
    tx.commit().await
}

/// One round of the sealer: seal, then check that what this process committed was sealed.
pub async fn round(store: &Store, watch: &mut Watch, now: UnixTime) -> Result<u64, sqlx::Error> {
    let (sealed, reported) = seal_reporting(store, now).await?;
    // What the work list already showed gone is recorded once.
    let missing: Vec<i64> = watch.missing(store).await?.into_iter().filter(|seq| !reported.contains(seq)).collect();
    if !missing.is_empty() {
        report_missing(store, now, &missing).await?;
        seal(store, now).await?;
    }
    Ok(sealed)
}

/// Seals shortly after every commit that recorded events (waiting `batch_delay` so that a
/// burst is sealed in one batch) and at least every second, until the store is closed.
pub fn spawn(app: crate::App) {
    tokio::spawn(async move {
        let mut watch = Watch::default();
        let batch_delay = Duration::from_millis(5);
        while !app.store.pool().is_closed() {
            let _ = tokio::time::timeout(Duration::from_secs(1), app.store.committed_events().wait()).await;
            tokio::time::sleep(batch_delay).await;
            if app.store.pool().is_closed() {
                break;
            }
            if let Err(e) = round(&app.store, &mut watch, app.clock.now()).await {
                tracing::warn!(error = %e, "sealing audit events failed; the next round retries");
            }
        }
    });
}
