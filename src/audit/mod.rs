//! R16: the append-only, hash-chained audit log. Every state change and every login attempt
//! calls [`record`] inside the transaction that makes the change, so an event exists exactly
//! when its change does. Each row's hash covers its content and the previous row's hash;
//! `audit_head` holds the newest link so that removing rows at the end is detected too.

pub mod query;
pub mod sign_ins;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::{Store, Tx};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did something: a person, an API token, the CLI, or the system itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Person(String),
    ApiToken(String),
    Client(String),
    Cli,
    System,
    Anonymous,
}

impl Actor {
    pub fn as_text(&self) -> String {
        match self {
            Actor::Person(id) => format!("person:{id}"),
            Actor::ApiToken(id) => format!("api_token:{id}"),
            Actor::Client(id) => format!("client:{id}"),
            Actor::Cli => "cli".into(),
            Actor::System => "system".into(),
            Actor::Anonymous => "anonymous".into(),
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub actor: &'a Actor,
    pub action: &'a str,
    pub target: String,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
    pub source_ip: Option<String>,
}

impl<'a> Event<'a> {
    /// Something `actor` did to `target`, which succeeded.
    pub fn success(actor: &'a Actor, action: &'a str, target: impl Into<String>, detail: serde_json::Value) -> Self {
        Event { actor, action, target: target.into(), outcome: Outcome::Success, detail, source_ip: None }
    }

    /// Something `actor` tried on `target`, which was refused or failed.
    pub fn failure(actor: &'a Actor, action: &'a str, target: impl Into<String>, detail: serde_json::Value) -> Self {
        Event { actor, action, target: target.into(), outcome: Outcome::Failure, detail, source_ip: None }
    }

    /// The address the request came from.
    pub fn from_source(mut self, source_ip: Option<String>) -> Self {
        self.source_ip = source_ip;
        self
    }

    /// Records the event in `tx`, the transaction of the change it describes.
    pub async fn record(self, tx: &mut Tx, now: UnixTime) -> Result<(), sqlx::Error> {
        record(tx, now, self).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// A stored audit event as read back.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub seq: i64,
    /// Unix seconds, as the hash covers it; shown in ISO 8601, Japan time.
    #[serde(serialize_with = "serialize_japan_time")]
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: serde_json::Value,
    pub source_ip: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields one link's hash covers.
struct Link<'a> {
    prev_hash: &'a str,
    seq: i64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    detail: &'a str,
    source_ip: Option<&'a str>,
}

impl Link<'_> {
    /// SHA-256 over the previous hash and a JSON array of the fields, so no field boundary
    /// is ambiguous.
    fn hash(&self) -> String {
        let fields = serde_json::json!([
            self.prev_hash,
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.target,
            self.outcome,
            self.detail,
            self.source_ip
        ]);
        hex::encode(Sha256::digest(fields.to_string().as_bytes()))
    }
}

/// Appends `event` to the chain inside `tx`.
pub async fn record(tx: &mut Tx, now: UnixTime, event: Event<'_>) -> Result<(), sqlx::Error> {
    // Taking the head row with an UPDATE locks it (PostgreSQL row lock; SQLite write lock), so
    // concurrent writers extend the chain one at a time and never fork it.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut **tx)
        .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev_hash: String = head.try_get("hash")?;
    let actor = event.actor.as_text();
    let detail = event.detail.to_string();
    let hash = Link {
        prev_hash: &prev_hash,
        seq,
        at: now,
        actor: &actor,
        action: event.action,
        target: &event.target,
        outcome: event.outcome.as_str(),
        detail: &detail,
        source_ip: event.source_ip.as_deref(),
    }
    .hash();
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, action, target, outcome, detail, source_ip, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(seq)
    .bind(now)
    .bind(&actor)
    .bind(event.action)
    .bind(&event.target)
    .bind(event.outcome.as_str())
    .bind(&detail)
    .bind(event.source_ip.as_deref())
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&hash).execute(&mut **tx).await?;
    Ok(())
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Every link holds; `events` rows checked.
    Intact { events: i64 },
    /// The first broken link, and why.
    Broken { seq: i64, reason: String },
}

/// Walks the chain from the start and reports the first broken link: a row whose content no
/// longer matches its hash (edited), a gap in the sequence (deleted), a row whose previous
/// hash is not its predecessor's (reordered or spliced), or a head that points past the end.
pub async fn verify(store: &Store) -> Result<Verification, sqlx::Error> {
    let pool = store.pool();
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(pool).await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;

    let mut expected_seq = 1i64;
    let mut prev = GENESIS_HASH.to_owned();
    const PAGE: i64 = 1000;
    loop {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, outcome, detail, source_ip, prev_hash, hash
             FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(expected_seq)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        let count = rows.len() as i64;
        for row in rows {
            let raw_detail: String = row.try_get("detail")?;
            let event = stored_event(&row)?;
            if event.seq != expected_seq {
                return Ok(Verification::Broken {
                    seq: expected_seq,
                    reason: format!("event {expected_seq} is missing (deleted)"),
                });
            }
            if event.prev_hash != prev {
                return Ok(Verification::Broken {
                    seq: event.seq,
                    reason: "previous-hash does not match the preceding event (deleted or reordered)".into(),
                });
            }
            let recomputed = Link {
                prev_hash: &event.prev_hash,
                seq: event.seq,
                at: event.at,
                actor: &event.actor,
                action: &event.action,
                target: &event.target,
                outcome: &event.outcome,
                detail: &raw_detail,
                source_ip: event.source_ip.as_deref(),
            }
            .hash();
            if recomputed != event.hash {
                return Ok(Verification::Broken {
                    seq: event.seq,
                    reason: "content does not match its hash (edited)".into(),
                });
            }
            prev = event.hash;
            expected_seq += 1;
        }
        if count < PAGE {
            break;
        }
    }
    let last = expected_seq - 1;
    if last != head_seq || prev != head_hash {
        return Ok(Verification::Broken {
            seq: last + 1,
            reason: format!(
                "the chain ends at event {last} but its head records event {head_seq} (deleted at the end)"
            ),
        });
    }
    Ok(Verification::Intact { events: last })
}

pub(crate) fn stored_event(row: &sqlx::any::AnyRow) -> Result<StoredEvent, sqlx::Error> {
    let detail: String = row.try_get("detail")?;
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        // Stored detail is always JSON we wrote; a non-JSON value (tampering) is kept as text
        // so verify reports the broken hash rather than failing to read.
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        source_ip: row.try_get("source_ip")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn serialize_japan_time<S: serde::Serializer>(at: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    let text = crate::clock::japan_rfc3339(*at).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}
