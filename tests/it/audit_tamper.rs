//! R16 against someone who can write the database (but holds neither the master key nor the
//! checkpoint file kept elsewhere): every edit, deletion, reordering, insertion, recomputed
//! chain and truncation is reported, by the library and by `sekimori audit verify`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{Executor, Row};

use crate::audit_log::{drop_guard, populated_with};
use crate::common::{Db, TestServer};
use sekimori::audit::{self, Verification};

async fn populated(db: Db) -> TestServer {
    populated_with(db, |_| {}).await
}

/// `sekimori audit ARGS` against the server's database, with its master key; (exit code, stdout).
pub(crate) fn cli(server: &TestServer, dir: &Path, args: &[&str]) -> (i32, String) {
    let output = crate::cli::sekimori(dir)
        .arg("audit")
        .args(args)
        .env("SEKIMORI_DATABASE_URL", &server.database_url)
        .env("SEKIMORI_MASTER_KEY", server.app.config.master_key.as_deref().unwrap())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// A checkpoint of the chain as it stands, taken by the command into a fresh file.
fn checkpoint(server: &TestServer, dir: &Path) -> PathBuf {
    let file = dir.join("checkpoints.jsonl");
    let (code, out) = cli(server, dir, &["checkpoint", "--out", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    file
}

async fn broken_at(server: &TestServer) -> (i64, String) {
    match audit::verify(&server.app.store).await.unwrap() {
        Verification::Broken { seq, reason } => (seq, reason),
        intact => panic!("tampering not seen: {intact:?}"),
    }
}

async fn last_seq(server: &TestServer) -> i64 {
    sqlx::query("SELECT MAX(seq) AS n FROM audit_events")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

/// The plain SHA-256 link the chain used before it was keyed (what an attacker can compute).
pub(crate) fn plain_hash(row: &sqlx::any::AnyRow, prev_hash: &str) -> String {
    let text = |c: &str| row.try_get::<String, _>(c).unwrap();
    let fields = json!([
        prev_hash,
        row.try_get::<i64, _>("seq").unwrap(),
        row.try_get::<i64, _>("at").unwrap(),
        text("actor"),
        text("action"),
        text("target"),
        text("outcome"),
        text("detail"),
        row.try_get::<Option<String>, _>("source_ip").unwrap()
    ]);
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

/// Rewrites every link from `from` on with plain SHA-256 hashes and moves the head: the attack
/// that passed before the chain was keyed.
async fn recompute_plain_chain(server: &TestServer, from: i64) {
    let pool = server.app.store.pool();
    let mut prev: String = sqlx::query("SELECT hash FROM audit_links WHERE seq = $1")
        .bind(from - 1)
        .fetch_optional(pool)
        .await
        .unwrap()
        .map(|r| r.try_get("hash").unwrap())
        .unwrap_or_else(|| audit::GENESIS_HASH.to_owned());
    let rows = sqlx::query("SELECT * FROM audit_events WHERE seq >= $1 ORDER BY seq").bind(from).fetch_all(pool).await;
    let mut last = from - 1;
    for row in rows.unwrap() {
        let seq: i64 = row.try_get("seq").unwrap();
        let hash = plain_hash(&row, &prev);
        sqlx::query("UPDATE audit_links SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(pool)
            .await
            .unwrap();
        prev = hash;
        last = seq;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(last)
        .bind(&prev)
        .execute(pool)
        .await
        .unwrap();
}

async fn untouched_log_verifies_with_and_without_checkpoints(db: Db) {
    let server = populated(db).await;
    let dir = crate::cli::temp_dir();
    let (code, out) = cli(&server, &dir, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    let file = checkpoint(&server, &dir);
    server.add_person("E6110", "later", "correct-horse-battery-x").await;
    let file_again = checkpoint(&server, &dir);
    assert_eq!(file, file_again);
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2, "appended");
    let (code, out) = cli(&server, &dir, &["verify", "--checkpoints", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checkpoints: 2 confirmed"), "{out}");
    let Verification::Intact { first, keyed_from, .. } = audit::verify(&server.app.store).await.unwrap() else {
        panic!("broken")
    };
    assert_eq!((first, keyed_from), (1, 1), "a new database is keyed from its first event");
    let (status, body) = server.admin(reqwest::Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("intact")), "{body}");
    server.stop().await;
}

async fn the_server_appends_checkpoints_when_configured(db: Db) {
    let dir = crate::cli::temp_dir();
    let file = dir.join("server-checkpoints.jsonl");
    let configured = file.to_str().unwrap().to_owned();
    let server = populated_with(db, |c| {
        c.audit.checkpoint_file = Some(configured);
        c.audit.checkpoint_interval = 1;
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let last = last_seq(&server).await;
    // A checkpoint that covers the people added after the start.
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .any(|l| serde_json::from_str::<Value>(l).map(|c| c["seq"].as_i64() >= Some(last)).unwrap_or(false))
    {
        assert!(std::time::Instant::now() < deadline, "no checkpoint appended");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (code, out) = cli(&server, &dir, &["verify", "--checkpoints", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    server.stop().await;
}

async fn edited_detail_is_reported(db: Db) {
    let server = populated(db).await;
    drop_guard(&server).await;
    sqlx::query("UPDATE audit_events SET detail = $1 WHERE seq = 5")
        .bind(json!({"employee_number": "forged"}).to_string())
        .execute(server.app.store.pool())
        .await
        .unwrap();
    assert_eq!(broken_at(&server).await.0, 5);
    let (code, out) = cli(&server, &crate::cli::temp_dir(), &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at event 5"), "{out}");
    server.stop().await;
}

async fn deleted_middle_event_is_reported(db: Db) {
    let server = populated(db).await;
    drop_guard(&server).await;
    server.app.store.pool().execute("DELETE FROM audit_events WHERE seq = 4").await.unwrap();
    let (seq, reason) = broken_at(&server).await;
    assert_eq!(seq, 4, "{reason}");
    assert!(reason.contains("missing"), "{reason}");
    server.stop().await;
}

async fn swapped_events_are_reported(db: Db) {
    let server = populated(db).await;
    drop_guard(&server).await;
    let pool = server.app.store.pool();
    pool.execute("UPDATE audit_events SET seq = -6 WHERE seq = 6").await.unwrap();
    pool.execute("UPDATE audit_events SET seq = 6 WHERE seq = 7").await.unwrap();
    pool.execute("UPDATE audit_events SET seq = 7 WHERE seq = -6").await.unwrap();
    assert_eq!(broken_at(&server).await.0, 6);
    server.stop().await;
}

async fn forged_event_is_reported(db: Db) {
    let server = populated(db).await;
    let pool = server.app.store.pool();
    let head = sqlx::query("SELECT seq, hash FROM audit_head").fetch_one(pool).await.unwrap();
    let (seq, prev): (i64, String) = (head.try_get::<i64, _>("seq").unwrap() + 1, head.try_get("hash").unwrap());
    // A well-formed event, linked to the head with the only hash the forger can compute.
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, action, target, outcome, detail, source_ip, mac)
         VALUES ($1, 0, 'cli', 'grant.create', 'somebody', 'success', '{}', NULL, $2)",
    )
    .bind(seq)
    // The forger's best guess at a MAC: a plain hash of the content.
    .bind(hex::encode(Sha256::digest(b"grant.create somebody")))
    .execute(pool)
    .await
    .unwrap();
    let row = sqlx::query("SELECT * FROM audit_events WHERE seq = $1").bind(seq).fetch_one(pool).await.unwrap();
    let hash = plain_hash(&row, &prev);
    sqlx::query("INSERT INTO audit_links (chain_pos, seq, prev_hash, hash) VALUES ($1, $1, $2, $3)")
        .bind(seq)
        .bind(&prev)
        .bind(&hash)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2").bind(seq).bind(&hash).execute(pool).await.unwrap();
    let (at, reason) = broken_at(&server).await;
    assert_eq!(at, seq);
    assert!(reason.contains("without the audit key"), "{reason}");
    server.stop().await;
}

/// The attack found from outside: edit one event, recompute the plain chain from there, move
/// the head. The links are keyed now, so the recomputed ones do not pass.
async fn recomputed_plain_chain_is_reported(db: Db) {
    let server = populated(db).await;
    drop_guard(&server).await;
    sqlx::query("UPDATE audit_events SET target = 'someone-else' WHERE seq = 5")
        .execute(server.app.store.pool())
        .await
        .unwrap();
    recompute_plain_chain(&server, 5).await;
    let (seq, reason) = broken_at(&server).await;
    assert_eq!(seq, 5, "{reason}");
    assert!(reason.contains("without the audit key"), "{reason}");
    let (code, out) = cli(&server, &crate::cli::temp_dir(), &["verify"]);
    assert_eq!(code, 1, "{out}");
    server.stop().await;
}

/// Going further: rewriting the whole chain as plain links and moving its keyed start past
/// the end makes it look like a log from before the chain was keyed. Only a checkpoint kept
/// outside the database tells (the README says so).
async fn chain_rewritten_as_never_keyed_is_reported_by_a_checkpoint(db: Db) {
    let server = populated(db).await;
    let dir = crate::cli::temp_dir();
    let file = checkpoint(&server, &dir);
    drop_guard(&server).await;
    sqlx::query("UPDATE audit_events SET target = 'someone-else' WHERE seq = 5")
        .execute(server.app.store.pool())
        .await
        .unwrap();
    recompute_plain_chain(&server, 1).await;
    server.app.store.pool().execute("UPDATE audit_head SET keyed_from = seq + 1, sealed_from = seq + 1").await.unwrap();
    let Verification::Intact { keyed_from, first, .. } = audit::verify(&server.app.store).await.unwrap() else {
        panic!("a chain of plain links alone still verifies")
    };
    assert!(keyed_from > first, "but verify shows no event is keyed");
    let (code, out) = cli(&server, &dir, &["verify", "--checkpoints", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("has another hash than at the checkpoint"), "{out}");
    server.stop().await;
}

/// A database from before the chain was keyed: its events keep their plain links, and the
/// migration starts the keyed chain after them. The first keyed link covers the last plain
/// one, so rewriting the old events is reported too.
async fn events_from_before_the_upgrade_keep_plain_links_and_are_covered(db: Db) {
    let server = populated(db).await;
    drop_guard(&server).await;
    let pool = server.app.store.pool();
    // What migration 0014 finds and does on an older database.
    recompute_plain_chain(&server, 1).await;
    pool.execute("UPDATE audit_head SET keyed_from = seq + 1, sealed_from = seq + 1").await.unwrap();
    let keyed_from = last_seq(&server).await + 1;
    server.add_person("E6130", "upgraded", "correct-horse-battery-u").await;
    audit::seal::seal(&server.app.store, server.app.clock.now()).await.unwrap();
    let Verification::Intact { first, keyed_from: found, last, .. } = audit::verify(&server.app.store).await.unwrap()
    else {
        panic!("an upgraded log verifies")
    };
    assert_eq!((first, found), (1, keyed_from));
    assert!(last > keyed_from, "new events are keyed");
    sqlx::query("UPDATE audit_events SET target = 'someone-else' WHERE seq = 3").execute(pool).await.unwrap();
    recompute_plain_chain(&server, 3).await;
    // The recomputation also rewrote the keyed events' links, and moved the head.
    let (seq, reason) = broken_at(&server).await;
    assert_eq!(seq, keyed_from, "{reason}");
    server.stop().await;
}

async fn head_moved_back_over_events_left_in_place_is_reported(db: Db) {
    let server = populated(db).await;
    let pool = server.app.store.pool();
    let back = last_seq(&server).await - 2;
    let hash: String = sqlx::query("SELECT hash FROM audit_links WHERE seq = $1")
        .bind(back)
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get("hash")
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2").bind(back).bind(&hash).execute(pool).await.unwrap();
    let (seq, reason) = broken_at(&server).await;
    assert_eq!(seq, back + 1, "{reason}");
    assert!(reason.contains("head moved back"), "{reason}");
    server.stop().await;
}

async fn truncated_tail_is_reported_with_the_checkpoint_taken_before(db: Db) {
    let server = populated(db).await;
    let dir = crate::cli::temp_dir();
    let file = checkpoint(&server, &dir);
    let last = last_seq(&server).await;
    drop_guard(&server).await;
    let pool = server.app.store.pool();
    sqlx::query("DELETE FROM audit_events WHERE seq > $1").bind(last - 3).execute(pool).await.unwrap();
    sqlx::query("DELETE FROM audit_links WHERE seq > $1").bind(last - 3).execute(pool).await.unwrap();
    let new_last = sqlx::query("SELECT seq, hash FROM audit_links WHERE seq = $1").bind(last - 3).fetch_one(pool);
    let new_last = new_last.await.unwrap();
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2")
        .bind(new_last.try_get::<i64, _>("seq").unwrap())
        .bind(new_last.try_get::<String, _>("hash").unwrap())
        .execute(pool)
        .await
        .unwrap();
    // Without the checkpoint, a shorter chain is a whole chain.
    assert!(matches!(audit::verify(&server.app.store).await.unwrap(), Verification::Intact { .. }));
    let (code, out) = cli(&server, &dir, &["verify", "--checkpoints", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated"), "{out}");
    assert!(out.contains("audit log intact"), "the chain itself holds: {out}");
    server.stop().await;
}

async fn tampered_checkpoint_line_is_a_bad_signature(db: Db) {
    let server = populated(db).await;
    let dir = crate::cli::temp_dir();
    let file = checkpoint(&server, &dir);
    let line: Value = serde_json::from_str(std::fs::read_to_string(&file).unwrap().trim()).unwrap();
    let seq = line["seq"].as_i64().unwrap();
    let mut changed_seq = line.clone();
    changed_seq["seq"] = json!(seq - 1);
    let mut changed_hash = line.clone();
    changed_hash["hash"] = json!(audit::GENESIS_HASH);
    std::fs::write(&file, format!("{line}\n{changed_seq}\n{changed_hash}\n")).unwrap();
    let (code, out) = cli(&server, &dir, &["verify", "--checkpoints", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("bad signature").count(), 2, "{out}");
    assert!(out.contains("line 2") && out.contains("line 3") && !out.contains("line 1:"), "{out}");
    server.stop().await;
}

/// Events of ten days ago, archived under a retention of three days; then events of today.
async fn archived(db: Db) -> (TestServer, crate::cli::TempDir, PathBuf) {
    let server = populated_with(db, |c| c.audit.retention_days = 3).await;
    server.app.clock.advance(10 * 86_400);
    let now = server.app.clock.now();
    // Recent events (the administrator's token of ten days ago has expired: recorded directly).
    for i in 0..3 {
        let mut tx = server.app.store.begin().await.unwrap();
        audit::Event::success(&audit::Actor::System, "test.recent", format!("recent-{i}"), json!({}))
            .record(&mut tx, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    sealer_caught_up(&server).await;
    let dir = crate::cli::temp_dir();
    let out = dir.join("audit-archive.jsonl");
    let key = sekimori::audit::checkpoint::signing_key(&master(&server));
    let inside = sekimori::clock::japan_date(now - 2 * 86_400);
    let refused = audit::archive::archive(&server.app.store, &key, now, &inside, 3, &out).await.unwrap_err();
    assert!(refused.to_string().contains("retention"), "{refused}");
    assert!(!out.exists(), "nothing written when refused");
    let before = sekimori::clock::japan_date(now - 5 * 86_400);
    let done = audit::archive::archive(&server.app.store, &key, now, &before, 3, &out).await.unwrap();
    let anchor = done.anchor.expect("old events archived");
    assert_eq!((anchor.first_seq, done.events), (1, anchor.last_seq));
    let left: i64 = sqlx::query("SELECT MIN(seq) AS n FROM audit_events")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(left, anchor.last_seq + 1, "the archived events were removed");
    (server, dir, out)
}

/// Waits until the server's sealer has looked at every event committed so far. Each round it
/// checks that the events this process committed were sealed, and one that is gone when it
/// looks is reported as removed before it was sealed: archiving events the moment they were
/// sealed (the clock moved ten days ahead) must not be that. A marker committed once the sealer
/// has taken the rest is taken by its next round, which begins only when the one before ended.
async fn sealer_caught_up(server: &TestServer) {
    let taken = || async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !server.app.store.committed_events().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the sealer did not take the committed events");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    taken().await;
    let mut tx = server.app.store.begin().await.unwrap();
    audit::Event::success(&audit::Actor::System, "test.marker", "marker".to_owned(), json!({}))
        .record(&mut tx, server.app.clock.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    taken().await;
}

fn master(server: &TestServer) -> sekimori::crypto::MasterKey {
    sekimori::crypto::MasterKey::from_base64(server.app.config.master_key.as_deref().unwrap()).unwrap()
}

async fn archive_keeps_the_chain_verifiable(db: Db) {
    let (server, dir, out) = archived(db).await;
    let verification = audit::verify(&server.app.store).await.unwrap();
    let Verification::Intact { first, .. } = verification else { panic!("broken after archiving: {verification:?}") };
    assert!(first > 1);
    let (code, text) = cli(&server, &dir, &["verify", "--archive", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("archive intact"), "{text}");
    // An edited archive is reported.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines[1]["at"] = json!(lines[1]["at"].as_i64().unwrap() + 60);
    let forged = dir.join("forged.jsonl");
    std::fs::write(&forged, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (code, text) = cli(&server, &dir, &["verify", "--archive", forged.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("archive FAILED"), "{text}");
    server.stop().await;
}

async fn archive_then_edited_event_is_reported(db: Db) {
    let (server, _dir, _out) = archived(db).await;
    drop_guard(&server).await;
    let last = last_seq(&server).await;
    sqlx::query("UPDATE audit_events SET actor = 'cli' WHERE seq = $1")
        .bind(last - 1)
        .execute(server.app.store.pool())
        .await
        .unwrap();
    assert_eq!(broken_at(&server).await.0, last - 1);
    server.stop().await;
}

async fn archive_then_moved_anchor_is_reported(db: Db) {
    let (server, dir, out) = archived(db).await;
    drop_guard(&server).await;
    let pool = server.app.store.pool();
    // Hide one more event: remove it and make it the anchor.
    let anchor: i64 =
        sqlx::query("SELECT anchor_seq FROM audit_head").fetch_one(pool).await.unwrap().try_get("anchor_seq").unwrap();
    let next =
        sqlx::query("SELECT hash FROM audit_links WHERE seq = $1").bind(anchor + 1).fetch_one(pool).await.unwrap();
    let hash: String = next.try_get("hash").unwrap();
    sqlx::query("UPDATE audit_head SET anchor_seq = $1, anchor_hash = $2")
        .bind(anchor + 1)
        .bind(&hash)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE seq = $1").bind(anchor + 1).execute(pool).await.unwrap();
    sqlx::query("DELETE FROM audit_links WHERE seq = $1").bind(anchor + 1).execute(pool).await.unwrap();
    let (_, reason) = broken_at(&server).await;
    assert!(reason.contains("anchor"), "{reason}");
    let (code, text) = cli(&server, &dir, &["verify", "--archive", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    server.stop().await;
}

on_both_databases!(
    untouched_log_verifies_with_and_without_checkpoints,
    the_server_appends_checkpoints_when_configured,
    edited_detail_is_reported,
    deleted_middle_event_is_reported,
    swapped_events_are_reported,
    forged_event_is_reported,
    recomputed_plain_chain_is_reported,
    chain_rewritten_as_never_keyed_is_reported_by_a_checkpoint,
    events_from_before_the_upgrade_keep_plain_links_and_are_covered,
    head_moved_back_over_events_left_in_place_is_reported,
    truncated_tail_is_reported_with_the_checkpoint_taken_before,
    tampered_checkpoint_line_is_a_bad_signature,
    archive_keeps_the_chain_verifiable,
    archive_then_edited_event_is_reported,
    archive_then_moved_anchor_is_reported,
);
