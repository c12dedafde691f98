//! R16: the append-only, hash-chained audit log. Every state change and every login attempt
//! calls [`record`] inside the transaction that makes the change, so an event exists exactly
//! when its change does. Events (`audit_events`) carry their own MAC and are never updated;
//! the chain is a table of its own (`audit_links`), one link per event covering its MAC and the
//! link before; `audit_head` holds the newest link so that removing rows at the end is
//! detected too.
//!
//! The links are HMAC-SHA256 under a key derived from the master key, which is not in the
//! database: someone who can write the database can still edit rows, but cannot compute the
//! links that would make the edit pass [`verify`]. Events written before the chain was keyed
//! (`audit_head.keyed_from`) keep their plain SHA-256 links. Truncation, which a key alone
//! cannot reveal, is caught by signed checkpoints kept outside the database ([`checkpoint`]).

pub mod archive;
pub mod checkpoint;
pub mod query;
pub mod seal;
pub mod sign_ins;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::UnixTime;
use crate::crypto::MasterKey;
use crate::store::{AnyQuery, AuditKey, Store, Tx};

/// The label the chain's key is derived from the master key with; it also opens every keyed
/// link's input, so a keyed link can never be read as a plain one.
const CHAIN_LABEL: &str = "sekimori audit chain v1";

/// The audit chain's key for this master key.
pub fn chain_key(master: &MasterKey) -> AuditKey {
    master.derive_key(CHAIN_LABEL.as_bytes())
}

/// HMAC-SHA256 of `message` under `key`, hex encoded.
pub(crate) fn hmac_hex(key: &AuditKey, message: &[u8]) -> String {
    // HMAC takes keys of any length: the error case cannot happen, and an empty result would
    // only ever fail to match.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The store was opened without the master key: nothing can be recorded or verified.
fn no_key() -> sqlx::Error {
    sqlx::Error::Configuration(
        "the audit chain's key is not set: the store must be opened with the master key (sekimori::open_store)".into(),
    )
}

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
    /// The event's place in the chain; None until the sealer has linked it (a few
    /// milliseconds after its transaction committed).
    pub chain_pos: Option<i64>,
    /// The link before it and its own link; None until sealed.
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
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
    /// is ambiguous: the links written before the chain was keyed.
    fn plain_hash(&self) -> String {
        hex::encode(Sha256::digest(self.fields().to_string().as_bytes()))
    }

    /// HMAC-SHA256 under the chain key over the same fields and `keyed_from`, so that the
    /// start of the keyed chain cannot be moved while keyed links exist.
    fn keyed_hash(&self, key: &AuditKey, keyed_from: i64) -> String {
        let input = serde_json::json!([CHAIN_LABEL, keyed_from, self.fields()]);
        hmac_hex(key, input.to_string().as_bytes())
    }

    fn fields(&self) -> serde_json::Value {
        serde_json::json!([
            self.prev_hash,
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.target,
            self.outcome,
            self.detail,
            self.source_ip
        ])
    }
}

/// The label of an event's own MAC (sequence first, seal after: see [`seal`]).
const EVENT_LABEL: &str = "sekimori audit event v2";

/// The MAC of one event: HMAC-SHA256 under the chain key over its sequence number and every
/// field, so that an event cannot be edited, forged or moved to another number even before it
/// is sealed into the chain.
pub(crate) fn event_mac(key: &AuditKey, fields: &EventFields<'_>) -> String {
    let input = serde_json::json!([
        EVENT_LABEL,
        fields.seq,
        fields.at,
        fields.actor,
        fields.action,
        fields.target,
        fields.outcome,
        fields.detail,
        fields.source_ip
    ]);
    hmac_hex(key, input.to_string().as_bytes())
}

/// An event's fields as stored: what its MAC covers.
pub(crate) struct EventFields<'a> {
    pub seq: i64,
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
    pub source_ip: Option<&'a str>,
}

/// Records `event` inside `tx`, the transaction of the change it describes. The event takes
/// the next sequence number and its own MAC.
///
/// On PostgreSQL, where writers run side by side, no writer waits for another here: the
/// number comes from a sequence, and the sealer links the event into the chain shortly after
/// its transaction commits ([`seal`]). On SQLite every write transaction already holds the
/// database's one write lock, so taking the chain's head as well costs no concurrency: the
/// event is sealed in its own transaction, and there is no window in which it is unsealed.
pub async fn record(tx: &mut Tx, now: UnixTime, event: Event<'_>) -> Result<(), sqlx::Error> {
    record_all(tx, &[Pending::new(event, now)]).await
}

/// `text` with every NUL shown as ␀ (U+2400). PostgreSQL's text cannot hold a NUL, and an event
/// that could not be written would fail the change it records; none reaches these fields today
/// (input is parsed before it is logged), but the audit log does not rely on that. The detail
/// is JSON, where a NUL is escaped.
fn nul_shown(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{2400}")
    } else {
        text
    }
}

/// An event ready to be written: owned, so that it can wait for group commit ([`Grouped`]).
#[derive(Debug, Clone)]
pub struct Pending {
    at: UnixTime,
    actor: String,
    action: String,
    target: String,
    outcome: Outcome,
    detail: String,
    source_ip: Option<String>,
}

impl Pending {
    pub fn new(event: Event<'_>, now: UnixTime) -> Self {
        Pending {
            at: now,
            actor: nul_shown(event.actor.as_text()),
            action: nul_shown(event.action.to_owned()),
            target: nul_shown(event.target),
            outcome: event.outcome,
            detail: event.detail.to_string(),
            source_ip: event.source_ip.map(nul_shown),
        }
    }

    /// Binds the columns of `audit_events (seq, at, actor, action, target, outcome, detail,
    /// source_ip, mac)` for this event, in that order.
    fn bind<'q>(&'q self, query: AnyQuery<'q>, seq: i64, mac: &'q str) -> AnyQuery<'q> {
        query
            .bind(seq)
            .bind(self.at)
            .bind(self.actor.as_str())
            .bind(self.action.as_str())
            .bind(self.target.as_str())
            .bind(self.outcome.as_str())
            .bind(self.detail.as_str())
            .bind(self.source_ip.as_deref())
            .bind(mac)
    }

    fn fields(&self, seq: i64) -> EventFields<'_> {
        EventFields {
            seq,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: self.outcome.as_str(),
            detail: &self.detail,
            source_ip: self.source_ip.as_deref(),
        }
    }
}

/// The most events one INSERT statement writes.
const INSERT_CHUNK: usize = 128;

/// Records `events`, in their order, inside `tx`: one statement for their numbers, then on
/// SQLite one query for the events, their links and the head ([`write_linked`]), on
/// PostgreSQL as few INSERTs as their count allows (a power of two rows each, so that few
/// statement texts are prepared).
pub async fn record_all(tx: &mut Tx, events: &[Pending]) -> Result<(), sqlx::Error> {
    let Some(count) = i64::try_from(events.len()).ok().filter(|n| *n > 0) else { return Ok(()) };
    let key = *tx.audit_key().ok_or_else(no_key)?;
    let sealed_inline = tx.dialect() == crate::store::Dialect::Sqlite;
    // Their sequence numbers, in order, and on SQLite the link before the first.
    let (seqs, mut prev) = if sealed_inline {
        let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
            .bind(count)
            .fetch_one(&mut **tx)
            .await?;
        let last: i64 = head.try_get("seq")?;
        let prev: String = head.try_get("hash")?;
        ((last - count + 1..=last).collect::<Vec<i64>>(), Some(prev))
    } else {
        (next_numbers(&mut **tx, count).await?, None)
    };
    if seqs.len() != events.len() {
        return Err(too_few_numbers());
    }
    // Each event's MAC, and when sealed here (SQLite) its link: its position is its number,
    // and its link follows the one before.
    let mut rows = Vec::with_capacity(events.len());
    let mut links = Vec::new();
    for (event, &seq) in events.iter().zip(&seqs) {
        let mac = event_mac(&key, &event.fields(seq));
        if let Some(before) = prev.take() {
            let hash = seal::link(&key, seq, &before, seq, &mac);
            prev = Some(hash.clone());
            links.push(seal::NewLink { position: seq, seq, prev_hash: before, hash });
        }
        rows.push((event, seq, mac));
    }
    if sealed_inline {
        return write_linked(tx, &rows, &links).await;
    }
    let mut rest = &rows[..];
    while !rest.is_empty() {
        let size = chunk_size(rest.len());
        let (chunk, after) = rest.split_at(size);
        rest = after;
        let mut insert = sqlx::query(insert_sql(Insert::EventsUnsealed, size)?);
        for (event, seq, mac) in chunk {
            insert = event.bind(insert, *seq, mac);
        }
        insert.execute(&mut **tx).await?;
    }
    seqs.iter().for_each(|&seq| tx.note_event(seq));
    Ok(())
}

/// PostgreSQL: the next `count` event numbers, in order, in one statement.
async fn next_numbers<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    count: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query("SELECT nextval('audit_events_seq') AS seq FROM generate_series(1, $1) ORDER BY 1")
        .bind(count)
        .fetch_all(executor)
        .await?;
    rows.iter().map(|row| row.try_get("seq")).collect()
}

fn too_few_numbers() -> sqlx::Error {
    sqlx::Error::Protocol("the audit sequence gave too few numbers".into())
}

/// The most events one of SQLite's batch queries writes (13 parameters each).
const LINKED_CHUNK: usize = 64;

/// SQLite: a batch's events, their links and the head's new hash in one query (of three
/// statements) for up to [`LINKED_CHUNK`] events, with a text for each size. Each query is a
/// hand-off to SQLite's thread and back, which on a busy server waits its turn; one per
/// power of two made a batch of 13 events three (BENCHMARKS.md, ninth run). The values are
/// bound, not sent as JSON: SQLite's JSON functions end a string at an escaped NUL, and the
/// stored event must be the one its MAC was computed over.
async fn write_linked(
    tx: &mut Tx,
    rows: &[(&Pending, i64, String)],
    links: &[seal::NewLink],
) -> Result<(), sqlx::Error> {
    if rows.len() != links.len() {
        return Err(sqlx::Error::Protocol("an audit batch with an event without its link".into()));
    }
    for (chunk, chunk_links) in rows.chunks(LINKED_CHUNK).zip(links.chunks(LINKED_CHUNK)) {
        let Some(last) = chunk_links.last() else { break };
        let mut query = sqlx::query(linked_sql(chunk.len())?);
        for (event, seq, mac) in chunk {
            query = event.bind(query, *seq, mac);
        }
        for link in chunk_links {
            query = link.bind(query);
        }
        let written = query.bind(last.hash.as_str()).execute(&mut **tx).await?;
        // Every event, every link and the head: anything less is not the batch that was meant.
        let expected = u64::try_from(2 * chunk.len() + 1).unwrap_or(u64::MAX);
        if written.rows_affected() != expected {
            return Err(sqlx::Error::Protocol(format!(
                "an audit batch wrote {} rows, not {expected}",
                written.rows_affected()
            )));
        }
    }
    Ok(())
}

/// The text of [`write_linked`]'s query for `rows` events (1 to [`LINKED_CHUNK`]), made once.
fn linked_sql(rows: usize) -> Result<&'static str, sqlx::Error> {
    static TEXTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (1..=LINKED_CHUNK)
            .map(|rows| {
                format!(
                    "{EVENTS} VALUES {}; {LINKS} VALUES {}; UPDATE audit_head SET hash = ${} WHERE id = 1;",
                    values(rows, EVENT_WIDTH, 1),
                    values(rows, LINK_WIDTH, rows * EVENT_WIDTH + 1),
                    rows * (EVENT_WIDTH + LINK_WIDTH) + 1
                )
            })
            .collect()
    });
    rows.checked_sub(1)
        .and_then(|index| TEXTS.get(index))
        .map(String::as_str)
        .ok_or_else(|| sqlx::Error::Protocol(format!("no INSERT of {rows} linked audit events")))
}

/// The statements that write rows of the audit tables, a power of two rows at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Events and, in the same statement, their entries on the sealer's work list (PostgreSQL).
    EventsUnsealed,
    /// Links (the sealer).
    Links,
}

const EVENTS: &str = "INSERT INTO audit_events (seq, at, actor, action, target, outcome, detail, source_ip, mac)";
const LINKS: &str = "INSERT INTO audit_links (chain_pos, seq, prev_hash, hash)";
const EVENT_WIDTH: usize = 9;
const LINK_WIDTH: usize = 4;

impl Insert {
    const ALL: [Insert; 2] = [Insert::EventsUnsealed, Insert::Links];

    /// Parameters per row.
    #[cfg(test)]
    fn width(self) -> usize {
        match self {
            Insert::EventsUnsealed => EVENT_WIDTH,
            Insert::Links => LINK_WIDTH,
        }
    }

    /// The text for `rows` rows. Parameters are numbered from 1 in the order they are bound.
    fn text(self, rows: usize) -> String {
        match self {
            // One statement, one round trip: the event and its place on the work list.
            Insert::EventsUnsealed => format!(
                "WITH written AS ({EVENTS} VALUES {} RETURNING seq)
                 INSERT INTO audit_unsealed (seq) SELECT seq FROM written",
                values(rows, EVENT_WIDTH, 1)
            ),
            Insert::Links => format!("{LINKS} VALUES {}", values(rows, LINK_WIDTH, 1)),
        }
    }
}

/// `($first, …), (…), …`: `rows` tuples of `width` parameters.
fn values(rows: usize, width: usize, first: usize) -> String {
    (0..rows)
        .map(|row| {
            let params = (0..width).map(|k| format!("${}", first + row * width + k)).collect::<Vec<_>>();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The INSERT of `rows` rows (a power of two up to [`INSERT_CHUNK`]) in `form`, its text made
/// once: every audited write in the system runs one.
pub(crate) fn insert_sql(form: Insert, rows: usize) -> Result<&'static str, sqlx::Error> {
    static TEXTS: std::sync::LazyLock<Vec<Vec<String>>> = std::sync::LazyLock::new(|| {
        Insert::ALL
            .iter()
            .map(|form| {
                let mut texts = Vec::new();
                let mut rows = 1;
                while rows <= INSERT_CHUNK {
                    texts.push(form.text(rows));
                    rows *= 2;
                }
                texts
            })
            .collect()
    });
    let form_index = Insert::ALL.iter().position(|f| *f == form).unwrap_or_default();
    TEXTS
        .get(form_index)
        .and_then(|texts| texts.get(rows.trailing_zeros() as usize))
        .filter(|_| rows.is_power_of_two())
        .map(String::as_str)
        .ok_or_else(|| sqlx::Error::Protocol(format!("no INSERT of {rows} audit rows")))
}

/// The rows of the next INSERT when `remaining` are left: the largest power of two that fits,
/// at most [`INSERT_CHUNK`].
pub(crate) fn chunk_size(remaining: usize) -> usize {
    let fit = usize::BITS - 1 - remaining.leading_zeros();
    (1usize << fit).min(INSERT_CHUNK)
}

impl crate::store::Batch for Pending {
    type Outcome = ();

    /// Events alone read nothing, so a batch waits only for its statements and its commit: on
    /// two cores shared with PostgreSQL, two committers (bigger batches, fewer commits) gave
    /// 8 % more client_credentials tokens than four, and one no more than two (BENCHMARKS.md,
    /// eighth run). Two keep a batch under way while another waits for a distant database.
    const POSTGRES_COMMITTERS: usize = 2;

    fn write<'a>(tx: &'a mut Tx, items: &'a [Self]) -> crate::store::Written<'a, ()> {
        Box::pin(async move {
            record_all(tx, items).await?;
            Ok(vec![(); items.len()])
        })
    }

    /// PostgreSQL: events alone need no transaction of their own ([`record_committed`]).
    fn write_committed<'a>(store: &'a Store, items: &'a [Self]) -> Option<crate::store::Written<'a, ()>> {
        (store.dialect() == crate::store::Dialect::Postgres).then(|| -> crate::store::Written<'a, ()> {
            Box::pin(async move {
                record_committed(store, items).await?;
                Ok(vec![(); items.len()])
            })
        })
    }
}

/// PostgreSQL: `events`, each with its place on the sealer's work list, in **one statement
/// that commits on its own** — no `BEGIN`, no `COMMIT`: a statement is atomic, so the batch is
/// written whole or not at all. With their numbers, two round trips for any batch, where a
/// transaction took a `BEGIN`, the numbers, an INSERT per power of two and a `COMMIT`
/// (BENCHMARKS.md, tenth run). The rows go as one JSON array, so that one statement text serves
/// every size; no NUL can be in it ([`Pending::new`] shows one as ␀ in the text fields, and
/// the detail is JSON, where it is escaped), and PostgreSQL's `json` reads every other string
/// back exactly as written — the event stored is the one its MAC was computed over. For
/// requests whose only write is their event (group commit, [`Grouped`]).
pub async fn record_committed(store: &Store, events: &[Pending]) -> Result<(), sqlx::Error> {
    const SQL: &str = "WITH written AS (
             INSERT INTO audit_events (seq, at, actor, action, target, outcome, detail, source_ip, mac)
             SELECT seq, at, actor, action, target, outcome, detail, source_ip, mac
             FROM json_to_recordset(CAST($1 AS json)) AS r(seq BIGINT, at BIGINT, actor TEXT, action TEXT,
                  target TEXT, outcome TEXT, detail TEXT, source_ip TEXT, mac TEXT)
             RETURNING seq)
         INSERT INTO audit_unsealed (seq) SELECT seq FROM written";
    let Some(count) = i64::try_from(events.len()).ok().filter(|n| *n > 0) else { return Ok(()) };
    let key = *store.audit_key().ok_or_else(no_key)?;
    let seqs = next_numbers(store.pool(), count).await?;
    if seqs.len() != events.len() {
        return Err(too_few_numbers());
    }
    let rows: Vec<serde_json::Value> = events
        .iter()
        .zip(&seqs)
        .map(|(event, &seq)| {
            let mac = event_mac(&key, &event.fields(seq));
            serde_json::json!({
                "seq": seq, "at": event.at, "actor": event.actor, "action": event.action, "target": event.target,
                "outcome": event.outcome.as_str(), "detail": event.detail, "source_ip": event.source_ip, "mac": mac,
            })
        })
        .collect();
    let written = sqlx::query(SQL).bind(serde_json::Value::Array(rows).to_string()).execute(store.pool()).await?;
    if written.rows_affected() != u64::try_from(count).unwrap_or(u64::MAX) {
        return Err(sqlx::Error::Protocol(format!(
            "an audit batch wrote {} rows, not {count}",
            written.rows_affected()
        )));
    }
    store.committed_events().push(&seqs);
    Ok(())
}

/// Group commit for requests whose only write is their audit event (a system's own token):
/// the events waiting at the same moment are written together and committed once
/// (`store::group`); each caller returns when its event is committed.
#[derive(Debug, Clone)]
pub struct Grouped(crate::store::GroupCommit<Pending>);

impl Grouped {
    pub fn start(store: &Store) -> Self {
        Grouped(crate::store::GroupCommit::start(store.clone()))
    }

    /// Records `event` at `now` in a transaction of its own or shared with others; returns
    /// when it is committed.
    pub async fn record(&self, event: Event<'_>, now: UnixTime) -> Result<(), sqlx::Error> {
        self.0.submit(Pending::new(event, now)).await
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Every link holds; `events` rows checked: the chain from position `first` to `last`
    /// (links from `keyed_from` on are keyed), and `unsealed` committed events not yet linked
    /// into it, each checked against its own MAC.
    Intact { events: i64, first: i64, last: i64, keyed_from: i64, unsealed: i64 },
    /// The first broken link (a chain position, or for an unsealed event its sequence number),
    /// and why.
    Broken { seq: i64, reason: String },
}

/// The chain's bookkeeping row. Its `seq` and `anchor_seq` are chain positions.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub seq: i64,
    pub hash: String,
    pub keyed_from: i64,
    /// The first position linked by the sealer (events before it have the earlier links).
    pub sealed_from: i64,
    /// The last archived (exported and removed) event; 0 and the genesis hash when none.
    pub anchor_seq: i64,
    pub anchor_hash: String,
}

pub(crate) async fn head(executor: impl sqlx::Executor<'_, Database = sqlx::Any>) -> Result<Head, sqlx::Error> {
    let row =
        sqlx::query("SELECT seq, hash, keyed_from, sealed_from, anchor_seq, anchor_hash FROM audit_head WHERE id = 1")
            .fetch_one(executor)
            .await?;
    Ok(Head {
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        keyed_from: row.try_get("keyed_from")?,
        sealed_from: row.try_get("sealed_from")?,
        anchor_seq: row.try_get("anchor_seq")?,
        anchor_hash: row.try_get("anchor_hash")?,
    })
}

/// The event that records an archive names the anchor it left; the anchor row must agree with
/// the newest such event, so that moving the anchor (to hide removed events) is seen.
pub const ARCHIVED_ACTION: &str = "audit.archived";

/// The event the sealer records when events this process committed are gone before it could
/// seal them: deleted by someone with access to the database. Its presence breaks the chain.
pub const MISSING_ACTION: &str = "audit.unsealed_events_missing";

/// Whether the event carries a MAC and its content still matches it.
fn mac_holds(key: &AuditKey, event: &archive::ArchivedEvent) -> bool {
    event
        .mac
        .as_deref()
        .is_some_and(|mac| crate::crypto::ct_eq(event_mac(key, &event.fields()).as_bytes(), mac.as_bytes()))
}

/// Why a sealed event's link does not hold, if it does not. `keyed_from` and `sealed_from`
/// say which of the three link formats its position uses.
pub(crate) fn link_fault(
    key: &AuditKey,
    keyed_from: i64,
    sealed_from: i64,
    event: &archive::ArchivedEvent,
) -> Option<&'static str> {
    let position = event.position();
    if position >= sealed_from {
        let Some(mac) = event.mac.as_deref() else {
            return Some("the event has no MAC (inserted by someone without the audit key)");
        };
        if !mac_holds(key, event) {
            return Some("content does not match its MAC (edited, or written by someone without the audit key)");
        }
        let link = seal::link(key, position, &event.prev_hash, event.seq, mac);
        if !crate::crypto::ct_eq(link.as_bytes(), event.hash.as_bytes()) {
            return Some("the link does not match (rewritten by someone without the audit key)");
        }
        return None;
    }
    if event.seq != position {
        return Some("an event of the earlier chain was moved to another position");
    }
    let link = event.link();
    let keyed = position >= keyed_from;
    let recomputed = if keyed { link.keyed_hash(key, keyed_from) } else { link.plain_hash() };
    if crate::crypto::ct_eq(recomputed.as_bytes(), event.hash.as_bytes()) {
        None
    } else if keyed {
        Some("content does not match its keyed hash (edited, or rewritten by someone without the audit key)")
    } else {
        Some("content does not match its hash (edited)")
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "seq, at, actor, action, target, outcome, detail, source_ip, mac, chain_pos, prev_hash, hash";

/// Walks the chain from the archive's anchor (or the start) in one consistent snapshot and
/// reports the first broken link: a row whose content no longer matches its MAC or hash
/// (edited, or rewritten by someone without the key), a gap in the chain positions (deleted),
/// a row whose previous hash is not its predecessor's (reordered or spliced), a head that
/// points past the end or short of it, an anchor that is not the one the last archive
/// recorded, or an event the sealer found deleted before it was sealed. Then it checks every
/// committed event not yet sealed against its own MAC; on SQLite, where sequence numbers have
/// no gaps, a missing number among them is reported too.
pub async fn verify(store: &Store) -> Result<Verification, sqlx::Error> {
    let key = *store.audit_key().ok_or_else(no_key)?;
    let mut tx = store.begin_read().await?;
    if store.dialect() == crate::store::Dialect::Postgres {
        // One snapshot for the whole walk: events sealed meanwhile neither vanish from the
        // unsealed ones nor appear past the head.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
    }
    let verification = walk(&mut tx, &key, store.dialect()).await;
    let _ = tx.rollback().await;
    verification
}

async fn walk(tx: &mut Tx, key: &AuditKey, dialect: crate::store::Dialect) -> Result<Verification, sqlx::Error> {
    let head = head(&mut **tx).await?;
    let broken = |seq: i64, reason: String| Ok(Verification::Broken { seq, reason });
    if head.keyed_from < 1 || head.keyed_from > head.seq + 1 {
        return broken(
            head.keyed_from,
            format!(
                "the start of the keyed chain (event {}) lies outside the chain (events up to {}): the head row was altered",
                head.keyed_from, head.seq
            ),
        );
    }
    if head.sealed_from < head.keyed_from || head.sealed_from > head.seq + 1 {
        return broken(
            head.sealed_from,
            "the start of the sealed chain lies outside the chain: the head row was altered".into(),
        );
    }
    if head.anchor_seq < 0 || head.anchor_seq > head.seq {
        return broken(head.anchor_seq, "the archive anchor lies outside the chain: the head row was altered".into());
    }
    let sqlite = dialect == crate::store::Dialect::Sqlite;

    let mut expected = head.anchor_seq + 1;
    let mut prev = head.anchor_hash.clone();
    // (last_seq, last_hash) named by the newest archive event walked.
    let mut archived: Option<(i64, String)> = None;
    const PAGE: i64 = 1000;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM audit_log WHERE chain_pos >= $1 AND chain_pos <= $2 ORDER BY chain_pos LIMIT $3"
        ))
        .bind(expected)
        .bind(head.seq)
        .bind(PAGE)
        .fetch_all(&mut **tx)
        .await?;
        let count = rows.len() as i64;
        for row in rows {
            let event = archive::ArchivedEvent::from_row(&row)?;
            let position = event.position();
            if position != expected {
                return broken(expected, format!("event {expected} is missing (deleted)"));
            }
            if event.prev_hash != prev {
                return broken(
                    position,
                    "previous-hash does not match the preceding event (deleted or reordered)".into(),
                );
            }
            if let Some(reason) = link_fault(key, head.keyed_from, head.sealed_from, &event) {
                return broken(position, reason.into());
            }
            // SQLite gives numbers under its one write lock and the sealer takes them in
            // order: a position and its number part only where an event vanished unsealed.
            if sqlite && event.seq != position {
                return broken(position, format!("event {position} is missing (deleted before it was sealed)"));
            }
            if event.action == ARCHIVED_ACTION && event.outcome == Outcome::Success.as_str() {
                archived = serde_json::from_str(&event.detail).ok().as_ref().and_then(archive::anchor_named);
            }
            if event.action == MISSING_ACTION {
                return broken(
                    position,
                    format!("the sealer found events removed before they were sealed: {}", event.detail),
                );
            }
            prev = event.hash;
            expected += 1;
        }
        if count < PAGE {
            break;
        }
    }
    let last = expected - 1;
    if last != head.seq || prev != head.hash {
        return broken(
            last + 1,
            format!("the chain ends at event {last} but its head records event {} (deleted at the end)", head.seq),
        );
    }
    let newest: Option<i64> =
        sqlx::query("SELECT MAX(chain_pos) AS n FROM audit_links").fetch_one(&mut **tx).await?.try_get("n")?;
    if newest.is_some_and(|newest| newest > head.seq) {
        return broken(
            head.seq + 1,
            format!("events exist after event {}, the newest its head records (head moved back)", head.seq),
        );
    }
    // The committed events without a link: every event is looked at, not only those on the
    // sealer's work list, which someone who can write the database could empty.
    let mut unsealed = 0;
    let mut after = i64::MIN;
    let mut next_number = head.seq + 1;
    loop {
        let rows = sqlx::query(
            "SELECT e.seq, e.at, e.actor, e.action, e.target, e.outcome, e.detail, e.source_ip, e.mac, u.seq AS listed
             FROM audit_events e LEFT JOIN audit_unsealed u ON u.seq = e.seq
             WHERE e.seq > $1 AND NOT EXISTS (SELECT 1 FROM audit_links l WHERE l.seq = e.seq)
             ORDER BY e.seq LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut **tx)
        .await?;
        let count = rows.len() as i64;
        for row in rows {
            let event = archive::ArchivedEvent::unsealed_from_row(&row)?;
            let seq = event.seq;
            if sqlite && seq != next_number {
                return broken(next_number, format!("event {next_number} is missing (deleted before it was sealed)"));
            }
            if !mac_holds(key, &event) {
                return broken(
                    seq,
                    format!("unsealed event {seq}: content does not match its MAC (edited, moved, or written by someone without the audit key)"),
                );
            }
            if row.try_get::<Option<i64>, _>("listed")?.is_none() {
                return broken(
                    seq,
                    format!(
                        "unsealed event {seq} was taken off the sealer's work list (so that it would never be sealed)"
                    ),
                );
            }
            // An archive's event recorded moments ago may not be sealed yet.
            if event.action == ARCHIVED_ACTION && event.outcome == Outcome::Success.as_str() {
                archived = serde_json::from_str(&event.detail).ok().as_ref().and_then(archive::anchor_named);
            }
            unsealed += 1;
            after = seq;
            next_number = seq + 1;
        }
        if count < PAGE {
            break;
        }
    }
    if head.anchor_seq > 0 && archived.as_ref() != Some(&(head.anchor_seq, head.anchor_hash.clone())) {
        return broken(
            head.anchor_seq,
            format!(
                "the chain starts after event {} but no archive recorded that anchor (events removed, anchor moved)",
                head.anchor_seq
            ),
        );
    }

    Ok(Verification::Intact {
        events: last - head.anchor_seq + unsealed,
        first: head.anchor_seq + 1,
        last,
        keyed_from: head.keyed_from,
        unsealed,
    })
}

pub(crate) fn stored_event(row: &sqlx::any::AnyRow) -> Result<StoredEvent, sqlx::Error> {
    let raw = archive::ArchivedEvent::from_row(row)?;
    Ok(StoredEvent {
        seq: raw.seq,
        at: raw.at,
        actor: raw.actor,
        action: raw.action,
        target: raw.target,
        outcome: raw.outcome,
        // Stored detail is always JSON we wrote; a non-JSON value (tampering) is kept as text
        // so verify reports the broken hash rather than failing to read.
        detail: serde_json::from_str(&raw.detail).unwrap_or(serde_json::Value::String(raw.detail)),
        source_ip: raw.source_ip,
        chain_pos: raw.chain_pos,
        // Empty until sealed.
        prev_hash: Some(raw.prev_hash).filter(|h| !h.is_empty()),
        hash: Some(raw.hash).filter(|h| !h.is_empty()),
    })
}

fn serialize_japan_time<S: serde::Serializer>(at: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    let text = crate::clock::japan_rfc3339(*at).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_take_powers_of_two_and_add_up() {
        for n in 1..=600 {
            let (mut left, mut statements) = (n, 0);
            while left > 0 {
                let size = chunk_size(left);
                assert!(size.is_power_of_two() && size <= INSERT_CHUNK && size <= left, "{n}: {size}");
                left -= size;
                statements += 1;
            }
            assert!(statements <= 8 + n / INSERT_CHUNK, "{n} events in {statements} statements");
        }
    }

    /// SQLite's batch query for every size: each event's nine parameters, then each link's
    /// four, then the head's hash, each number once and none beyond.
    #[test]
    fn each_linked_text_binds_its_events_links_and_head() {
        for rows in 1..=LINKED_CHUNK {
            let sql = linked_sql(rows).unwrap();
            assert_eq!(sql.matches("($").count(), 2 * rows, "{rows}");
            let last = rows * (EVENT_WIDTH + LINK_WIDTH) + 1;
            for n in 1..last {
                let uses = sql.matches(&format!("${n},")).count() + sql.matches(&format!("${n})")).count();
                assert_eq!(uses, 1, "{rows}: ${n}");
            }
            assert!(sql.ends_with(&format!("SET hash = ${last} WHERE id = 1;")), "{rows}");
            assert!(!sql.contains(&format!("${}", last + 1)), "{rows}");
        }
        assert!(linked_sql(0).is_err());
        assert!(linked_sql(LINKED_CHUNK + 1).is_err());
    }

    #[test]
    fn each_insert_text_has_its_parameters_a_row() {
        for form in Insert::ALL {
            let width = form.width();
            let mut rows = 1;
            while rows <= INSERT_CHUNK {
                let sql = insert_sql(form, rows).unwrap();
                assert_eq!(sql.matches("($").count(), rows, "{form:?} {rows}");
                for n in 1..=rows * width {
                    assert_eq!(
                        sql.matches(&format!("${n},")).count() + sql.matches(&format!("${n})")).count(),
                        1,
                        "{form:?} {rows}: ${n}"
                    );
                }
                assert!(!sql.contains(&format!("${}", rows * width + 1)), "{form:?} {rows}");
                rows *= 2;
            }
            assert!(insert_sql(form, 3).is_err());
            assert!(insert_sql(form, 2 * INSERT_CHUNK).is_err());
        }
    }
}
