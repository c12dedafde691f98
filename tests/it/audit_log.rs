//! The audit log's chain verifies by API and by CLI and its guard refuses edits; tampering by
//! someone who lifts the guard is in `audit_tamper`.

use sqlx::Executor;

use crate::common::{Db, TestServer};
use sekimori::audit::{self, Verification};

/// Lifts the append-only guard, as someone with raw database access could.
pub(crate) async fn drop_guard(server: &TestServer) {
    let pool = server.app.store.pool();
    match server.db {
        Db::Sqlite => {
            for trigger in
                ["audit_events_no_update", "audit_events_no_delete", "audit_links_no_update", "audit_links_no_delete"]
            {
                pool.execute(format!("DROP TRIGGER {trigger}").as_str()).await.unwrap();
            }
        }
        Db::Postgres => {
            pool.execute("ALTER TABLE audit_events DISABLE TRIGGER USER").await.unwrap();
            pool.execute("ALTER TABLE audit_links DISABLE TRIGGER USER").await.unwrap();
        }
    }
}

async fn populated(db: Db) -> TestServer {
    populated_with(db, |_| {}).await
}

/// A server with three people added, configured by `adjust`.
pub(crate) async fn populated_with(db: Db, adjust: impl FnOnce(&mut sekimori::config::Config)) -> TestServer {
    let server = TestServer::start_configured(db, adjust).await;
    for i in 0..3 {
        server.add_person(&format!("E600{i}"), &format!("person{i}"), &format!("correct-horse-battery-{i}")).await;
    }
    // Sealed now rather than by the server's sealer a few milliseconds later: the tests tamper
    // with the chain (unsealed events: audit_seal.rs).
    audit::seal::seal(&server.app.store, server.app.clock.now()).await.unwrap();
    server
}

fn cli_verify(server: &TestServer) -> (i32, String) {
    crate::audit_tamper::cli(server, &crate::cli::temp_dir(), &["verify"])
}

async fn intact_chain_verifies_and_guard_refuses_edits(db: Db) {
    let server = populated(db).await;
    let Verification::Intact { events, .. } = audit::verify(&server.app.store).await.unwrap() else {
        panic!("chain broken")
    };
    assert!(events >= 9, "keys, token, people and accounts were audited: {events}");
    let (code, out) = cli_verify(&server);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"));
    // The tables are append-only.
    let pool = server.app.store.pool();
    assert!(pool.execute("UPDATE audit_events SET actor = 'x' WHERE seq = 1").await.is_err());
    assert!(pool.execute("DELETE FROM audit_events WHERE seq = 1").await.is_err());
    assert!(pool.execute("UPDATE audit_links SET hash = 'x' WHERE chain_pos = 1").await.is_err());
    assert!(pool.execute("DELETE FROM audit_links WHERE chain_pos = 1").await.is_err());
    server.stop().await;
}

async fn deleted_last_event_is_detected(db: Db) {
    let server = populated(db).await;
    drop_guard(&server).await;
    server
        .app
        .store
        .pool()
        .execute("DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)")
        .await
        .unwrap();
    assert!(matches!(audit::verify(&server.app.store).await.unwrap(), Verification::Broken { .. }));
    assert_eq!(cli_verify(&server).0, 1);
    server.stop().await;
}

async fn reading_the_log_is_itself_logged(db: Db) {
    let server = populated(db).await;
    let (status, body) = server.admin(reqwest::Method::GET, "/api/v1/audit/events?limit=1000", None).await;
    assert_eq!(status, 200);
    let items = body["items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["action"] == "audit.read"), "the read is recorded before it is answered");
    assert!(items.iter().all(|e| !e["detail"].to_string().contains("correct-horse")), "no password in the log");
    let (status, body) = server.admin(reqwest::Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "intact");
    server.stop().await;
}

on_both_databases!(
    intact_chain_verifies_and_guard_refuses_edits,
    deleted_last_event_is_detected,
    reading_the_log_is_itself_logged,
);
