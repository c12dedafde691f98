//! The sealer: links committed audit events into the chain, in batches, shortly after their
//! transactions commit.
//!
//! On PostgreSQL, writers ([`super::record`]) only give an event its sequence number and its
//! own MAC; no writer waits for another. (On SQLite, which has one writer at a time anyway,
//! `record` seals each event in its own transaction, and the sealer finds nothing to do.) The sealer takes the chain's head row once per batch (a row lock on
//! PostgreSQL, the write lock on SQLite), reads the committed events not yet sealed in sequence
//! order, gives each the next chain position and its link — HMAC under the chain key over the
//! position, the previous link, the sequence number and the event's MAC — and moves the head.
//! Several nodes may each run a sealer: the head row makes them take turns, and the one that
//! comes second finds nothing left to seal.
//!
//! What someone who can write the database can do in the window between commit and seal (the
//! seal lag, milliseconds under load; `/metrics` shows it): remove an event no sealer has seen.
//! Editing, forging or renumbering one breaks its MAC. The sealer of the process that committed
//! an event checks that the event was sealed; when it is gone instead, the sealer records that
//! in the chain, and `audit verify` reports it.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::Row;

use super::{hmac_hex, no_key, Actor, Event, MISSING_ACTION};
use crate::clock::UnixTime;
use crate::store::{AuditKey, Store};

const SEAL_LABEL: &str = "sekimori audit seal v2";

/// How many events one batch seals at most (one transaction).
const BATCH: i64 = 2000;

/// Rows sealed by one UPDATE statement (four parameters each; SQLite allows 32,766).
const UPDATE_CHUNK: usize = 250;

/// The link of the event at chain `position`.
pub(crate) fn link(key: &AuditKey, position: i64, prev_hash: &str, seq: i64, mac: &str) -> String {
    hmac_hex(key, serde_json::json!([SEAL_LABEL, position, prev_hash, seq, mac]).to_string().as_bytes())
}

/// Seals every committed event not yet sealed; returns how many it sealed.
pub async fn seal(store: &Store) -> Result<u64, sqlx::Error> {
    let mut sealed = 0;
    loop {
        let batch = seal_batch(store).await?;
        sealed += batch;
        if batch < BATCH as u64 {
            return Ok(sealed);
        }
    }
}

async fn seal_batch(store: &Store) -> Result<u64, sqlx::Error> {
    let key = *store.audit_key().ok_or_else(no_key)?;
    // Looked for without a lock first: most rounds find nothing (always, on SQLite, where
    // events are sealed as they are written), and must not queue for the writer for that.
    let waiting = sqlx::query("SELECT seq FROM audit_events WHERE chain_pos IS NULL LIMIT 1")
        .fetch_optional(store.pool())
        .await?;
    if waiting.is_none() {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    // The head row, locked for the batch: sealers on other nodes wait here.
    let head = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *tx)
        .await?;
    let mut position: i64 = head.try_get("seq")?;
    let mut prev: String = head.try_get("hash")?;
    let rows = sqlx::query("SELECT seq, mac FROM audit_events WHERE chain_pos IS NULL ORDER BY seq LIMIT $1")
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut links = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        // An event without a MAC was not written by `record`: it is sealed as it is, and
        // `verify` reports it.
        let mac: Option<String> = row.try_get("mac")?;
        position += 1;
        let hash = link(&key, position, &prev, seq, mac.as_deref().unwrap_or_default());
        links.push((seq, position, std::mem::replace(&mut prev, hash.clone()), hash));
    }
    // Many rows a statement: one round trip per chunk rather than per event.
    for chunk in links.chunks(UPDATE_CHUNK) {
        let values = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH v(seq, pos, prev, hash) AS (VALUES {values})
             UPDATE audit_events SET chain_pos = v.pos, prev_hash = v.prev, hash = v.hash FROM v
             WHERE audit_events.seq = v.seq AND audit_events.chain_pos IS NULL"
        );
        let mut query = sqlx::query(&sql);
        for (seq, position, prev, hash) in chunk {
            query = query.bind(*seq).bind(*position).bind(prev.as_str()).bind(hash.as_str());
        }
        let updated = query.execute(&mut *tx).await?.rows_affected();
        if updated != chunk.len() as u64 {
            // Another sealer cannot be here (the head row is ours): the rows were changed
            // under us. Nothing is half-sealed: the batch is rolled back and retried.
            tx.rollback().await?;
            return Err(sqlx::Error::Protocol(format!("sealing expected {} events, updated {updated}", chunk.len())));
        }
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(position)
        .bind(&prev)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// How far sealing lags: the number of committed events not yet sealed, and the age in
/// seconds of the oldest of them (0 when none).
pub async fn lag(store: &Store, now: UnixTime) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(at) AS oldest FROM audit_events WHERE chain_pos IS NULL")
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
        let rows = sqlx::query("SELECT seq, chain_pos FROM audit_events WHERE seq >= $1 AND seq <= $2")
        .bind(low)
        .bind(high)
        .fetch_all(store.pool())
        .await?;
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
    let sealed = seal(store).await?;
    let missing = watch.missing(store).await?;
    if !missing.is_empty() {
        report_missing(store, now, &missing).await?;
        seal(store).await?;
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
