//! Reports for auditors, on both databases: the export of the access records neutralises
//! formula cells and is itself recorded, and shows in the reader's own reading record (R8);
//! the analysis finds off-hours logins, failing sources and repeated lockouts (R16); the
//! compliance report lists a leaver who still holds a grant, a cross-section grant and the
//! holders of administrative rights (R19); the CLI runs and refuses a bad date readably.

use reqwest::Method;
use sekimori::audit::{Actor, Event};
use serde_json::{json, Value};
use sqlx::Row;

use crate::common::{self, Db, TestServer};

const FORMULA: &str = "=cmd|' /C calc'!A0";

/// A token with only `scopes`.
async fn token(server: &TestServer, scopes: &[&str]) -> String {
    let (status, issued) =
        server.admin(Method::POST, "/api/v1/api-tokens", Some(json!({"name": "監査担当", "scopes": scopes}))).await;
    assert_eq!(status, 201, "{issued}");
    issued["token"].as_str().unwrap().to_owned()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
}

async fn get(server: &TestServer, token: &str, path: &str) -> Answer {
    let response = server.http.get(format!("{}{path}", server.admin_url)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer { status, headers, text: response.text().await.unwrap() }
}

/// Records `event` as happening at `at` (an RFC 3339 time), as the login code would.
async fn seed(server: &TestServer, at: &str, event: Event<'_>) {
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp();
    let mut tx = server.app.store.begin().await.unwrap();
    event.record(&mut tx, at).await.unwrap();
    tx.commit().await.unwrap();
}

/// The rows of a CSV file as Excel in Japan gets it (UTF-8 with a BOM).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').expect("the file starts with a byte-order mark");
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect()
}

async fn export_neutralises_formula_cells_and_is_in_the_readers_record(db: Db) {
    let server = TestServer::start(db).await;
    let now = time::OffsetDateTime::from_unix_timestamp(server.app.clock.now()).unwrap();
    let at = now.format(&time::format_description::well_known::Rfc3339).unwrap();
    // A login ID typed as a formula, kept as typed in the record.
    let failed = Event::failure(&Actor::Anonymous, "login.password", FORMULA, json!({"reason": "unknown login ID"}))
        .from_source(Some("192.0.2.7".into()));
    seed(&server, &at, failed).await;
    let auditor = token(&server, &["audit:read"]).await;

    let export = get(&server, &auditor, "/api/v1/audit/export?format=csv&action=login.password&outcome=failure").await;
    assert_eq!(export.status, 200, "{}", export.text);
    assert_eq!(export.header("content-type"), "text/csv; charset=utf-8");
    assert!(export.header("content-disposition").starts_with("attachment; filename=\"audit-events-"));
    assert_eq!(export.header("sekimori-export-rows"), "1");
    assert_eq!(export.header("sekimori-export-truncated"), "false");
    let rows = csv_rows(&export.text);
    assert_eq!(rows[0][..5], ["seq", "at", "actor", "action", "target"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][4], format!("'{FORMULA}"), "the formula is shown as text");
    assert_eq!(rows[1][6], "192.0.2.7");

    // JSON keeps the value as recorded.
    let export = get(&server, &auditor, "/api/v1/audit/export?action=login.password&limit=5").await;
    assert_eq!(export.status, 200);
    assert!(export.header("content-disposition").ends_with(".json\""));
    assert_eq!(export.json()[0]["target"], FORMULA);

    // Each export was recorded with its filters and rows, and the reader's record shows them.
    let reads = get(&server, &auditor, "/api/v1/audit/my-reads").await;
    assert_eq!(reads.status, 200, "{}", reads.text);
    let reads = reads.json();
    let exports: Vec<&Value> =
        reads["items"].as_array().unwrap().iter().filter(|e| e["action"] == "audit.export").collect();
    assert_eq!(exports.len(), 2, "{reads}");
    assert_eq!(exports[0]["detail"]["rows"], 1);
    assert_eq!(exports[0]["detail"]["format"], "csv");
    assert_eq!(exports[0]["detail"]["action"], "login.password");
    assert_eq!(exports[0]["actor"], reads["actor"]);
    let printable = get(&server, &auditor, "/api/v1/audit/my-reads?format=csv").await;
    assert_eq!(printable.status, 200);
    let rows = csv_rows(&printable.text);
    assert_eq!(rows.iter().filter(|r| r[1] == "audit.export").count(), 2, "{rows:?}");
    // Another reader's record holds none of these.
    let other = token(&server, &["audit:read"]).await;
    let theirs = get(&server, &other, "/api/v1/audit/my-reads").await.json();
    assert!(theirs["items"].as_array().unwrap().iter().all(|e| e["action"] == "audit.read"), "{theirs}");

    // Without the right, nothing: 403 for each.
    let operator = token(&server, &["hotline", "directory:read", "reports:read"]).await;
    for path in ["/api/v1/audit/export", "/api/v1/audit/my-reads"] {
        assert_eq!(get(&server, &operator, path).await.status, 403, "{path}");
    }
    for path in ["/api/v1/reports/analysis?from=2026-01-01&to=2026-01-31", "/api/v1/reports/compliance"] {
        assert_eq!(get(&server, &auditor, path).await.status, 403, "{path}");
    }
    server.stop().await;
}

async fn analysis_finds_off_hours_logins_failing_sources_and_repeated_lockouts(db: Db) {
    let server = TestServer::start(db).await;
    let suzuki = server.add_person("E-7001", "suzuki", "correct-horse-battery-7").await;
    let person = Actor::Person(suzuki.clone());
    let signed_in = |sid: &str| json!({"sid": sid, "client_id": null});
    // 2026-09-22 is 国民の休日; 09-24 is a Thursday.
    seed(&server, "2026-09-22T10:00:00+09:00", Event::success(&person, "login.password", "account:a", signed_in("s1")))
        .await;
    seed(
        &server,
        "2026-09-24T10:00:00+09:00",
        Event::success(&person, "login.card", "authenticator:c", signed_in("s2")),
    )
    .await;
    seed(&server, "2026-09-24T22:30:00+09:00", Event::success(&person, "login.password", "account:a", signed_in("s3")))
        .await;
    // A password step the card followed is not a login of its own.
    seed(
        &server,
        "2026-09-24T23:00:00+09:00",
        Event::success(&person, "login.password", "account:a", json!({"next": "card"})),
    )
    .await;
    let failure = |login: &str, locked: Option<i64>, source: &str| {
        Event::failure(
            &Actor::Anonymous,
            "login.password",
            format!("login_id:{login}"),
            json!({"reason": "wrong password", "locked_until": locked}),
        )
        .from_source(Some(source.to_owned()))
    };
    for minute in 0..3 {
        seed(&server, &format!("2026-09-25T09:0{minute}:00+09:00"), failure("suzuki", None, "203.0.113.9")).await;
    }
    seed(&server, "2026-09-25T09:05:00+09:00", failure("suzuki", Some(1_790_000_000), "203.0.113.9")).await;
    seed(&server, "2026-09-28T09:05:00+09:00", failure("suzuki", Some(1_790_300_000), "203.0.113.9")).await;
    seed(&server, "2026-09-28T11:00:00+09:00", failure("tanaka", Some(1_790_300_000), "198.51.100.2")).await;
    seed(&server, "2026-10-05T11:00:00+09:00", failure("tanaka", None, "198.51.100.2")).await;

    let auditor = token(&server, &["reports:read"]).await;
    let answer = get(&server, &auditor, "/api/v1/reports/analysis?from=2026-09-21&to=2026-09-30").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let report = answer.json();
    assert_eq!(report["failed_logins"], 6);
    assert_eq!(report["failed_by_source"][0], json!({"key": "203.0.113.9", "count": 5}));
    assert_eq!(report["failed_by_source"][1], json!({"key": "198.51.100.2", "count": 1}));
    assert_eq!(report["failed_by_login_id"][0], json!({"key": "suzuki", "count": 5}));
    assert_eq!(report["repeated_lockouts"], json!([{"key": "suzuki", "count": 2}]), "tanaka was locked once");
    assert_eq!(report["off_hours_count"], 2, "{report}");
    let off = report["off_hours_logins"].as_array().unwrap();
    assert_eq!(off[0]["at"], "2026-09-22T10:00:00+09:00");
    assert!(off[0]["why"].as_str().unwrap().contains("国民の休日"), "{off:?}");
    assert_eq!(off[0]["login_id"], "suzuki");
    assert_eq!(off[0]["employee_number"], "E-7001");
    assert!(off[1]["why"].as_str().unwrap().starts_with("after office hours"), "{off:?}");

    // A real refused login through the login page counts from the address it came from.
    server
        .add_client(json!({
            "client_id": "toshokan", "name": "図書館システム", "client_type": "public",
            "redirect_uris": ["http://127.0.0.1:9002/callback"]
        }))
        .await;
    let (_, challenge) = common::pkce_pair();
    let url = common::authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "toshokan"),
            ("redirect_uri", "http://127.0.0.1:9002/callback"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let refused = common::log_in(&common::browser(), &server, &url, "suzuki", "not-the-password").await;
    assert_eq!(refused.status(), 401, "the login page again");
    let today = sekimori::directory::types::format_date(sekimori::directory::today_in_japan(server.app.clock.now()));
    let today_report =
        get(&server, &auditor, &format!("/api/v1/reports/analysis?from={today}&to={today}")).await.json();
    assert_eq!(today_report["failed_by_source"], json!([{"key": "127.0.0.1", "count": 1}]), "{today_report}");
    assert_eq!(today_report["failed_by_login_id"], json!([{"key": "suzuki", "count": 1}]));

    let sheet = get(&server, &auditor, "/api/v1/reports/analysis?from=2026-09-21&to=2026-09-30&format=csv").await;
    assert_eq!(sheet.status, 200);
    let rows = csv_rows(&sheet.text);
    assert!(rows.iter().any(|r| r[0] == "failed_by_source" && r[1] == "203.0.113.9" && r[2] == "5"), "{rows:?}");
    assert!(rows.iter().any(|r| r[0] == "off_hours_login" && r[3] == "2026-09-22T10:00:00+09:00"), "{rows:?}");

    // Each reading was recorded.
    let recorded: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'report.read'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(recorded, 3);
    let bad = get(&server, &auditor, "/api/v1/reports/analysis?from=2026-09-31&to=2026-10-01").await;
    assert_eq!((bad.status, bad.json()["field"].clone()), (400, json!("from")));
    server.stop().await;
}

/// 市民課 (owns `shimin`) and 税務課; a clerk of each, a leaver of 市民課, and an auditor.
struct Town {
    shimin_clerk: String,
    zeimu_clerk: String,
    leaver: String,
    auditor: String,
}

async fn unit(server: &TestServer, code: &str, name: &str, parent: Option<&str>) -> String {
    let level = if parent.is_some() { "section" } else { "department" };
    let body = json!({"code": code, "name": name, "level": level, "parent_id": parent});
    let (status, made) = server.admin(Method::POST, "/api/v1/org-units", Some(body)).await;
    assert_eq!(status, 201, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

async fn member(server: &TestServer, number: &str, family: &str, unit: &str, login_id: Option<&str>) -> String {
    let (status, person) = server
        .admin(
            Method::POST,
            "/api/v1/people",
            Some(json!({
                "employee_number": number, "family_name": family, "given_name": "花子",
                "family_name_kana": "シケン", "given_name_kana": "ハナコ", "kind": "regular",
                "org_unit_id": unit, "start_date": "2020-04-01"
            })),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    let id = person["id"].as_str().unwrap().to_owned();
    if let Some(login_id) = login_id {
        let (status, account) = server
            .admin(Method::POST, &format!("/api/v1/people/{id}/account"), Some(json!({"login_id": login_id})))
            .await;
        assert_eq!(status, 201, "{account}");
    }
    id
}

/// A live grant of `role` on `client_id`, written as the access module stores it.
async fn grant(server: &TestServer, person: &str, client_id: &str, role: &str, cross_section: bool, end: Option<&str>) {
    let pool = server.app.store.pool();
    let role_id: String = sqlx::query("SELECT id FROM system_roles WHERE client_id = $1 AND name = $2")
        .bind(client_id)
        .bind(role)
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get("id")
        .unwrap();
    let now = server.app.clock.now();
    sqlx::query(
        "INSERT INTO access_grants (id, person_id, role_id, client_id, origin, granted_by, cross_section, start_date,
                                    end_date, created_at, last_confirmed_at)
         VALUES ($1, $2, $3, $4, 'direct', 'cli', $5, '2026-01-01', $6, $7, $7)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(person)
    .bind(role_id)
    .bind(client_id)
    .bind(i64::from(cross_section))
    .bind(end)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
}

async fn town(server: &TestServer) -> Town {
    let department = unit(server, "SOMU", "総務部", None).await;
    let shimin = unit(server, "SHIMIN", "市民課", Some(&department)).await;
    let zeimu = unit(server, "ZEIMU", "税務課", Some(&department)).await;
    let shimin_clerk = member(server, "E-100", "市民", &shimin, Some("shimin100")).await;
    let zeimu_clerk = member(server, "E-200", "税務", &zeimu, Some("zeimu200")).await;
    let leaver = member(server, "E-300", "退職", &shimin, Some("taishoku300")).await;
    let auditor = member(server, "E-400", "監査", &zeimu, None).await;
    server
        .add_client(json!({
            "client_id": "shimin", "name": "住民窓口システム", "client_type": "confidential",
            "redirect_uris": ["https://shimin.city.example.lg.jp/cb"], "owner_org_unit_id": &shimin
        }))
        .await;
    let (status, declared) = server
        .admin(
            Method::PUT,
            "/api/v1/clients/shimin/roles/madoguchi",
            Some(json!({"label": "窓口担当", "classification": "secret"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{declared}");
    // The console and its administrative roles are Sekimori's own, there from the start.
    // A shared ID of the counter (窓口), as an exception record (R1).
    member(server, "E-900", "窓口共用", &department, Some("madoguchi01")).await;
    let (status, shared) = server
        .admin(
            Method::POST,
            "/api/v1/shared-ids",
            Some(json!({"login_id": "madoguchi01", "org_unit_id": &department, "owner_person_id": &shimin_clerk,
                        "justification": "窓口端末の交代勤務", "approver_person_id": &zeimu_clerk,
                        "expires_on": sekimori::directory::types::format_date(
                            sekimori::directory::today_in_japan(server.app.clock.now()) + time::Duration::days(90))})),
        )
        .await;
    assert_eq!(status, 201, "{shared}");
    let later = "2099-03-31";
    grant(server, &shimin_clerk, "shimin", "madoguchi", false, None).await;
    grant(server, &zeimu_clerk, "shimin", "madoguchi", true, Some(later)).await;
    grant(server, &leaver, "shimin", "madoguchi", false, None).await;
    grant(server, &auditor, "sekimori-console", "auditor", false, Some(later)).await;
    // The leaver's last day has passed; nothing took their grant or account away.
    sqlx::query("UPDATE people SET end_date = '2026-01-31' WHERE id = $1")
        .bind(&leaver)
        .execute(server.app.store.pool())
        .await
        .unwrap();
    Town { shimin_clerk, zeimu_clerk, leaver, auditor }
}

fn section<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["sections"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("{key}"))
}

fn people_in(section: &Value) -> Vec<String> {
    section["rows"].as_array().unwrap().iter().filter_map(|r| r["person_id"].as_str().map(str::to_owned)).collect()
}

async fn compliance_lists_leavers_cross_section_grants_and_administrators(db: Db) {
    let server = TestServer::start(db).await;
    let town = town(&server).await;
    let inspector = token(&server, &["reports:read"]).await;
    let answer = get(&server, &inspector, "/api/v1/reports/compliance").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let report = answer.json();

    let leavers = section(&report, "leavers_holding");
    assert_eq!(people_in(leavers), vec![town.leaver.clone()], "{leavers}");
    let row = &leavers["rows"][0];
    assert_eq!(row["article"], "T§15-1, EK§17-3 (R2)");
    assert!(row["detail"].as_str().unwrap().contains("付与 grants 1"), "{row}");
    assert!(row["detail"].as_str().unwrap().contains("active account"), "{row}");
    assert_eq!(row["date"], "2026-01-31");

    let cross = section(&report, "cross_section");
    assert_eq!(people_in(cross), vec![town.zeimu_clerk.clone()], "{cross}");
    assert_eq!(cross["rows"][0]["article"], "T§15-2 (R5)");
    assert_eq!(cross["rows"][0]["org_unit"], "ZEIMU 税務課");
    assert!(!people_in(cross).contains(&town.shimin_clerk));

    let admins = section(&report, "admin_roles");
    assert_eq!(people_in(admins).iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>(), vec![town.auditor]);
    assert!(
        admins["rows"].as_array().unwrap().iter().any(|r| r["subject"].as_str().unwrap().contains("監査担当")),
        "the live API tokens are listed: {admins}"
    );
    let shared = section(&report, "shared_ids");
    assert_eq!(shared["rows"][0]["subject"], "madoguchi01", "{shared}");
    assert_eq!(shared["rows"][0]["person_id"], town.shimin_clerk.as_str(), "the person responsible");
    // Accounts were made today: not unused; no password was set: none past its age.
    assert_eq!(section(&report, "unused_accounts")["rows"], json!([]));
    assert_eq!(section(&report, "password_age")["rows"], json!([]));
    let shimin_unit = report["units"].as_array().unwrap().iter().find(|u| u["org_unit"] == "SHIMIN 市民課").unwrap();
    assert_eq!(shimin_unit["people"], 1, "a person past their end date is not in service");
    let leavers_count =
        shimin_unit["counts"].as_array().unwrap().iter().find(|c| c["key"] == "leavers_holding").unwrap();
    assert_eq!(leavers_count["count"], 1);

    // 100 days on (the tokens would have expired: the domain function, as the console calls
    // it), the accounts of people in service are unused; the leaver is reported as a leaver.
    let later = server.app.clock.now() + 100 * 86_400;
    let later = sekimori::reports::compliance::build(&server.app.store, &server.app.config, later).await.unwrap();
    let later = serde_json::to_value(&later).unwrap();
    let unused = people_in(section(&later, "unused_accounts"));
    assert!(unused.contains(&town.shimin_clerk) && unused.contains(&town.zeimu_clerk), "{unused:?}");
    assert!(!unused.contains(&town.leaver));

    // The printable page: Japanese first, tables with captions and header cells, A4.
    let page = get(&server, &inspector, "/api/v1/reports/compliance?format=html").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(page.header("content-security-policy").contains("style-src 'sha256-"), "{:?}", page.headers);
    for expected in [
        "<html lang=\"ja\">",
        "@page { size: A4;",
        "<caption>",
        "<th scope=\"col\">",
        "<th scope=\"row\">",
        "自己点検",
        "退職 花子",
    ] {
        assert!(page.text.contains(expected), "{expected} missing");
    }
    let english = get(&server, &inspector, "/api/v1/reports/compliance?format=html&lang=en").await;
    assert!(english.text.contains("<html lang=\"en\">") && english.text.contains("Self-inspection report"));
    let sheet = get(&server, &inspector, "/api/v1/reports/compliance?format=csv").await;
    let rows = csv_rows(&sheet.text);
    assert!(rows.iter().any(|r| r[0] == "cross_section" && r[1] == "T§15-2 (R5)" && r[2] == "E-200"), "{rows:?}");
    assert!(rows.iter().any(|r| r[0] == "shared_ids" && r.iter().any(|c| c == "madoguchi01")), "{rows:?}");
    server.stop().await;
}

async fn the_cli_writes_reports_and_refuses_a_bad_date(db: Db) {
    let server = TestServer::start(db).await;
    town(&server).await;
    let dir = std::env::temp_dir().join(format!("sekimori-report-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sekimori"))
            .args(args)
            .env("SEKIMORI_DATABASE_URL", &server.database_url)
            // Reading a report is recorded in the keyed audit chain: the CLI needs the key.
            .env("SEKIMORI_MASTER_KEY", server.app.config.master_key.as_deref().unwrap())
            .output()
            .unwrap()
    };
    let out = dir.join("compliance.html");
    let made = run(&["report", "compliance", "--out", out.to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("退職 花子") && html.contains("<caption>"));
    let csv = run(&["report", "compliance", "--format", "csv", "--as-of", "2026-12-31"]);
    assert!(csv.status.success(), "{}", String::from_utf8_lossy(&csv.stderr));
    assert!(String::from_utf8(csv.stdout).unwrap().starts_with("\u{feff}section,article"));
    let analysis = run(&["report", "analysis", "--from", "2026-09-01", "--to", "2026-09-30"]);
    assert!(analysis.status.success(), "{}", String::from_utf8_lossy(&analysis.stderr));
    let parsed: Value = serde_json::from_slice(&analysis.stdout).unwrap();
    assert_eq!(parsed["from"], "2026-09-01");

    for (args, says) in [
        (
            vec!["report", "analysis", "--from", "2026-13-01", "--to", "2026-12-31"],
            "--from must be a date written YYYY-MM-DD",
        ),
        (vec!["report", "analysis", "--from", "2026-10-01", "--to", "2026-09-30"], "--to must not be before from"),
        (vec!["report", "compliance", "--as-of", "yesterday"], "--as-of must be a date written YYYY-MM-DD"),
        (vec!["report", "compliance", "--format", "pdf"], "--format must be one of html, csv, json"),
    ] {
        let refused = run(&args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let recorded: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'report.read' AND actor = 'cli'")
            .fetch_one(server.app.store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(recorded, 3, "each run that read a report is recorded; refused runs read nothing");
    let _ = std::fs::remove_dir_all(&dir);
    server.stop().await;
}

on_both_databases!(
    export_neutralises_formula_cells_and_is_in_the_readers_record,
    analysis_finds_off_hours_logins_failing_sources_and_repeated_lockouts,
    compliance_lists_leavers_cross_section_grants_and_administrators,
    the_cli_writes_reports_and_refuses_a_bad_date,
    the_monthly_report_is_written_once_a_month_and_recorded,
);

/// A directory for the monthly reports, readable by its owner only.
fn private_dir(name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("sekimori-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The `report.written` events: (target, detail).
async fn written_events(server: &TestServer) -> Vec<(String, Value)> {
    sqlx::query("SELECT target, detail FROM audit_events WHERE action = 'report.written' ORDER BY seq")
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get("target"), serde_json::from_str(row.get::<&str, _>("detail")).unwrap()))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// R19 and R16: with `reports.monthly_dir` set, the jobs leader writes the month's
/// self-inspection report (HTML and CSV) and the analysis of the month before (CSV), owner-only
/// files, as soon as it runs; records them once with each file's SHA-256; writes them again for
/// nobody in the same month (two runs at once included); and writes the next month's when the
/// month turns.
async fn the_monthly_report_is_written_once_a_month_and_recorded(db: Db) {
    use sekimori::clock::japan_month;
    use sekimori::reports::monthly::write_due;
    use std::os::unix::fs::PermissionsExt;
    let dir = private_dir("monthly");
    let configured = dir.clone();
    let server = TestServer::start_configured(db, move |config| config.reports.monthly_dir = Some(configured)).await;
    town(&server).await;
    let month = japan_month(server.app.clock.now());
    let html_path = dir.join(format!("compliance-{month}.html"));
    let csv_path = dir.join(format!("compliance-{month}.csv"));
    // The month before this one, in Japan: the last day before the first of this month.
    let first_of_month = time::OffsetDateTime::from_unix_timestamp(server.app.clock.now())
        .unwrap()
        .to_offset(sekimori::clock::JAPAN)
        .date()
        .replace_day(1)
        .unwrap();
    let before = japan_month(first_of_month.midnight().assume_offset(sekimori::clock::JAPAN).unix_timestamp() - 1);
    let analysis_path = dir.join(format!("analysis-{before}.csv"));
    // The job runs when the node becomes the leader, at start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while written_events(&server).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no monthly report was written at start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let html = std::fs::read(&html_path).unwrap();
    let csv = std::fs::read(&csv_path).unwrap();
    assert!(String::from_utf8_lossy(&html).contains("自己点検"), "the Japanese report");
    assert!(csv.len() > 100, "the CSV has rows");
    let analysis = std::fs::read(&analysis_path).unwrap();
    assert!(String::from_utf8_lossy(&analysis).contains("summary,failed_logins,"), "the month before's analysis");
    for path in [&html_path, &csv_path, &analysis_path] {
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
    }
    let events = written_events(&server).await;
    assert_eq!(events.len(), 1);
    let (target, detail) = &events[0];
    assert_eq!(target, &format!("report:monthly:{month}"));
    assert_eq!(detail["files"][0]["file"], format!("compliance-{month}.html"));
    assert_eq!(detail["files"][0]["sha256"], sha256_hex(&html), "the event names the file as written");
    assert_eq!(detail["files"][1]["sha256"], sha256_hex(&csv));
    assert_eq!(detail["files"][2]["file"], format!("analysis-{before}.csv"));
    assert_eq!(detail["files"][2]["sha256"], sha256_hex(&analysis));

    // The same month again, twice at once: nothing more is recorded.
    let now = server.app.clock.now();
    let (first, second) = tokio::join!(write_due(&server.app, now), write_due(&server.app, now));
    assert_eq!((first.unwrap(), second.unwrap()), (None, None));
    assert_eq!(written_events(&server).await.len(), 1);
    assert_eq!(std::fs::read(&html_path).unwrap(), html, "the month's file is left as it was");

    // The next month: written once, however many runs race for it — here two that started two
    // minutes apart (two leaders for a moment), so their files differ: the files left in place
    // are the ones the one event names.
    server.app.clock.advance(32 * 86_400);
    let now = server.app.clock.now();
    let next = japan_month(now);
    assert_ne!(next, month);
    let (first, second) = tokio::join!(write_due(&server.app, now), write_due(&server.app, now + 120));
    let wrote: Vec<String> = [first.unwrap(), second.unwrap()].into_iter().flatten().collect();
    assert_eq!(wrote, vec![next.clone()], "one of the two records it");
    let events = written_events(&server).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0, format!("report:monthly:{next}"));
    assert_eq!(events[1].1["files"][2]["file"], format!("analysis-{month}.csv"), "the month before is the first one");
    for file in events[1].1["files"].as_array().unwrap() {
        let on_disk = std::fs::read(dir.join(file["file"].as_str().unwrap())).unwrap();
        assert_eq!(file["sha256"], sha256_hex(&on_disk), "{file}");
    }
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 6, "three files a month, no temporary file left: {names:?}");
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The monthly report names people and their rights: a directory others may read is refused
/// when the server starts — before it opens the database or makes a key — with the reason and
/// the remedy. Commands that do not write the reports are not refused for it.
#[test]
fn a_monthly_report_directory_others_can_read_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = private_dir("monthly-open");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("sekimori.toml");
    std::fs::write(&config, format!("[reports]\nmonthly_dir = \"{}\"\n", dir.display())).unwrap();
    // Were the directory not checked, the server would start: it is stopped after 20 s and the
    // test fails, rather than waiting for it for ever.
    let mut server = crate::cli::sekimori(&dir)
        .env("SEKIMORI_CONFIG", &config)
        .env("SEKIMORI_PUBLIC_ADDR", "127.0.0.1:0")
        .env("SEKIMORI_ADMIN_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            server.kill().unwrap();
            panic!("the server started with a reports directory open to others");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = server.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("open to others (mode 755)") && stderr.contains("chmod o-rwx"), "{stderr}");
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, vec!["sekimori.toml"], "no database, no key file, no report");
    // Only the server writes the reports: another command, which an operator may run as another
    // user, is not refused for the directory.
    let verify = crate::cli::sekimori(&dir).env("SEKIMORI_CONFIG", &config).args(["audit", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
