//! The HR lifecycle: effective-dated changes recorded as they arrive and applied by the job.
//! A leaver ends everything at once (tokens, refresh, login, back-channel notice), at the end of
//! their last day; replays change nothing, corrections replace, late arrivals do not overwrite
//! newer state, a returning person keeps their record and login ID, and two job runs at once
//! apply each change once.

use reqwest::Method;
use sekimori::audit::Actor;
use sekimori::directory::updates::Attributes;
use sekimori::directory::{today_in_japan, EmployeeNumber, PersonKind};
use sekimori::hr::changes::{self, Action, Change, Joiner, Recorded};
use serde_json::{json, Value};
use sqlx::Row;
use time::Date;

use crate::common::{authorize_url, browser, location, log_in, query_of, token_request, Db, TestServer};

pub(crate) const PASSWORD: &str = "correct-horse-battery";
pub(crate) const CALLBACK: &str = "http://127.0.0.1:9201/callback";
const DAY: i64 = 86_400;

async fn record(server: &TestServer, employee_number: &str, date: Date, action: Action) -> Recorded {
    let change = Change {
        employee_number: EmployeeNumber::parse(employee_number).unwrap(),
        effective_date: date,
        source: "test:hr".into(),
        action,
    };
    let mut tx = server.app.store.begin().await.unwrap();
    let recorded =
        changes::record(&mut tx, &Actor::Cli, server.app.clock.now(), &server.app.config.hr, &change).await.unwrap();
    tx.commit().await.unwrap();
    recorded
}

pub(crate) fn today(server: &TestServer) -> Date {
    today_in_japan(server.app.clock.now())
}

/// The status of a recorded change, and what superseded it.
async fn change_status(server: &TestServer, id: &str) -> (String, Option<String>) {
    let row = sqlx::query("SELECT status, superseded_by FROM person_changes WHERE id = $1")
        .bind(id)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap();
    (row.try_get("status").unwrap(), row.try_get("superseded_by").unwrap())
}

pub(crate) async fn person_field(server: &TestServer, person_id: &str, column: &str) -> Option<String> {
    sqlx::query(&format!("SELECT {column} AS v FROM people WHERE id = $1"))
        .bind(person_id)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("v")
        .unwrap()
}

/// The details of the audit events `action` on `target`, oldest first.
pub(crate) async fn audited(server: &TestServer, action: &str, target: &str) -> Vec<Value> {
    sqlx::query("SELECT detail FROM audit_events WHERE action = $1 AND target = $2 ORDER BY seq")
        .bind(action)
        .bind(target)
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(&row.try_get::<String, _>("detail").unwrap()).unwrap())
        .collect()
}

/// Creates a section under a fresh department; returns its id.
pub(crate) async fn section(server: &TestServer, code: &str) -> String {
    let (status, department) = server
        .admin(
            Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": format!("D-{code}"), "name": "総務部", "level": "department"})),
        )
        .await;
    assert_eq!(status, 201, "{department}");
    let (status, unit) = server
        .admin(
            Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": code, "name": "課", "level": "section", "parent_id": department["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    unit["id"].as_str().unwrap().to_owned()
}

pub(crate) fn authorize(server: &TestServer) -> String {
    authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", "zeimu"),
            ("redirect_uri", CALLBACK),
            ("scope", "openid profile"),
            ("state", "s1"),
        ],
    )
}

/// Whether `login_id` can log in now (through a fresh browser, to a code).
pub(crate) async fn can_log_in(server: &TestServer, login_id: &str) -> bool {
    let response = log_in(&browser(), server, &authorize(server), login_id, PASSWORD).await;
    response.status() == 303 && location(&response).starts_with(CALLBACK)
}

pub(crate) async fn introspect(server: &TestServer, secret: &str, token: &str) -> bool {
    let response = server
        .http
        .post(format!("{}/introspect", server.public_url))
        .basic_auth("zeimu", Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["active"].as_bool().unwrap()
}

async fn userinfo_status(server: &TestServer, access_token: &str) -> u16 {
    server
        .http
        .get(format!("{}/userinfo", server.public_url))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The consuming system 税務 with a back-channel logout endpoint; returns its secret.
pub(crate) async fn zeimu(server: &TestServer) -> String {
    let (_, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [CALLBACK], "backchannel_logout_uri": "http://127.0.0.1:9/backchannel"}))
        .await;
    secret.unwrap()
}

async fn leaver_applied_by_the_job_ends_everything_at_once(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E7001", "sato", PASSWORD).await;
    let secret = zeimu(&server).await;
    let response = log_in(&browser(), &server, &authorize(&server), "sato", PASSWORD).await;
    assert_eq!(response.status(), 303);
    let code = query_of(&location(&response))["code"].clone();
    let (status, tokens, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(introspect(&server, &secret, &access).await);
    assert_eq!(userinfo_status(&server, &access).await, 200);
    assert_eq!(server.count("logout_notices").await, 0);
    // Their IC card, enrolled earlier.
    sqlx::query(
        "INSERT INTO authenticators (id, person_id, credential_id, credential, label, enrolled_by, created_at, status)
         VALUES ('card-7001', $1, 'cred-7001', '{}', 'IC card', 'test', 0, 'active')",
    )
    .bind(&person_id)
    .execute(server.app.store.pool())
    .await
    .unwrap();

    // A concurrent post (兼務) in another section.
    let other = section(&server, "SEC-L").await;
    sqlx::query("INSERT INTO person_posts (id, person_id, org_unit_id, start_date, created_at) VALUES ('post-7001', $1, $2, '2020-04-01', 0)")
        .bind(&person_id)
        .bind(&other)
        .execute(server.app.store.pool())
        .await
        .unwrap();

    // Their last day was yesterday: the leave took effect at midnight and is due now.
    let yesterday = today(&server).previous_day().unwrap();
    let leave = record(&server, "E7001", yesterday, Action::Leave).await;
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    let posts = sekimori::directory::updates::open_posts(server.app.store.pool(), &person_id).await.unwrap();
    assert!(posts.is_empty(), "a leaver's concurrent posts end with their last day: {posts:?}");
    assert_eq!(change_status(&server, leave.id()).await.0, "applied");

    assert!(!introspect(&server, &secret, &access).await, "the access token is inactive at introspection");
    assert_eq!(userinfo_status(&server, &access).await, 401, "and at userinfo");
    let (status, body, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert!(!can_log_in(&server, "sato").await, "the login is refused");
    assert_eq!(server.count("logout_notices").await, 1, "the consuming system is owed its back-channel notice");

    // Kept, not deleted: retired with their last day, the account disabled.
    assert_eq!(person_field(&server, &person_id, "status").await.as_deref(), Some("retired"));
    assert_eq!(
        person_field(&server, &person_id, "end_date").await,
        Some(sekimori::directory::types::format_date(yesterday))
    );
    let account: String = sqlx::query("SELECT status FROM accounts WHERE person_id = $1")
        .bind(&person_id)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("status")
        .unwrap();
    assert_eq!(account, "disabled");
    let card: String = sqlx::query("SELECT status FROM authenticators WHERE id = 'card-7001'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("status")
        .unwrap();
    assert_eq!(card, "revoked", "the card no longer works");
    let events = audited(&server, "person.leave", &format!("person:{person_id}")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["source"], "test:hr");
    assert_eq!(events[0]["effective_date"], sekimori::directory::types::format_date(yesterday));
    assert_eq!(events[0]["sessions_ended"], 1);
    assert_eq!(events[0]["authenticators_revoked"], 1);
    server.stop().await;
}

async fn a_leave_takes_effect_at_the_end_of_the_last_day(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E7002", "ito", PASSWORD).await;
    zeimu(&server).await;
    let leave = record(&server, "E7002", today(&server), Action::Leave).await;
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    assert_eq!(change_status(&server, leave.id()).await.0, "pending", "not due before the day ends");
    assert!(can_log_in(&server, "ito").await, "the person still works on their last day");

    let midnight = changes::effective_at(changes::ChangeKind::Leave, today(&server), &server.app.config.hr);
    server.app.clock.advance(midnight - server.app.clock.now() + 1);
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    assert_eq!(change_status(&server, leave.id()).await.0, "applied");
    assert!(!can_log_in(&server, "ito").await, "refused once the last day is over");
    server.stop().await;
}

async fn replays_corrections_and_late_arrivals_give_one_result(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E7003", "kato", PASSWORD).await;
    let a = section(&server, "SEC-A").await;
    let b = section(&server, "SEC-B").await;
    let c = section(&server, "SEC-C").await;
    let to = |code: &str| Action::Move { org_unit_code: code.into() };
    let tomorrow = today(&server).next_day().unwrap();

    // Sent twice: recorded once.
    let first = record(&server, "E7003", tomorrow, to("SEC-A")).await;
    assert!(matches!(first, Recorded::New { .. }));
    let replay = record(&server, "E7003", tomorrow, to("SEC-A")).await;
    assert_eq!(replay, Recorded::Unchanged { id: first.id().to_owned() });
    // A correction for the same date replaces the pending change, which is kept.
    let correction = record(&server, "E7003", tomorrow, to("SEC-B")).await;
    assert_eq!(correction, Recorded::Replaced { id: correction.id().to_owned(), replaced: first.id().to_owned() });
    assert_eq!(change_status(&server, first.id()).await, ("superseded".into(), Some(correction.id().to_owned())));

    let later = server.app.clock.now() + 5 * DAY;
    changes::apply_due(&server.app.store, later).await.unwrap();
    assert_eq!(person_field(&server, &person_id, "org_unit_id").await, Some(b.clone()));
    let moves = audited(&server, "person.move", &format!("person:{person_id}")).await;
    assert_eq!(moves.len(), 1, "the superseded change was never applied");
    assert_eq!(moves[0]["from_org_unit_id"], Value::Null);
    assert_eq!(moves[0]["to_org_unit_id"], b);
    assert_eq!(moves[0]["effective_date"], sekimori::directory::types::format_date(tomorrow));

    // A move three days out is applied; one dated two days out then arrives late: it does not
    // overwrite the newer state, and is kept as superseded by it.
    let in_three = tomorrow.next_day().unwrap().next_day().unwrap();
    let newer = record(&server, "E7003", in_three, to("SEC-C")).await;
    changes::apply_due(&server.app.store, later).await.unwrap();
    assert_eq!(person_field(&server, &person_id, "org_unit_id").await, Some(c.clone()));
    let late = record(&server, "E7003", tomorrow.next_day().unwrap(), to("SEC-A")).await;
    let run = changes::apply_due(&server.app.store, later).await.unwrap();
    assert_eq!(change_status(&server, late.id()).await, ("superseded".into(), Some(newer.id().to_owned())));
    assert_eq!(person_field(&server, &person_id, "org_unit_id").await, Some(c.clone()));
    assert!(run.applied == 0, "{run:?}");
    // Replaying the applied change changes nothing either.
    assert_eq!(
        record(&server, "E7003", in_three, to("SEC-C")).await,
        Recorded::Unchanged { id: newer.id().to_owned() }
    );

    // A concurrent post (兼務) in A, beside the primary unit C, and its end.
    record(&server, "E7003", tomorrow, Action::AddPost { org_unit_code: "SEC-A".into() }).await;
    changes::apply_due(&server.app.store, later).await.unwrap();
    let posts = sekimori::directory::updates::open_posts(server.app.store.pool(), &person_id).await.unwrap();
    assert_eq!(posts, vec![a.clone()]);
    record(&server, "E7003", in_three, Action::EndPost { org_unit_code: "SEC-A".into() }).await;
    changes::apply_due(&server.app.store, later).await.unwrap();
    assert!(sekimori::directory::updates::open_posts(server.app.store.pool(), &person_id).await.unwrap().is_empty());
    assert_eq!(person_field(&server, &person_id, "org_unit_id").await, Some(c));
    server.stop().await;
}

async fn a_joiner_is_registered_on_their_first_day_with_an_account_but_no_password(db: Db) {
    let server = TestServer::start(db).await;
    let unit = section(&server, "SEC-J").await;
    let joiner = |given_name: &str| {
        Action::Join(Joiner {
            family_name: "高橋".into(),
            given_name: given_name.into(),
            family_name_kana: "タカハシ".into(),
            given_name_kana: "ミキ".into(),
            birth_date: None,
            kind: PersonKind::Regular,
            org_unit_code: Some("SEC-J".into()),
            email: Some("takahashi@city.example.lg.jp".into()),
            end_date: None,
            login_id: Some("Takahashi.Miki".into()),
        })
    };
    let tomorrow = today(&server).next_day().unwrap();
    let join = record(&server, "E7301", tomorrow, joiner("美希")).await;
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    assert_eq!(server.count("people").await, 0, "not before their first day");
    changes::apply_due(&server.app.store, server.app.clock.now() + 2 * DAY).await.unwrap();
    assert_eq!(change_status(&server, join.id()).await.0, "applied");
    let person = sqlx::query(
        "SELECT p.id, p.org_unit_id, p.start_date, a.login_id, a.password_hash
                              FROM people p JOIN accounts a ON a.person_id = p.id WHERE p.employee_number = 'E7301'",
    )
    .fetch_one(server.app.store.pool())
    .await
    .unwrap();
    assert_eq!(person.try_get::<Option<String>, _>("org_unit_id").unwrap(), Some(unit));
    assert_eq!(person.try_get::<String, _>("start_date").unwrap(), sekimori::directory::types::format_date(tomorrow));
    assert_eq!(person.try_get::<String, _>("login_id").unwrap(), "takahashi.miki");
    assert_eq!(person.try_get::<Option<String>, _>("password_hash").unwrap(), None);
    let person_id: String = person.try_get("id").unwrap();
    assert_eq!(audited(&server, "person.join", &format!("person:{person_id}")).await.len(), 1);
    // The same join once more (a replayed feed) is recorded once and applied once.
    assert_eq!(record(&server, "E7301", tomorrow, joiner("美希")).await, Recorded::Unchanged { id: join.id().into() });
    // A hostile name is refused when it arrives, before anything is stored.
    let change = Change {
        employee_number: EmployeeNumber::parse("E7302").unwrap(),
        effective_date: tomorrow,
        source: "test:hr".into(),
        action: joiner("美\u{0}希"),
    };
    let mut tx = server.app.store.begin().await.unwrap();
    let refused = changes::record(&mut tx, &Actor::Cli, server.app.clock.now(), &server.app.config.hr, &change).await;
    assert!(refused.is_err(), "{refused:?}");
    tx.rollback().await.unwrap();
    assert_eq!(server.count("people").await, 1);
    server.stop().await;
}

async fn a_returning_person_keeps_their_record_and_login_id(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E7004", "suzuki", PASSWORD).await;
    zeimu(&server).await;
    section(&server, "SEC-R").await;
    let today = today(&server);
    // 会計年度任用職員: the last appointment ended yesterday, the next began today. The join
    // arrives first; the leave is still applied before it.
    let join = record(
        &server,
        "E7004",
        today,
        Action::Join(Joiner {
            family_name: "鈴木".into(),
            given_name: "花子".into(),
            family_name_kana: "スズキ".into(),
            given_name_kana: "ハナコ".into(),
            birth_date: None,
            kind: PersonKind::PartTime,
            org_unit_code: Some("SEC-R".into()),
            email: None,
            end_date: Some(today.replace_year(today.year() + 1).unwrap_or(today)),
            login_id: Some("another.id".into()),
        }),
    )
    .await;
    let leave = record(&server, "E7004", today.previous_day().unwrap(), Action::Leave).await;
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    assert_eq!(change_status(&server, leave.id()).await.0, "applied");
    assert_eq!(change_status(&server, join.id()).await.0, "applied");

    let people = sqlx::query("SELECT id FROM people WHERE employee_number = 'E7004'")
        .fetch_all(server.app.store.pool())
        .await
        .unwrap();
    assert_eq!(people.len(), 1, "never a second person (R1)");
    assert_eq!(person_field(&server, &person_id, "status").await.as_deref(), Some("active"));
    assert_eq!(person_field(&server, &person_id, "kind").await.as_deref(), Some("part_time"));
    assert_eq!(person_field(&server, &person_id, "family_name").await.as_deref(), Some("鈴木"));
    let account =
        sqlx::query("SELECT login_id, status, password_hash, must_change_password FROM accounts WHERE person_id = $1")
            .bind(&person_id)
            .fetch_one(server.app.store.pool())
            .await
            .unwrap();
    assert_eq!(account.try_get::<String, _>("login_id").unwrap(), "suzuki", "the login ID is kept");
    assert_eq!(account.try_get::<String, _>("status").unwrap(), "active");
    assert_eq!(account.try_get::<Option<String>, _>("password_hash").unwrap(), None, "the old password is withdrawn");
    assert_eq!(account.try_get::<i64, _>("must_change_password").unwrap(), 1);
    assert!(!can_log_in(&server, "suzuki").await, "the old password no longer opens the account");
    let rejoined = audited(&server, "person.rejoin", &format!("person:{person_id}")).await;
    assert_eq!(rejoined.len(), 1);
    assert_eq!(rejoined[0]["login_id"], "suzuki");

    // A join for a person still employed is a mistake: it fails, and changes nothing.
    let again = record(
        &server,
        "E7004",
        today,
        Action::Join(Joiner {
            family_name: "鈴木".into(),
            given_name: "次郎".into(),
            family_name_kana: "スズキ".into(),
            given_name_kana: "ジロウ".into(),
            birth_date: None,
            kind: PersonKind::Regular,
            org_unit_code: None,
            email: None,
            end_date: None,
            login_id: None,
        }),
    )
    .await;
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    assert_eq!(change_status(&server, again.id()).await.0, "failed");
    assert_eq!(person_field(&server, &person_id, "given_name").await.as_deref(), Some("花子"));
    server.stop().await;
}

async fn a_suspension_ends_sessions_and_a_return_lets_the_person_in_again(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E7005", "mori", PASSWORD).await;
    let secret = zeimu(&server).await;
    assert!(can_log_in(&server, "mori").await);
    // A code obtained just before the suspension, not yet redeemed.
    let response = log_in(&browser(), &server, &authorize(&server), "mori", PASSWORD).await;
    let code = query_of(&location(&response))["code"].clone();
    let suspend = record(&server, "E7005", today(&server), Action::Suspend).await;
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    let (status, body, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "the code died with the suspension");
    assert_eq!(change_status(&server, suspend.id()).await.0, "applied");
    assert_eq!(person_field(&server, &person_id, "status").await.as_deref(), Some("suspended"));
    assert!(!can_log_in(&server, "mori").await, "a suspended person cannot log in");
    let live: i64 = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE person_id = $1 AND revoked_at IS NULL")
        .bind(&person_id)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(live, 0, "their sessions ended with the suspension");
    // A second suspension of a suspended person is refused as such, and changes nothing.
    let tomorrow = today(&server).next_day().unwrap();
    let again = record(&server, "E7005", tomorrow, Action::Suspend).await;
    let back = record(&server, "E7005", tomorrow.next_day().unwrap(), Action::Return).await;
    changes::apply_due(&server.app.store, server.app.clock.now() + 3 * DAY).await.unwrap();
    assert_eq!(change_status(&server, again.id()).await.0, "failed");
    assert_eq!(change_status(&server, back.id()).await.0, "applied");
    assert_eq!(person_field(&server, &person_id, "status").await.as_deref(), Some("active"));
    assert!(can_log_in(&server, "mori").await, "back at work");
    server.stop().await;
}

/// Runs `sekimori hr import` on `bytes` against the server's database, with the safety valve
/// opened wide (these tests are about the import; the valve has its own, in hr_valve.rs).
fn hr_import(server: &TestServer, bytes: &[u8], extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = crate::cli::temp_dir();
    let file = dir.join("jinji.csv");
    std::fs::write(&file, bytes).unwrap();
    let mut args = vec!["import", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    sekimori_hr(server, &dir, &args, "max_share_percent = 100")
}

/// Runs `sekimori hr ARGS` in `dir` against the server's database, with `hr_config` as the
/// config file's `[hr]` section; returns (exit code, stdout, stderr).
pub(crate) fn sekimori_hr(
    server: &TestServer,
    dir: &std::path::Path,
    args: &[&str],
    hr_config: &str,
) -> (Option<i32>, String, String) {
    let config = dir.join("sekimori.toml");
    std::fs::write(&config, format!("[hr]\n{hr_config}\n")).unwrap();
    let output = crate::cli::sekimori(dir)
        .args(["--config", config.to_str().unwrap(), "hr"])
        .args(args)
        .env("SEKIMORI_DATABASE_URL", &server.database_url)
        .env("SEKIMORI_MASTER_KEY", server.app.config.master_key.as_deref().unwrap())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

async fn a_shift_jis_csv_is_recorded_whole_or_not_at_all_and_its_leavers_end(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E7201", "kobayashi", PASSWORD).await;
    zeimu(&server).await;
    section(&server, "SEC-X").await;
    let tomorrow = sekimori::directory::types::format_date(today(&server).next_day().unwrap());
    let header = "職員番号,異動区分,発令日,所属コード,姓,名,姓カナ,名カナ,区分";
    let file = |joiner_kana: &str| {
        let text = format!(
            "{header}\r\nE7201,異動,{tomorrow},SEC-X,,,,,\r\nE7202,採用,{tomorrow},SEC-X,山田,太郎,{joiner_kana},タロウ,正規\r\n"
        );
        encoding_rs::SHIFT_JIS.encode(&text).0.into_owned()
    };

    // One bad row (a reading not in kana): reported with its line, nothing recorded.
    let (code, _, stderr) = hr_import(&server, &file("yamada"), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("line 3") && stderr.contains("family_name_kana"), "{stderr}");
    assert_eq!(server.count("person_changes").await, 0);

    // A dry run says what would change, per section and kind, and records nothing.
    let (code, stdout, stderr) = hr_import(&server, &file("ヤマダ"), &["--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.contains("SEC-X") && l.contains("move") && l.trim_end().ends_with('1')),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.contains("SEC-X") && l.contains("join")), "{stdout}");
    assert_eq!(server.count("person_changes").await, 0);

    let (code, stdout, stderr) = hr_import(&server, &file("ヤマダ"), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("new 2"), "{stdout}");
    assert_eq!(server.count("person_changes").await, 2);
    // The same file again changes nothing.
    let (code, stdout, _) = hr_import(&server, &file("ヤマダ"), &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("already recorded 2"), "{stdout}");
    assert_eq!(server.count("person_changes").await, 2);

    // A leaver from the file (UTF-8 with BOM, English headers): due at once, applied at once.
    assert!(can_log_in(&server, "kobayashi").await);
    let yesterday = sekimori::directory::types::format_date(today(&server).previous_day().unwrap());
    let leaver = format!("\u{feff}employee_number,change,effective_date\nE7201,leave,{yesterday}\n");
    let (code, stdout, stderr) = hr_import(&server, leaver.as_bytes(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("applied now: 1"), "{stdout}");
    assert!(!can_log_in(&server, "kobayashi").await, "the leaver's login is refused");
    assert_eq!(person_field(&server, &person_id, "status").await.as_deref(), Some("retired"));
    let events = audited(&server, "person.leave", &format!("person:{person_id}")).await;
    assert_eq!(events[0]["source"], "csv:jinji.csv:2");
    server.stop().await;
}

async fn two_job_runs_at_once_apply_each_change_once(db: Db) {
    let server = TestServer::start(db).await;
    let other = server.another_node().await;
    section(&server, "SEC-P").await;
    let tomorrow = today(&server).next_day().unwrap();
    let mut people = Vec::new();
    for i in 0..6 {
        let number = format!("E71{i:02}");
        people.push(server.add_person(&number, &format!("staff{i:02}"), &format!("{PASSWORD}-{i}")).await);
        record(&server, &number, tomorrow, Action::Move { org_unit_code: "SEC-P".into() }).await;
        let attributes = Attributes { email: Some(format!("staff{i:02}@example.lg.jp")), ..Attributes::default() };
        record(&server, &number, tomorrow, Action::Update(attributes)).await;
    }
    let at = server.app.clock.now() + 2 * DAY;
    let (one, two) = tokio::join!(changes::apply_due(&server.app.store, at), changes::apply_due(&other.app.store, at));
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.applied + two.applied, 12, "{one:?} {two:?}");
    assert_eq!(one.failed + two.failed + one.superseded + two.superseded, 0);
    for person_id in &people {
        assert_eq!(audited(&server, "person.move", &format!("person:{person_id}")).await.len(), 1);
        assert_eq!(audited(&server, "person.update", &format!("person:{person_id}")).await.len(), 1);
    }
    let pending = sqlx::query("SELECT COUNT(*) AS n FROM person_changes WHERE status <> 'applied'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap();
    assert_eq!(pending, 0);
    other.stop().await;
    server.stop().await;
}

/// On April 1 the job applies many changes in one transaction (on PostgreSQL): one change that
/// cannot be applied, wherever it falls, is marked failed alone, and every other change is
/// applied exactly once, its record written once.
async fn a_change_that_cannot_be_applied_fails_alone_among_many(db: Db) {
    let server = TestServer::start(db).await;
    let unit = section(&server, "SEC-R").await;
    let yesterday = today(&server).previous_day().unwrap();
    let stayer = server.add_person("E7699", "stayer", &format!("{PASSWORD}-stay")).await;
    let mut movers = Vec::new();
    let mut bad = Vec::new();
    for i in 0..58 {
        let number = format!("E76{i:02}");
        movers.push(server.add_person(&number, &format!("mover{i:02}"), &format!("{PASSWORD}-{i}")).await);
        record(&server, &number, yesterday, Action::Move { org_unit_code: "SEC-R".into() }).await;
        if i == 20 {
            // Nobody has this employee number.
            bad.push(record(&server, "E7698", yesterday, Action::Move { org_unit_code: "SEC-R".into() }).await);
        }
        if i == 45 {
            // No section has this code.
            bad.push(record(&server, "E7699", yesterday, Action::Move { org_unit_code: "SEC-NONE".into() }).await);
        }
    }
    let run = changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    assert_eq!((run.applied, run.failed, run.superseded), (58, 2, 0), "{run:?}");
    for person_id in &movers {
        assert_eq!(person_field(&server, person_id, "org_unit_id").await.as_deref(), Some(unit.as_str()));
        assert_eq!(audited(&server, "person.move", &format!("person:{person_id}")).await.len(), 1);
    }
    for change in &bad {
        assert_eq!(change_status(&server, change.id()).await.0, "failed");
        let failures = audited(&server, "person_change.apply", &format!("person_change:{}", change.id())).await;
        assert_eq!(failures.len(), 1, "{failures:?}");
    }
    assert_eq!(person_field(&server, &stayer, "org_unit_id").await, None);
    assert!(audited(&server, "person.move", &format!("person:{stayer}")).await.is_empty());
    let verified = sekimori::audit::verify(&server.app.store).await.unwrap();
    assert!(matches!(verified, sekimori::audit::Verification::Intact { .. }), "{verified:?}");
    server.stop().await;
}

async fn a_manager_previews_what_will_change_in_their_section(db: Db) {
    let server = TestServer::start(db).await;
    section(&server, "SEC-A").await;
    section(&server, "SEC-B").await;
    for (i, login) in ["endo", "fujii", "goto"].iter().enumerate() {
        server.add_person(&format!("E740{}", i + 1), login, &format!("{PASSWORD}-{i}")).await;
    }
    let yesterday = today(&server).previous_day().unwrap();
    let tomorrow = today(&server).next_day().unwrap();
    let later = tomorrow.saturating_add(time::Duration::days(10));
    for number in ["E7401", "E7402"] {
        record(&server, number, yesterday, Action::Move { org_unit_code: "SEC-A".into() }).await;
    }
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    record(&server, "E7401", tomorrow, Action::Leave).await;
    record(&server, "E7402", tomorrow, Action::Move { org_unit_code: "SEC-B".into() }).await;
    record(&server, "E7403", tomorrow, Action::Move { org_unit_code: "SEC-A".into() }).await;
    let joiner = Joiner {
        family_name: "山田".into(),
        given_name: "太郎".into(),
        family_name_kana: "ヤマダ".into(),
        given_name_kana: "タロウ".into(),
        birth_date: None,
        kind: PersonKind::Regular,
        org_unit_code: Some("SEC-A".into()),
        email: None,
        end_date: None,
        login_id: None,
    };
    record(&server, "E7404", later, Action::Join(joiner)).await;
    // A file the safety valve holds: its post shows, marked as held.
    let dir = crate::cli::temp_dir();
    let file = dir.join("kenmu.csv");
    let date = sekimori::directory::types::format_date(tomorrow);
    std::fs::write(
        &file,
        format!("職員番号,異動区分,発令日,所属コード\nE7403,兼務発令,{date},SEC-A\nE7402,休職,{date},\n"),
    )
    .unwrap();
    let (code, stdout, _) = sekimori_hr(&server, &dir, &["import", file.to_str().unwrap()], "max_share_percent = 10");
    assert_eq!(code, Some(3), "{stdout}");

    let (code, stdout, stderr) = sekimori_hr(&server, &dir, &["preview", "--section", "SEC-A", "--date", &date], "");
    assert_eq!(code, Some(0), "{stderr}");
    let line = |needle: &str, number: &str| stdout.lines().any(|l| l.contains(needle) && l.contains(number));
    assert!(line("退職", "E7401"), "{stdout}");
    assert!(line("転出", "E7402") && line("→ SEC-B", "E7402"), "{stdout}");
    assert!(line("着任", "E7403"), "{stdout}");
    assert!(line("兼務発令", "E7403") && line("保留中", "E7403"), "{stdout}");
    assert!(!stdout.contains("E7404"), "the joiner comes later: {stdout}");
    assert!(stdout.contains("4 件"), "{stdout}");
    // SEC-B sees the arrival from SEC-A; a later date shows the joiner, by name.
    let (_, stdout, _) = sekimori_hr(&server, &dir, &["preview", "--section", "SEC-B", "--date", &date], "");
    assert!(line_in(&stdout, "着任", "← SEC-A"), "{stdout}");
    let later = sekimori::directory::types::format_date(later);
    let (_, stdout, _) = sekimori_hr(&server, &dir, &["preview", "--section", "SEC-A", "--date", &later], "");
    assert!(line_in(&stdout, "E7404", "山田 太郎"), "{stdout}");

    let (code, _, stderr) = sekimori_hr(&server, &dir, &["preview", "--section", "NOPE"], "");
    assert_eq!(code, Some(1), "{stderr}");
    let (code, _, _) = sekimori_hr(&server, &dir, &["preview", "--section", "SEC-A", "--date", "2027-02-30"], "");
    assert_eq!(code, Some(2));
    server.stop().await;
}

/// A file is recorded in a few statements (`changes::record_file`), its lines judged against
/// one another in memory; what it records must be exactly what its lines recorded one by one
/// would be (`record_in_batch`, a file of one line, which reads what the lines before it wrote
/// from the database): replays of pending and applied changes, corrections of pending ones and
/// of lines earlier in the same file, a line refused on its own, and more new lines than one
/// INSERT takes.
async fn a_file_is_recorded_as_its_lines_one_by_one_would_be(db: Db) {
    let server = TestServer::start(db).await;
    let now = server.app.clock.now();
    let config = &server.app.config.hr;
    // Dated ahead, so that the server's own HR job (at the real time) never takes them.
    let tomorrow = today(&server).next_day().unwrap();
    let in_ten_days = today(&server).checked_add(time::Duration::days(10)).unwrap();
    let to = |code: &str| Action::Move { org_unit_code: code.into() };
    let change = |employee_number: &str, date: Date, action: Action| Change {
        employee_number: EmployeeNumber::parse(employee_number).unwrap(),
        effective_date: date,
        source: format!("csv:jinji.csv:{employee_number}"),
        action,
    };
    // Recorded before the file: a pending move for E8001, an applied one for E8002.
    let pending = record(&server, "E8001", in_ten_days, to("SEC-A")).await;
    let applied = record(&server, "E8002", tomorrow, to("SEC-A")).await;
    section(&server, "SEC-A").await;
    server.add_person("E8002", "sasaki", PASSWORD).await;
    changes::apply_due(&server.app.store, now + 5 * DAY).await.unwrap();
    assert_eq!(change_status(&server, applied.id()).await.0, "applied");
    assert_eq!(change_status(&server, pending.id()).await.0, "pending");

    let mut file = vec![
        change("E8001", in_ten_days, to("SEC-A")), // 0: replay of the pending change
        change("E8001", in_ten_days, to("SEC-B")), // 1: replaces it
        change("E8001", in_ten_days, to("SEC-B")), // 2: replay of line 1
        change("E8001", in_ten_days, to("SEC-C")), // 3: replaces line 1
        change("E8002", tomorrow, to("SEC-A")),    // 4: replay of the applied change
        change("E8002", tomorrow, to("SEC-B")),    // 5: new: an applied change is history
        change("E8003", tomorrow, Action::Leave),  // 6: new
        Change { source: "csv:\u{7}".into(), ..change("E8004", tomorrow, Action::Leave) }, // 7: refused
        change("E8003", tomorrow, to("SEC-A")),    // 8: new (another aspect)
    ];
    for n in 0..150 {
        file.push(change(&format!("E9{n:03}"), tomorrow, to("SEC-A")));
    }

    // The file's way and the lines' way, each in a transaction rolled back, from the same state.
    let known =
        [(pending.id().to_owned(), "pending E8001".to_owned()), (applied.id().to_owned(), "applied E8002".to_owned())];
    let mut tx = server.app.store.begin().await.unwrap();
    let together = changes::record_file(&mut tx, config, now, &file).await.unwrap();
    let together = described(&mut tx, &known, &together).await;
    tx.rollback().await.unwrap();
    let mut tx = server.app.store.begin().await.unwrap();
    let mut alone = Vec::new();
    for line in &file {
        alone.push(changes::record_in_batch(&mut tx, config, now, line).await);
    }
    let alone = described(&mut tx, &known, &alone).await;
    tx.rollback().await.unwrap();
    assert_eq!(together, alone);

    let (outcomes, _) = &together;
    let expected = [
        "unchanged pending E8001",
        "replaced pending E8001",
        "unchanged line 1",
        "replaced line 1",
        "unchanged applied E8002",
        "new",
        "new",
        "refused",
        "new",
    ];
    assert_eq!(&outcomes[..expected.len()], expected);
    assert!(outcomes[expected.len()..].iter().all(|o| o == "new"));
    assert_eq!(server.count("person_changes").await, 2, "both transactions were rolled back");
    server.stop().await;
}

/// What a recording did, with ids named by what they are (a change known before, or the line
/// that made it): each line's outcome, and every row of `person_changes` after it.
async fn described(
    tx: &mut sekimori::store::Tx,
    known: &[(String, String)],
    outcomes: &[Result<Recorded, sekimori::directory::DirectoryError>],
) -> (Vec<String>, Vec<String>) {
    let mut names: std::collections::HashMap<String, String> = known.iter().cloned().collect();
    for (line, outcome) in outcomes.iter().enumerate() {
        if let Ok(Recorded::New { id } | Recorded::Replaced { id, .. }) = outcome {
            names.insert(id.clone(), format!("line {line}"));
        }
    }
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| format!("unknown {id}"));
    let lines = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(Recorded::New { .. }) => "new".to_owned(),
            Ok(Recorded::Replaced { replaced, .. }) => format!("replaced {}", name(replaced)),
            Ok(Recorded::Unchanged { id }) => format!("unchanged {}", name(id)),
            Err(_) => "refused".to_owned(),
        })
        .collect();
    let rows = sqlx::query(
        "SELECT id, employee_number, kind, aspect, phase, payload, effective_date, effective_at, status, source,
                error, created_at, applied_at, superseded_by, person_id FROM person_changes",
    )
    .fetch_all(&mut **tx)
    .await
    .unwrap();
    let mut rows: Vec<String> = rows
        .iter()
        .map(|row| {
            let text = |column: &str| row.try_get::<Option<String>, _>(column).unwrap().unwrap_or_default();
            let number = |column: &str| row.try_get::<Option<i64>, _>(column).unwrap().map(|n| n.to_string());
            format!(
                "{} {} {} {} {:?} {} {} {:?} {} {} {} {:?} {:?} by {} person {}",
                name(&text("id")),
                text("employee_number"),
                text("kind"),
                text("aspect"),
                number("phase"),
                text("payload"),
                text("effective_date"),
                number("effective_at"),
                text("status"),
                text("source"),
                text("error"),
                number("created_at"),
                number("applied_at"),
                row.try_get::<Option<String>, _>("superseded_by").unwrap().map(|id| name(&id)).unwrap_or_default(),
                text("person_id").is_empty(),
            )
        })
        .collect();
    rows.sort();
    (lines, rows)
}

fn line_in(text: &str, a: &str, b: &str) -> bool {
    text.lines().any(|l| l.contains(a) && l.contains(b))
}

on_both_databases!(
    a_manager_previews_what_will_change_in_their_section,
    leaver_applied_by_the_job_ends_everything_at_once,
    a_leave_takes_effect_at_the_end_of_the_last_day,
    replays_corrections_and_late_arrivals_give_one_result,
    a_joiner_is_registered_on_their_first_day_with_an_account_but_no_password,
    a_returning_person_keeps_their_record_and_login_id,
    a_suspension_ends_sessions_and_a_return_lets_the_person_in_again,
    a_shift_jis_csv_is_recorded_whole_or_not_at_all_and_its_leavers_end,
    two_job_runs_at_once_apply_each_change_once,
    a_change_that_cannot_be_applied_fails_alone_among_many,
    a_file_is_recorded_as_its_lines_one_by_one_would_be,
);
