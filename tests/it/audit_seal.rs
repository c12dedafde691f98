//! R16 with an audit chain that is not a global lock: events are written with their own MAC in
//! the transaction of their change and sealed into the chain shortly after. Someone who can
//! write the database tampers with events before and after they are sealed — edits, deletes,
//! reorders, inserts, rewrites with a recomputed chain, truncates the tail — and each is
//! reported; writers running at once all land in one unbroken chain; and a server killed with
//! SIGKILL while 200 token requests are in flight loses no event of a committed change.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::json;
use sqlx::{Executor, Row};

use crate::common::{drop_database, fresh_database, Db};
use sekimori::audit::{self, seal, Actor, Event, Verification};
use sekimori::store::Store;

/// A store on a fresh database with the audit key set and no sealer running: what it records
/// stays unsealed until the test seals it.
async fn store(db: Db) -> (String, Store) {
    let url = fresh_database(db).await;
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.set_audit_key(rand::random()).unwrap();
    (url, store)
}

/// Records `n` events, each in its own committed transaction.
async fn record(store: &Store, n: usize) {
    for i in 0..n {
        let mut tx = store.begin().await.unwrap();
        Event::success(&Actor::System, "test.event", format!("thing:{i}"), json!({ "i": i }))
            .record(&mut tx, 1_790_000_000 + i as i64)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn disable_guard(store: &Store) {
    match store.dialect() {
        sekimori::store::Dialect::Sqlite => {
            for trigger in
                ["audit_events_no_update", "audit_events_no_delete", "audit_links_no_update", "audit_links_no_delete"]
            {
                store.pool().execute(format!("DROP TRIGGER {trigger}").as_str()).await.unwrap();
            }
        }
        sekimori::store::Dialect::Postgres => {
            store.pool().execute("ALTER TABLE audit_events DISABLE TRIGGER USER").await.unwrap();
            store.pool().execute("ALTER TABLE audit_links DISABLE TRIGGER USER").await.unwrap();
        }
    }
}

async fn seqs(store: &Store) -> Vec<i64> {
    sqlx::query("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("seq").unwrap())
        .collect()
}

async fn broken(store: &Store, what: &str) -> String {
    match audit::verify(store).await.unwrap() {
        Verification::Broken { reason, .. } => reason,
        intact => panic!("{what}: not seen: {intact:?}"),
    }
}

/// Swaps the content (and MACs) of two events, keeping their numbers: a reordering.
async fn swap(store: &Store, a: i64, b: i64) {
    let pool = store.pool();
    let columns = ["at", "actor", "action", "target", "outcome", "detail", "source_ip", "mac"];
    let read = |seq: i64| sqlx::query("SELECT * FROM audit_events WHERE seq = $1").bind(seq).fetch_one(pool);
    let (row_a, row_b) = (read(a).await.unwrap(), read(b).await.unwrap());
    for (target, from) in [(a, &row_b), (b, &row_a)] {
        for column in columns {
            let sql = format!("UPDATE audit_events SET {column} = $1 WHERE seq = $2");
            let query = if column == "at" {
                sqlx::query(&sql).bind(from.try_get::<i64, _>(column).unwrap())
            } else {
                sqlx::query(&sql).bind(from.try_get::<Option<String>, _>(column).unwrap())
            };
            query.bind(target).execute(pool).await.unwrap();
        }
    }
}

/// Links every event, sealed or not, with plain SHA-256 from the genesis on, in number order,
/// empties the sealer's work list and moves the head: the chain an attacker without the key
/// can compute.
async fn recompute_plain_chain(store: &Store) {
    let pool = store.pool();
    let rows = sqlx::query("SELECT * FROM audit_events ORDER BY seq").fetch_all(pool).await.unwrap();
    pool.execute("DELETE FROM audit_links").await.unwrap();
    pool.execute("DELETE FROM audit_unsealed").await.unwrap();
    pool.execute("UPDATE audit_events SET mac = NULL").await.unwrap();
    let mut prev = audit::GENESIS_HASH.to_owned();
    let mut position = 0;
    for row in rows {
        position += 1;
        let hash = crate::audit_tamper::plain_hash(&row, &prev);
        sqlx::query("INSERT INTO audit_links (chain_pos, seq, prev_hash, hash) VALUES ($1, $2, $3, $4)")
            .bind(position)
            .bind(row.try_get::<i64, _>("seq").unwrap())
            .bind(&prev)
            .bind(&hash)
            .execute(pool)
            .await
            .unwrap();
        prev = hash;
    }
    // keyed_from and sealed_from stay: moving them past every event makes the whole log look
    // older than the keyed chain, which only a checkpoint reveals (audit_tamper.rs).
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2").bind(position).bind(&prev).execute(pool).await.unwrap();
}

/// Each kind of tampering, on a fresh log of ten events, sealed (`sealed`) or not. (On SQLite
/// every event is sealed as it is written: there, both variants tamper with sealed events.)
async fn tamper(db: Db, sealed: bool, kind: &str) {
    let (url, store) = store(db).await;
    let mut watch = seal::Watch::default();
    record(&store, 10).await;
    let unsealed_before = if matches!(db, Db::Sqlite) { 0 } else { 10 };
    // What `/metrics` shows: how many wait, and the age of the first (recorded at …000).
    let lag = if matches!(db, Db::Sqlite) { (0, 0) } else { (10, 100) };
    assert_eq!(seal::lag(&store, 1_790_000_100).await.unwrap(), lag);
    if sealed {
        assert_eq!(seal::round(&store, &mut watch, 1_790_000_100).await.unwrap(), unsealed_before as u64);
    }
    let Verification::Intact { events, unsealed, last, .. } = audit::verify(&store).await.unwrap() else {
        panic!("untouched log broken")
    };
    let expected_unsealed = if sealed { 0 } else { unsealed_before };
    assert_eq!((events, unsealed, last), (10, expected_unsealed, 10 - expected_unsealed));
    let all = seqs(&store).await;
    let (fifth, last_seq) = (all[4], all[9]);
    disable_guard(&store).await;
    let pool = store.pool();
    let what = format!("{kind} of {} events on {db:?}", if sealed { "sealed" } else { "unsealed" });
    match kind {
        "edit" => {
            sqlx::query("UPDATE audit_events SET detail = '{\"i\":99}' WHERE seq = $1")
                .bind(fifth)
                .execute(pool)
                .await
                .unwrap();
            assert!(broken(&store, &what).await.contains("MAC"), "{what}");
        }
        "reorder" => {
            swap(&store, all[3], all[5]).await;
            assert!(broken(&store, &what).await.contains("MAC"), "{what}");
        }
        "insert" => {
            // A forged event placed between two others (its number unused), sealed or not as
            // its neighbours are.
            let seq = last_seq + 100;
            sqlx::query(
                "INSERT INTO audit_events (seq, at, actor, action, target, outcome, detail, source_ip, mac)
                 VALUES ($1, 1790000004, 'system', 'test.event', 'thing:forged', 'success', '{}', NULL, $2)",
            )
            .bind(seq)
            .bind("ab".repeat(32))
            .execute(pool)
            .await
            .unwrap();
            if sealed {
                // Spliced into the chain at position 5, the rest moved up.
                pool.execute("UPDATE audit_links SET chain_pos = chain_pos + 1000 WHERE chain_pos >= 5").await.unwrap();
                pool.execute("UPDATE audit_links SET chain_pos = chain_pos - 999 WHERE chain_pos >= 1000")
                    .await
                    .unwrap();
                sqlx::query("INSERT INTO audit_links (chain_pos, seq, prev_hash, hash) VALUES (5, $1, '', '')")
                    .bind(seq)
                    .execute(pool)
                    .await
                    .unwrap();
            } else {
                // Put on the sealer's work list as a writer would.
                sqlx::query("INSERT INTO audit_unsealed (seq) VALUES ($1)").bind(seq).execute(pool).await.unwrap();
            }
            broken(&store, &what).await;
        }
        "rewrite" => {
            recompute_plain_chain(&store).await;
            broken(&store, &what).await;
        }
        "delete" => {
            sqlx::query("DELETE FROM audit_events WHERE seq = $1").bind(fifth).execute(pool).await.unwrap();
            if !sealed {
                // The sealer of the process that committed it finds it gone and says so in the
                // chain.
                seal::round(&store, &mut watch, 1_790_000_200).await.unwrap();
            }
            let reason = broken(&store, &what).await;
            assert!(reason.contains("missing") || reason.contains("removed before"), "{what}: {reason}");
        }
        "unlist" => {
            // Taken off the sealer's work list, so that it would stay unsealed (and could be
            // removed later unseen). On SQLite, where every event is linked as it is written,
            // the same state is reached by removing the last event's link and moving the head
            // back.
            assert!(!sealed);
            if matches!(db, Db::Sqlite) {
                sqlx::query("DELETE FROM audit_links WHERE seq = $1").bind(last_seq).execute(pool).await.unwrap();
                pool.execute(
                    "UPDATE audit_head SET seq = seq - 1, hash = (SELECT hash FROM audit_links WHERE chain_pos = 9)",
                )
                .await
                .unwrap();
            } else {
                sqlx::query("DELETE FROM audit_unsealed WHERE seq = $1").bind(fifth).execute(pool).await.unwrap();
                // The sealer seals the others; the fifth stays behind.
                seal::round(&store, &mut watch, 1_790_000_200).await.unwrap();
            }
            let reason = broken(&store, &what).await;
            assert!(reason.contains("taken off the sealer's work list"), "{what}: {reason}");
        }
        "truncate" => {
            let cut: Vec<i64> = all[7..].to_vec();
            for seq in &cut {
                sqlx::query("DELETE FROM audit_events WHERE seq = $1").bind(seq).execute(pool).await.unwrap();
            }
            // (Sealed events cut off with the head moved back: a checkpoint tells, below.)
            assert!(!sealed);
            seal::round(&store, &mut watch, 1_790_000_200).await.unwrap();
            let reason = broken(&store, &what).await;
            assert!(reason.contains("removed before") || reason.contains("deleted at the end"), "{what}: {reason}");
        }
        other => panic!("no such tampering: {other}"),
    }
    store.close().await;
    drop_database(&url).await;
}

/// Truncating sealed events and moving the head back is caught by a checkpoint taken before.
async fn truncated_sealed_tail_is_caught_by_a_checkpoint(db: Db) {
    let (url, store) = store(db).await;
    record(&store, 10).await;
    seal::seal(&store, 1_790_000_100).await.unwrap();
    let key = [9u8; 32];
    let checkpoint = audit::checkpoint::take(&store, &key, 1_790_000_100).await.unwrap();
    let line = serde_json::to_string(&checkpoint).unwrap();
    disable_guard(&store).await;
    let pool = store.pool();
    pool.execute("DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_links WHERE chain_pos > 7)")
        .await
        .unwrap();
    pool.execute("DELETE FROM audit_links WHERE chain_pos > 7").await.unwrap();
    pool.execute(
        "UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_links WHERE chain_pos = 7) WHERE id = 1",
    )
    .await
    .unwrap();
    assert!(matches!(audit::verify(&store).await.unwrap(), Verification::Intact { .. }), "the database alone agrees");
    let check = audit::checkpoint::check_file(&store, &key, &line).await.unwrap();
    assert!(check.failures.iter().any(|f| f.contains("truncated")), "{:?}", check.failures);
    store.close().await;
    drop_database(&url).await;
}

/// An entry put back on the sealer's work list for an event sealed long ago (by someone who can
/// write the database) neither stops the sealer nor links the event twice.
async fn an_entry_put_back_on_the_work_list_does_not_stop_the_sealer(db: Db) {
    let (url, store) = store(db).await;
    record(&store, 5).await;
    seal::seal(&store, 1_790_000_100).await.unwrap();
    let third = seqs(&store).await[2];
    sqlx::query("INSERT INTO audit_unsealed (seq) VALUES ($1)").bind(third).execute(store.pool()).await.unwrap();
    record(&store, 3).await;
    let written_unsealed = if matches!(db, Db::Sqlite) { 0 } else { 3 };
    assert_eq!(seal::seal(&store, 1_790_000_200).await.unwrap(), written_unsealed);
    match audit::verify(&store).await.unwrap() {
        Verification::Intact { events, unsealed, last, .. } => assert_eq!((events, unsealed, last), (8, 0, 8)),
        broken => panic!("{broken:?}"),
    }
    let listed: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_unsealed")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(listed, 0, "the stale entry left the list");
    store.close().await;
    drop_database(&url).await;
}

/// An event removed before it was sealed while its entry stays on the work list is found by a
/// sealer that did not commit it (another node's: no `Watch` here) and recorded in the chain.
/// On SQLite the event was sealed as it was written; removing it breaks the chain as well.
async fn an_event_removed_before_it_was_sealed_is_found_by_any_sealer(db: Db) {
    let (url, store) = store(db).await;
    record(&store, 6).await;
    let fourth = seqs(&store).await[3];
    disable_guard(&store).await;
    sqlx::query("DELETE FROM audit_events WHERE seq = $1").bind(fourth).execute(store.pool()).await.unwrap();
    seal::seal(&store, 1_790_000_200).await.unwrap();
    let reason = broken(&store, "an event removed before it was sealed").await;
    match db {
        Db::Sqlite => assert!(reason.contains("missing"), "{reason}"),
        Db::Postgres => assert!(
            reason.contains("removed before they were sealed") && reason.contains(&fourth.to_string()),
            "{reason}"
        ),
    }
    store.close().await;
    drop_database(&url).await;
}

macro_rules! tampering {
    ($($name:ident: $sealed:expr, $kind:expr;)*) => {
        $(
            async fn $name(db: Db) {
                tamper(db, $sealed, $kind).await;
            }
        )*
        on_both_databases!(
            $($name,)*
            truncated_sealed_tail_is_caught_by_a_checkpoint,
            an_entry_put_back_on_the_work_list_does_not_stop_the_sealer,
            an_event_removed_before_it_was_sealed_is_found_by_any_sealer,
            concurrent_writers_and_sealers_make_one_chain,
            group_commit_answers_each_job_with_its_own_outcome,
            grouped_events_are_written_in_batches_into_one_chain,
            a_batch_of_events_is_stored_as_given,
            killed_with_token_requests_in_flight_loses_no_event,
        );
    };
}

tampering! {
    edited_unsealed_event_is_reported: false, "edit";
    reordered_unsealed_events_are_reported: false, "reorder";
    inserted_unsealed_event_is_reported: false, "insert";
    rewritten_unsealed_events_are_reported: false, "rewrite";
    deleted_unsealed_event_is_reported: false, "delete";
    truncated_unsealed_tail_is_reported: false, "truncate";
    unlisted_unsealed_event_is_reported: false, "unlist";
    edited_sealed_event_is_reported: true, "edit";
    reordered_sealed_events_are_reported: true, "reorder";
    inserted_sealed_event_is_reported: true, "insert";
    rewritten_sealed_chain_is_reported: true, "rewrite";
    deleted_sealed_event_is_reported: true, "delete";
}

/// Writers at once, some of which roll back, end up in one unbroken chain with every
/// committed event and no other; concurrent sealers take turns.
async fn concurrent_writers_and_sealers_make_one_chain(db: Db) {
    let (url, store) = store(db).await;
    let writers: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                Event::success(&Actor::System, "test.event", format!("w:{i}"), json!({}))
                    .record(&mut tx, 1)
                    .await
                    .unwrap();
                Event::success(&Actor::System, "test.second", format!("w:{i}"), json!({}))
                    .record(&mut tx, 1)
                    .await
                    .unwrap();
                if i % 7 == 0 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    let sealers: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    seal::seal(&store, 1_790_000_100).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    for task in writers.into_iter().chain(sealers) {
        task.await.unwrap();
    }
    seal::seal(&store, 1_790_000_100).await.unwrap();
    let committed = 2 * (200 - (200 + 6) / 7_i64);
    match audit::verify(&store).await.unwrap() {
        Verification::Intact { events, unsealed, last, .. } => {
            assert_eq!((events, unsealed, last), (committed, 0, committed), "every committed event, in one chain");
        }
        broken => panic!("{broken:?}"),
    }
    store.close().await;
    drop_database(&url).await;
}

/// A request's writes for group commit: its event, and for every 50th from the 7th a write
/// that fails after it.
struct GroupedWrite(usize);

impl sekimori::store::Batch for GroupedWrite {
    /// Which job the outcome is of: each caller must hear its own.
    type Outcome = usize;

    fn write<'a>(tx: &'a mut sekimori::store::Tx, items: &'a [Self]) -> sekimori::store::Written<'a, usize> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(items.len());
            for GroupedWrite(i) in items {
                Event::success(&Actor::System, "test.grouped", format!("g:{i}"), json!({})).record(tx, 1).await?;
                if i % 50 == 7 {
                    // A write that fails after the event: nothing of this request may stay.
                    sqlx::query("INSERT INTO no_such_table VALUES (1)").execute(&mut **tx).await?;
                }
                outcomes.push(*i);
            }
            Ok(outcomes)
        })
    }
}

/// The targets of the events [`GroupedWrite`] wrote, in their order.
async fn grouped_targets(store: &Store) -> Vec<String> {
    sqlx::query("SELECT target FROM audit_events WHERE action = 'test.grouped' ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("target").unwrap())
        .collect()
}

/// Writes committed together: each caller hears its own outcome; a failing one is rolled back
/// alone, the others are written once, with their events in the chain.
async fn group_commit_answers_each_job_with_its_own_outcome(db: Db) {
    let (url, store) = store(db).await;
    let group = sekimori::store::GroupCommit::start(store.clone());
    let jobs: Vec<_> = (0..300)
        .map(|i| {
            let group = group.clone();
            tokio::spawn(async move { (i, group.submit(GroupedWrite(i)).await) })
        })
        .collect();
    let mut failed = Vec::new();
    for job in jobs {
        let (i, outcome) = job.await.unwrap();
        let ok = outcome.is_ok();
        assert_eq!(ok, i % 50 != 7, "job {i}");
        if let Ok(heard) = outcome {
            assert_eq!(heard, i, "job {i} heard the outcome of job {heard}");
        }
        if !ok {
            failed.push(format!("g:{i}"));
        }
    }
    seal::seal(&store, 1_790_000_100).await.unwrap();
    let targets = grouped_targets(&store).await;
    assert_eq!(targets.len(), 300 - failed.len(), "each succeeded job once");
    assert!(failed.iter().all(|f| !targets.contains(f)), "no failed job left its event");
    assert!(matches!(audit::verify(&store).await.unwrap(), Verification::Intact { unsealed: 0, .. }));
    store.close().await;
    drop_database(&url).await;
}

/// A request cancelled while its write waits for group commit (its client hung up) is not
/// written: nobody would hear the outcome. SQLite, whose one writer the test holds so that the
/// write waits.
#[tokio::test]
async fn group_commit_skips_a_request_cancelled_while_it_waits() {
    let (url, store) = store(Db::Sqlite).await;
    let group = sekimori::store::GroupCommit::start(store.clone());
    let held = store.begin().await.unwrap();
    let first = tokio::spawn({
        let group = group.clone();
        async move { group.submit(GroupedWrite(1)).await }
    });
    // The committer has taken the first and waits for the writer; the second waits behind it.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let cancelled = tokio::spawn({
        let group = group.clone();
        async move { group.submit(GroupedWrite(2)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    cancelled.abort();
    let third = tokio::spawn({
        let group = group.clone();
        async move { group.submit(GroupedWrite(3)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    held.rollback().await.unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(third.await.unwrap().unwrap(), 3);
    assert_eq!(grouped_targets(&store).await, ["g:1", "g:3"], "the cancelled request left nothing");
    store.close().await;
    drop_database(&url).await;
}

/// Events recorded through group commit from many requests at once (written several to a
/// statement): each once, each with its own number, all in one chain that verifies, beside
/// events recorded one at a time.
async fn grouped_events_are_written_in_batches_into_one_chain(db: Db) {
    let (url, store) = store(db).await;
    let grouped = audit::Grouped::start(&store);
    let writers: Vec<_> = (0..700)
        .map(|i| {
            let (grouped, store) = (grouped.clone(), store.clone());
            tokio::spawn(async move {
                if i % 10 == 0 {
                    let mut tx = store.begin().await.unwrap();
                    Event::success(&Actor::System, "test.alone", format!("a:{i}"), json!({}))
                        .record(&mut tx, 5)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                } else {
                    let actor = Actor::Client(format!("c{i}"));
                    let event = Event::failure(&actor, "test.batched", format!("b:{i}"), json!({"i": i}));
                    grouped.record(event.from_source(Some("192.0.2.1".into())), 5).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    seal::seal(&store, 1_790_000_100).await.unwrap();
    let rows = sqlx::query(
        "SELECT seq, target, actor, outcome, source_ip FROM audit_events WHERE action = 'test.batched' ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 630, "every batched event once");
    let mut targets: Vec<String> = rows.iter().map(|r| r.try_get("target").unwrap()).collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 630, "no event twice");
    for row in &rows {
        let target: String = row.try_get("target").unwrap();
        let actor: String = row.try_get("actor").unwrap();
        assert_eq!(actor, format!("client:c{}", &target[2..]), "each event's own fields");
        assert_eq!(row.try_get::<String, _>("outcome").unwrap(), "failure");
        assert_eq!(row.try_get::<Option<String>, _>("source_ip").unwrap().as_deref(), Some("192.0.2.1"));
    }
    match audit::verify(&store).await.unwrap() {
        Verification::Intact { events, unsealed, .. } => assert_eq!((events, unsealed), (700, 0)),
        broken => panic!("{broken:?}"),
    }
    store.close().await;
    drop_database(&url).await;
}

/// A batch of events larger than one statement takes, in one transaction, whose fields hold
/// what hostile input may carry (quotes, line and paragraph separators, characters beyond the
/// BMP, a long string, a NUL): each is stored as given, in its order — a NUL in the JSON
/// detail escaped, elsewhere shown as ␀, as PostgreSQL's text holds no NUL — and the chain
/// verifies: the MAC of every event is over what the database holds.
async fn a_batch_of_events_is_stored_as_given(db: Db) {
    let (url, store) = store(db).await;
    let odd = ["nul\u{0}after", "quote\"back\\slash", "line\u{2028}para\u{2029}", "𠀋𡈽 é 関守", "tab\tcr\r"];
    let long = "長".repeat(5000);
    let events: Vec<audit::Pending> = (0..150)
        .map(|i| {
            let text = odd.get(i % odd.len()).copied().unwrap_or_default();
            let actor = Actor::Client(format!("c{i}-{text}"));
            let target = if i == 77 { long.clone() } else { format!("t{i}:{text}") };
            let event = Event::success(&actor, "test.odd", target, json!({ "i": i, "text": text }));
            audit::Pending::new(event.from_source((i % 2 == 0).then(|| format!("192.0.2.{i}"))), 7)
        })
        .collect();
    // In a transaction (an event beside the change it records), and on PostgreSQL also as a
    // group-commit batch of events alone, one statement committed on its own.
    let mut tx = store.begin().await.unwrap();
    audit::record_all(&mut tx, &events).await.unwrap();
    tx.commit().await.unwrap();
    let written = if db == Db::Postgres {
        audit::record_committed(&store, &events).await.unwrap();
        300
    } else {
        150
    };
    seal::seal(&store, 1_790_000_100).await.unwrap();
    let rows = sqlx::query("SELECT actor, target, detail, source_ip FROM audit_events ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), written);
    for (n, row) in rows.iter().enumerate() {
        let i = n % 150;
        let text = odd[i % odd.len()];
        let plain = text.replace('\u{0}', "␀");
        assert_eq!(row.try_get::<String, _>("actor").unwrap(), format!("client:c{i}-{plain}"), "{i}");
        let target = if i == 77 { long.clone() } else { format!("t{i}:{plain}") };
        assert_eq!(row.try_get::<String, _>("target").unwrap(), target, "{i}");
        let detail: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>("detail").unwrap()).unwrap();
        assert_eq!(detail, json!({ "i": i, "text": text }), "{i}");
        let source_ip = (i % 2 == 0).then(|| format!("192.0.2.{i}"));
        assert_eq!(row.try_get::<Option<String>, _>("source_ip").unwrap(), source_ip, "{i}");
    }
    match audit::verify(&store).await.unwrap() {
        Verification::Intact { events, unsealed, .. } => assert_eq!((events, unsealed), (written as i64, 0)),
        broken => panic!("{broken:?}"),
    }
    store.close().await;
    drop_database(&url).await;
}

/// `sekimori serve` on `url`; its output goes to files in `dir`.
fn serve(dir: &std::path::Path, url: &str, key: &str, public: u16, admin: u16, run: &str) -> Child {
    crate::cli::sekimori(dir)
        .arg("serve")
        .env("SEKIMORI_DATABASE_URL", url)
        .env("SEKIMORI_MASTER_KEY", key)
        .env("SEKIMORI_ISSUER", format!("http://127.0.0.1:{public}"))
        .env("SEKIMORI_PUBLIC_ADDR", format!("127.0.0.1:{public}"))
        .env("SEKIMORI_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("SEKIMORI_LOG", "warn")
        .stdout(std::fs::File::create(dir.join(format!("{run}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{run}.err"))).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

async fn ready(http: &reqwest::Client, public: u16) {
    for _ in 0..600 {
        if let Ok(response) = http.get(format!("http://127.0.0.1:{public}/health")).send().await {
            if response.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

/// The `jti` of an access token (a JWT), read without checking it.
fn jti(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// SIGKILL while 200 token requests are in flight, then a restart: every token a client
/// received has its event, and the chain verifies once the new process has sealed.
async fn killed_with_token_requests_in_flight_loses_no_event(db: Db) {
    let dir = crate::cli::temp_dir();
    let url = fresh_database(db).await;
    let key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    };
    let added = crate::cli::sekimori(&dir)
        .args(["client", "add", "--name", "夜間処理", "--client-id", "batch", "--redirect-uri", "http://127.0.0.1/cb"])
        .args(["--grant-type", "client_credentials", "--service-scope", "batch"])
        .env("SEKIMORI_DATABASE_URL", &url)
        .env("SEKIMORI_MASTER_KEY", &key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&added.stdout).into_owned();
    assert!(added.status.success(), "{text}{}", String::from_utf8_lossy(&added.stderr));
    let secret = text
        .lines()
        .find_map(|line| line.strip_prefix("client_secret:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (public, admin) = crate::cli::free_ports();
    let mut child = serve(&dir, &url, &key, public, admin, "first");
    let http = crate::common::client().build().unwrap();
    ready(&http, public).await;

    let token_url = format!("http://127.0.0.1:{public}/token");
    // 200 clients, each sending its next token request as soon as the last is answered, so
    // that 200 are in flight whenever the kill lands (a fixed 200 may all be answered first).
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let (http, token_url, secret, answered) =
                (http.clone(), token_url.clone(), secret.clone(), answered.clone());
            tokio::spawn(async move {
                let mut received = Vec::new();
                loop {
                    let answer = async {
                        let response = http
                            .post(&token_url)
                            .basic_auth("batch", Some(&secret))
                            .form(&[("grant_type", "client_credentials"), ("scope", "batch")])
                            .send()
                            .await
                            .ok()?;
                        if response.status() != 200 {
                            return None;
                        }
                        let body: serde_json::Value = response.json().await.ok()?;
                        Some(jti(body["access_token"].as_str()?))
                    };
                    match answer.await {
                        Some(jti) => {
                            received.push(jti);
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        // The request in flight when the server died.
                        None => return (received, true),
                    }
                }
            })
        })
        .collect();
    // Let a few hundred answers arrive, then kill the process among the requests in flight.
    let waited = std::time::Instant::now();
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 400 {
        assert!(waited.elapsed() < Duration::from_secs(30), "the server answers token requests");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    }
    let (mut received, mut cut_off) = (Vec::new(), 0);
    for client in clients {
        let (jtis, failed) = client.await.unwrap();
        received.extend(jtis);
        cut_off += usize::from(failed);
    }
    eprintln!("{db:?}: {} token requests answered before the kill; {cut_off} cut off by it", received.len());
    // Each client stops only at a request the dead server did not answer: the kill landed
    // with the clients' requests still coming, after these had been answered.
    assert!(received.len() >= 400 && cut_off == 200, "{} answered, {cut_off} cut off", received.len());

    let mut again = serve(&dir, &url, &key, public, admin, "second");
    ready(&http, public).await;
    let store = Store::connect(&url).await.unwrap();
    store.set_audit_key(audit::chain_key(&sekimori::crypto::MasterKey::from_base64(&key).unwrap())).unwrap();
    // The new process seals what the killed one committed (within a second).
    let mut sealed = false;
    for _ in 0..100 {
        if let Verification::Intact { unsealed: 0, .. } = audit::verify(&store).await.unwrap() {
            sealed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sealed, "the restarted server sealed the events: {:?}", audit::verify(&store).await.unwrap());
    let recorded: std::collections::HashSet<String> =
        sqlx::query("SELECT detail FROM audit_events WHERE action = 'token.issued'")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .filter_map(|row| {
                let detail: serde_json::Value =
                    serde_json::from_str(&row.try_get::<String, _>("detail").unwrap()).ok()?;
                detail["jti"].as_str().map(str::to_owned)
            })
            .collect();
    let lost: Vec<&String> = received.iter().filter(|jti| !recorded.contains(*jti)).collect();
    assert!(lost.is_empty(), "tokens handed out without their event: {lost:?}");
    again.kill().unwrap();
    let _ = again.wait();
    store.close().await;
    drop_database(&url).await;
    let _ = std::fs::remove_dir_all(&dir);
}
