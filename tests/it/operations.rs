//! Operations (R20): `/metrics` on the admin listener for `metrics:read`, the `/livez` and
//! `/readyz` probes, over real HTTP on both databases.

use serde_json::json;
use sqlx::Row;

use crate::common::{browser, log_in, obtain_code, pkce_pair, token_request, Db, TestServer};

const PASSWORD: &str = "kasumi-ga-seki-2026!";

/// The value of the sample `series` (name and labels, exactly as written), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn scrape(server: &TestServer, token: &str) -> String {
    let response = server.http.get(format!("{}/metrics", server.admin_url)).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let families = parse_openmetrics(&text);
    for (family, kind) in [
        ("sekimori_logins", "counter"),
        ("sekimori_tokens_issued", "counter"),
        ("sekimori_revocations", "counter"),
        ("sekimori_backlog", "gauge"),
        ("sekimori_db_pool_connections", "gauge"),
        ("sekimori_audit_last_seq", "gauge"),
        ("sekimori_audit_unsealed_events", "gauge"),
        ("sekimori_audit_seal_lag_seconds", "gauge"),
        ("sekimori_jobs_leader", "gauge"),
    ] {
        // A counter family shows once it has counted something.
        if kind == "gauge" || families.get(family).is_some() {
            assert_eq!(families[family], kind, "{family} in {families}");
        }
    }
    text
}

/// The families of an exposition as the Prometheus project's OpenMetrics parser reads it
/// (tests/metrics/parse_openmetrics.py), which refuses anything the format does not allow.
fn parse_openmetrics(text: &str) -> serde_json::Value {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics/parse_openmetrics.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the OpenMetrics parser");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse (pip install prometheus-client==0.21.1 if it is missing):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn token_with(server: &TestServer, scopes: &[&str]) -> String {
    let (status, issued) = server
        .admin(reqwest::Method::POST, "/api/v1/api-tokens", Some(json!({"name": "監視", "scopes": scopes})))
        .await;
    assert_eq!(status, 201, "{issued}");
    issued["token"].as_str().unwrap().to_owned()
}

async fn metrics_count_logins_tokens_and_revocations(db: Db) {
    let server = TestServer::start(db).await;
    let monitor = token_with(&server, &["metrics:read"]).await;
    let reader = token_with(&server, &["directory:read"]).await;

    // Only a token with metrics:read, only on the admin listener.
    let url = format!("{}/metrics", server.admin_url);
    assert_eq!(server.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(server.http.get(&url).bearer_auth("skm_forged").send().await.unwrap().status(), 401);
    let refused = server.http.get(&url).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("metrics:read"));
    let public = server.http.get(format!("{}/metrics", server.public_url)).bearer_auth(&monitor).send().await.unwrap();
    assert_eq!(public.status(), 404, "not on the public listener");

    let person_id = server.add_person("E7001", "kansi", PASSWORD).await;
    let redirect = "http://127.0.0.1:9001/callback";
    let (client_id, secret) = server
        .add_client(
            json!({"client_id": "kansi", "name": "監視試験", "client_type": "confidential", "redirect_uris": [redirect],
                    // Nothing listens there: its logout notices stay in the outbox.
                    "backchannel_logout_uri": "http://127.0.0.1:9/backchannel"}),
        )
        .await;
    let secret = secret.unwrap();

    let before = scrape(&server, &monitor).await;
    for gauge in [
        "sekimori_backlog{queue=\"logout_notices\"}",
        "sekimori_backlog{queue=\"mail\"}",
        "sekimori_backlog{queue=\"hr_changes_overdue\"}",
        "sekimori_backlog{queue=\"hr_changes_failed\"}",
        "sekimori_db_pool_connections{pool=\"main\",state=\"open\"}",
        "sekimori_audit_last_seq",
        "sekimori_audit_unsealed_events",
        "sekimori_audit_seal_lag_seconds",
        "sekimori_db_wal_syncs_total",
    ] {
        assert!(before.lines().any(|l| l.starts_with(&format!("{gauge} "))), "{gauge} missing:\n{before}");
    }
    assert!(sample(&before, "sekimori_audit_last_seq") > 0.0, "{before}");
    // SQLite syncs its WAL at every commit (the setup committed); PostgreSQL has no WAL of ours.
    let syncs = sample(&before, "sekimori_db_wal_syncs_total");
    assert!(if db == Db::Sqlite { syncs > 0.0 } else { syncs == 0.0 }, "{before}");
    assert!(sample(&before, "sekimori_db_pool_connections{pool=\"main\",state=\"open\"}") >= 1.0, "{before}");

    // A refused login and a successful one, then a code exchanged for tokens. (The counters are
    // the process's: other tests running beside this one may move them too, never down.)
    let authorize = crate::common::authorize_url(
        &server,
        &[("response_type", "code"), ("client_id", &client_id), ("redirect_uri", redirect), ("scope", "openid")],
    );
    let refused = log_in(&browser(), &server, &authorize, "kansi", "not-the-password").await;
    assert_eq!(refused.status(), 401, "the form again");
    let (verifier, challenge) = pkce_pair();
    let code = obtain_code(&server, &client_id, redirect, Some(&challenge), "kansi", PASSWORD).await;
    let (status, body, _) = token_request(
        &server,
        Some((&client_id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // An API token revoked.
    let (status, spare) = server
        .admin(reqwest::Method::POST, "/api/v1/api-tokens", Some(json!({"name": "予備", "scopes": ["directory:read"]})))
        .await;
    assert_eq!(status, 201, "{spare}");
    let id = spare["id"].as_str().unwrap();
    let (status, _) = server.admin(reqwest::Method::DELETE, &format!("/api/v1/api-tokens/{id}"), None).await;
    assert_eq!(status, 204);
    // The person's password reported compromised: their session ends, and the system it signed
    // in to is owed a logout notice it cannot be given.
    let path = format!("/api/v1/people/{person_id}/password-compromised");
    let (status, report) = server.admin(reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 201, "{report}");

    // What was committed is sealed (the server's sealer would do it within moments).
    sekimori::audit::seal::seal(&server.app.store, server.app.clock.now()).await.unwrap();
    let after = scrape(&server, &monitor).await;
    let families = parse_openmetrics(&after);
    for counter in ["sekimori_logins", "sekimori_tokens_issued", "sekimori_revocations"] {
        assert_eq!(families[counter], "counter", "{counter} in {families}");
    }
    assert_eq!(sample(&after, "sekimori_audit_unsealed_events"), 0.0, "{after}");
    assert_eq!(sample(&after, "sekimori_audit_seal_lag_seconds"), 0.0, "{after}");
    for series in [
        "sekimori_logins_total{method=\"password\",outcome=\"refused\"}",
        "sekimori_logins_total{method=\"password\",outcome=\"success\"}",
        "sekimori_tokens_issued_total{grant_type=\"authorization_code\"}",
        "sekimori_revocations_total{target=\"api_token\"}",
        "sekimori_revocations_total{target=\"person\"}",
    ] {
        assert!(sample(&after, series) >= sample(&before, series) + 1.0, "{series} did not move:\n{before}\n{after}");
    }
    assert!(sample(&after, "sekimori_audit_last_seq") > sample(&before, "sekimori_audit_last_seq"));
    // Gauges are this App's own: exact.
    assert_eq!(sample(&before, "sekimori_backlog{queue=\"logout_notices\"}"), 0.0);
    assert_eq!(sample(&after, "sekimori_backlog{queue=\"logout_notices\"}"), 1.0, "{after}");
    let events = server.count("audit_events").await as f64;
    assert!(sample(&after, "sekimori_audit_last_seq") <= events && events > 0.0, "{after}");
    server.stop().await;
}

async fn liveness_and_readiness(db: Db) {
    let server = TestServer::start(db).await;
    let get = |path: &str| server.http.get(format!("{}{path}", server.admin_url)).send();
    let live = get("/livez").await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<serde_json::Value>().await.unwrap(), json!({"status": "ok"}));
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    // /health stays as it was, on both listeners.
    assert_eq!(get("/health").await.unwrap().status(), 200);
    let public_health = server.http.get(format!("{}/health", server.public_url)).send().await.unwrap();
    assert_eq!(public_health.status(), 200);

    // The database gone (the pool closed): not ready, still alive.
    server.app.store.close().await;
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(get("/livez").await.unwrap().status(), 200);
    assert_eq!(get("/health").await.unwrap().status(), 503);
    server.stop().await;
}

/// The token tables are analyzed on PostgreSQL once at least 1,000 of their rows, and at least
/// half as many as they hold, have changed since their last analysis (`jobs::analyze_grown`),
/// so that the prepared row checks are planned again on a table that has grown; not before.
/// Nothing on SQLite.
async fn grown_token_tables_are_analyzed(db: Db) {
    let server = TestServer::start(db).await;
    let store = &server.app.store;
    if db == Db::Sqlite {
        assert!(sekimori::jobs::analyze_grown(store).await.unwrap().is_empty());
        server.stop().await;
        return;
    }
    server
        .add_client(json!({"client_id": "zeimu", "name": "税務", "client_type": "confidential",
                           "redirect_uris": ["http://127.0.0.1:9301/cb"]}))
        .await;
    // The rule, judged once the view shows the rows written since (statistics reach it within
    // a second or so): fewer than 1,000 changed rows are not worth an analysis, nor are more
    // that are less than half the table; half is. Autovacuum may analyze the table at any
    // moment (its own threshold is lower, but it looks only once a minute): a case is judged
    // only while it has not.
    let analyses = || async {
        sqlx::query("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'access_tokens'")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get::<i64, _>("analyze_count")
    };
    let state = || async {
        let row = sqlx::query(
            "SELECT n_mod_since_analyze, autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'access_tokens'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        (row.get::<i64, _>("n_mod_since_analyze"), row.get::<i64, _>("autoanalyze_count"))
    };
    sqlx::query("ANALYZE access_tokens").execute(store.pool()).await.unwrap();
    assert!(sekimori::jobs::analyze_grown(store).await.unwrap().is_empty(), "an empty table, just analyzed");
    let autoanalyzed = state().await.1;
    // Whether the view came to show `rows` changed rows before autovacuum analyzed the table;
    // nothing else may analyze it meanwhile (`before` analyses), the server's job included.
    let shows_changed = |rows: i64, before: i64| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (changed, auto) = state().await;
            if auto != autoanalyzed {
                return false;
            }
            assert_eq!(analyses().await, before, "analyzed with fewer than {rows} rows changed");
            if changed >= rows {
                return true;
            }
            assert!(std::time::Instant::now() < deadline, "the view never showed {rows} changed rows");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    // Analyzed by the server's job (this function every two seconds; the test leaves it to the
    // job, so that no two analyses of one table run at once and count twice), or by autovacuum.
    let analyzed_after = |before: i64| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while analyses().await == before && state().await.1 == autoanalyzed {
            assert!(std::time::Instant::now() < deadline, "the grown table was not analyzed");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    // Rows that expire in 2100: the server's purge of expired tokens would delete older ones,
    // which changes as many rows again.
    let add = |from: i64, to: i64| async move {
        sqlx::query(
            "INSERT INTO access_tokens (jti, client_id, scope, issued_at, expires_at)
             SELECT 'analyzed-' || g, 'zeimu', 'openid', 0, 4102444800 FROM generate_series($1, $2) AS g",
        )
        .bind(from)
        .bind(to)
        .execute(store.pool())
        .await
        .unwrap();
    };

    // What the view says of the table, for a failure's message.
    let described = || async {
        let row = sqlx::query(
            "SELECT n_live_tup, n_mod_since_analyze, analyze_count, autoanalyze_count
             FROM pg_stat_user_tables WHERE relname = 'access_tokens'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        let [live, changed, analyzed, autoanalyzed] = [0, 1, 2, 3].map(|i| row.get::<i64, _>(i));
        format!("{live} rows, {changed} changed, analyzed {analyzed} times, by autovacuum {autoanalyzed}")
    };
    let not_analyzed = |case: &'static str, before: i64| async move {
        let analyzed = sekimori::jobs::analyze_grown(store).await.unwrap();
        assert!(analyzed.is_empty(), "{case}: analyzed {analyzed:?}; {}", described().await);
        assert_eq!(analyses().await, before, "{case}: the server's job analyzed it; {}", described().await);
    };

    let before = analyses().await;
    add(1, 500).await;
    if shows_changed(500, before).await {
        not_analyzed("500 rows changed of 500: all of it, but fewer than 1,000", before).await;
    }
    add(501, 1500).await;
    analyzed_after(before).await;
    assert!(sekimori::jobs::analyze_grown(store).await.unwrap().is_empty(), "analyzed once, not again");

    let before = analyses().await;
    add(1501, 2600).await;
    if shows_changed(1100, before).await {
        not_analyzed("1,100 rows changed of 2,600: more than 1,000, less than half", before).await;
        add(2601, 3200).await; // 1,700 changed of 3,200: more than half
        analyzed_after(before).await;
    }
    server.stop().await;
}

on_both_databases!(
    metrics_count_logins_tokens_and_revocations,
    liveness_and_readiness,
    grown_token_tables_are_analyzed
);

/// On SQLite every commit is on disk before it returns, as on PostgreSQL: a revocation or an
/// audit event once answered does not come back undone after a power failure. The readers'
/// pool syncs at each commit (`PRAGMA synchronous = FULL`, 2); the writer commits without
/// waiting for the disk (NORMAL, 1) and its transactions return only after a sync of the WAL
/// that began after their COMMIT (`store::wal::WalSync`), the group commit's included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_are_on_disk_when_they_return() {
    use sekimori::audit::{Actor, Event};
    let server = TestServer::start(Db::Sqlite).await;
    let store = &server.app.store;
    for (name, pool) in store.pools() {
        let level: i64 = sqlx::query("PRAGMA synchronous").fetch_one(pool).await.unwrap().get(0);
        assert_eq!(level, if name == "writer" { 1 } else { 2 }, "the {name} pool");
    }
    let now = server.app.clock.now();
    for n in 0..3 {
        let before = store.wal_syncs().unwrap();
        let mut tx = store.begin().await.unwrap();
        Event::success(&Actor::Cli, "test.durable", "wal", json!({ "n": n })).record(&mut tx, now).await.unwrap();
        tx.commit().await.unwrap();
        assert!(store.wal_syncs().unwrap() > before, "commit {n} returned before the WAL was synced");
    }
    // Through group commit (a system's token is answered once its event is on disk): no caller
    // hears back before a sync. (From outside, a sync begun before a batch's COMMIT cannot be
    // told from one begun after it; `store::group` waits for the batch's own ticket.)
    let before = store.wal_syncs().unwrap();
    let grouped = (0..16).map(|n| {
        let events = server.app.grouped_events.clone();
        async move {
            events.record(Event::success(&Actor::Cli, "test.durable", "wal", json!({ "n": n })), now).await.unwrap();
            store.wal_syncs().unwrap()
        }
    });
    for (n, syncs) in futures_util::future::join_all(grouped).await.into_iter().enumerate() {
        assert!(syncs > before, "grouped event {n} was answered before the WAL was synced");
    }
    server.stop().await;
}

/// When SQLite's commits can no longer be synced (here: the database's files removed under the
/// running server, so that there is nothing left to sync), no write is answered as done: a
/// system's token is refused with `server_error` (its event is not known to be on disk), every
/// later write too, without being written, and `/readyz` answers 503 with the reason, so that
/// the load balancer sends the traffic elsewhere. `/livez` stays 200: a restart, not a loop of
/// restarts, is the cure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_server_whose_commits_cannot_be_synced_answers_no_write_and_is_not_ready() {
    let server = TestServer::start(Db::Sqlite).await;
    let (_, secret) = server
        .add_client(json!({"client_id": "renkei", "name": "連携基盤", "client_type": "confidential",
                           "redirect_uris": ["https://renkei.example.jp/callback"],
                           "grant_types": ["client_credentials"], "service_scopes": ["renkei.read"]}))
        .await;
    let secret = secret.unwrap();
    let grant = [("grant_type", "client_credentials"), ("scope", "renkei.read")];
    let (status, body, _) = token_request(&server, Some(("renkei", &secret)), &grant).await;
    assert_eq!(status, 200, "{body}");
    let ready = |server: &TestServer| server.http.get(format!("{}/readyz", server.admin_url)).send();
    assert_eq!(ready(&server).await.unwrap().status(), 200);

    let path = server.database_url.trim_start_matches("sqlite:").split('?').next().unwrap().to_owned();
    for suffix in ["-wal", ""] {
        std::fs::remove_file(format!("{path}{suffix}")).unwrap();
    }
    for attempt in 0..3 {
        let (status, body, _) = token_request(&server, Some(("renkei", &secret)), &grant).await;
        assert_eq!((status, body["error"].as_str()), (500, Some("server_error")), "attempt {attempt}: {body}");
        assert!(body.get("access_token").is_none(), "attempt {attempt}: {body}");
    }
    let (status, body) = server.admin(reqwest::Method::POST, "/api/v1/clients/renkei/disable", None).await;
    assert_eq!(status, 500, "an administrator's write is not answered as done either: {body}");
    // Nor done: nothing more is written once commits cannot be made durable (the files are
    // gone from the directory, not from the server's open connections, which still read them).
    let client_status: String = sqlx::query("SELECT status FROM clients WHERE client_id = 'renkei'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(client_status, "active", "a write answered 500 took effect all the same");

    let response = ready(&server).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(body["reason"].as_str().unwrap().contains("durable"), "{body}");
    let live = server.http.get(format!("{}/livez", server.admin_url)).send().await.unwrap();
    assert_eq!(live.status(), 200);
    server.stop().await;
}

/// On SQLite the server copies the write-ahead log back into the database file as it goes
/// (`store::wal`), not only when the WAL reaches the writer's backstop of some 64 MiB: a few
/// hundred kilobytes of committed events reach the database file within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_copies_its_wal_back_while_serving() {
    use sekimori::audit::{self, Actor, Event, Pending};
    let server = TestServer::start(Db::Sqlite).await;
    let path = server.database_url.trim_start_matches("sqlite:").split('?').next().unwrap().to_owned();
    let size = || std::fs::metadata(&path).unwrap().len();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = size();
    let now = server.app.clock.now();
    let filler = "x".repeat(200);
    for batch in 0..20 {
        let events: Vec<Pending> = (0..100)
            .map(|n| {
                Pending::new(
                    Event::success(&Actor::Cli, "test.filler", "wal", json!({"n": batch * 100 + n, "filler": filler})),
                    now,
                )
            })
            .collect();
        let mut tx = server.app.store.begin().await.unwrap();
        audit::record_all(&mut tx, &events).await.unwrap();
        tx.commit().await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < before + 300_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(size() >= before + 300_000, "the database file grew from {before} to {} bytes only", size());
    server.stop().await;
}
