//! Finding people (admin list and hotline, one search), a person's record with login ID and
//! cards, the loss report's reference number, and reading the audit log by filters and pages.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{log_in, obtain_code, Db, TestServer};

/// Query parameters, in order.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// `path` with `pairs` as a properly encoded query string.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse("http://x").unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    format!("{path}?{}", url.query().unwrap_or_default())
}

async fn call(server: &TestServer, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server.http.request(method, format!("{}{path}", server.admin_url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status >= 400 {
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{path}");
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn token(server: &TestServer, scopes: &[&str]) -> String {
    let (status, issued) =
        server.admin(Method::POST, "/api/v1/api-tokens", Some(json!({"name": "試験", "scopes": scopes}))).await;
    assert_eq!(status, 201, "{issued}");
    issued["token"].as_str().unwrap().to_owned()
}

async fn org_unit(server: &TestServer, code: &str, level: &str, parent: Option<&str>) -> String {
    let (status, unit) = server
        .admin(
            Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": code, "name": format!("課{code}"), "level": level, "parent_id": parent})),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    unit["id"].as_str().unwrap().to_owned()
}

struct NewPerson<'a> {
    number: &'a str,
    name: (&'a str, &'a str),
    kana: (&'a str, &'a str),
    kind: &'a str,
    org_unit: Option<&'a str>,
    login_id: Option<&'a str>,
}

async fn person(server: &TestServer, p: NewPerson<'_>) -> String {
    // Fixed-term kinds need an end date, and one still ahead.
    let fixed_term = !matches!(p.kind, "regular" | "re_employed");
    let end_date = fixed_term.then(|| sekimori::clock::japan_date(server.app.clock.now() + 300 * 86_400));
    let (status, person) = server
        .admin(
            Method::POST,
            "/api/v1/people",
            Some(json!({
                "employee_number": p.number, "family_name": p.name.0, "given_name": p.name.1,
                "family_name_kana": p.kana.0, "given_name_kana": p.kana.1, "kind": p.kind,
                "org_unit_id": p.org_unit, "start_date": "2020-04-01", "end_date": end_date
            })),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    let id = person["id"].as_str().unwrap().to_owned();
    if let Some(login_id) = p.login_id {
        let (status, account) = server
            .admin(Method::POST, &format!("/api/v1/people/{id}/account"), Some(json!({"login_id": login_id})))
            .await;
        assert_eq!(status, 201, "{account}");
    }
    id
}

/// A card put in place directly (its WebAuthn enrollment is what tests/it/cards.rs covers).
async fn card(server: &TestServer, person_id: &str, label: &str, number: &str, status: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO authenticators (id, person_id, credential_id, credential, label, management_number, enrolled_by,
             created_at, last_used_at, status)
         VALUES ($1, $2, $3, '{\"secret\": \"key material\"}', $4, $5, 'cli', $6, $6, $7)",
    )
    .bind(&id)
    .bind(person_id)
    .bind(format!("cred-{id}"))
    .bind(label)
    .bind(number)
    .bind(server.app.clock.now())
    .bind(status)
    .execute(server.app.store.pool())
    .await
    .unwrap();
    id
}

fn numbers(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {body}"))
        .iter()
        .map(|p| p["employee_number"].as_str().unwrap().to_owned())
        .collect()
}

/// The small municipality every search test looks in.
struct Town {
    department: String,
    section: String,
    yamada: String,
}

async fn town(server: &TestServer) -> Town {
    let department = org_unit(server, "100", "department", None).await;
    let section = org_unit(server, "110", "section", Some(&department)).await;
    let p = |number, name, kana, kind, org_unit, login_id| NewPerson { number, name, kana, kind, org_unit, login_id };
    let yamada = person(
        server,
        p("E1001", ("山田", "太郎"), ("ヤマダ", "タロウ"), "regular", Some(&section), Some("yamada.taro")),
    )
    .await;
    // A reading stored in hiragana.
    person(server, p("E1002", ("山田", "花子"), ("やまだ", "はなこ"), "part_time", Some(&department), Some("hanako")))
        .await;
    person(server, p("E1003", ("佐藤", "一郎"), ("サトウ", "イチロウ"), "regular", None, Some("ichiro.s"))).await;
    person(server, p("E1004", ("大野", "健"), ("オオノ", "ケン"), "dispatched", None, None)).await;
    person(server, p("E1005", ("清水", "翼"), ("シミズ", "ツバサ"), "regular", None, Some("tsubasa"))).await;
    // Characters LIKE would take as wildcards, in a name and a login ID.
    person(server, p("E1006", ("百%", "達成"), ("ヒャクパーセント", "タッセイ"), "regular", None, Some("a_b"))).await;
    person(server, p("E1007", ("axb", "試験"), ("アクスビ", "シケン"), "regular", None, Some("axb"))).await;
    Town { department, section, yamada }
}

async fn people_are_found_however_they_are_typed(db: Db) {
    let server = TestServer::start(db).await;
    let town = town(&server).await;
    let hotline = token(&server, &["hotline"]).await;
    let admin = server.admin_token.clone();
    let cases: &[(&str, &[&str])] = &[
        ("やまだ", &["E1001", "E1002"]),
        ("ヤマダ", &["E1001", "E1002"]),
        ("yamada", &["E1001", "E1002"]),
        ("YAMADA", &["E1001", "E1002"]),
        ("ﾔﾏﾀﾞ", &["E1001", "E1002"]),
        ("ｙａｍａｄａ", &["E1001", "E1002"]),
        ("山田", &["E1001", "E1002"]),
        ("山田 太郎", &["E1001"]),
        ("山田\u{3000}太郎", &["E1001"]),
        ("yamada tarou", &["E1001"]),
        ("taro yamada", &["E1001"]),
        ("やまだはなこ", &["E1002"]),
        ("yamada.taro", &["E1001"]),
        ("Yamada.Taro", &["E1001"]),
        ("E1003", &["E1003"]),
        ("Ｅ１００３", &["E1003"]),
        ("E100", &[]),
        ("satou", &["E1003"]),
        ("satoh", &["E1003"]),
        ("satō", &["E1003"]),
        ("sato", &["E1003"]),
        ("サトー", &["E1003"]),
        ("ono", &["E1004"]),
        ("ōno", &["E1004"]),
        ("ohno", &["E1004"]),
        ("oono", &["E1004"]),
        ("shimizu", &["E1005"]),
        ("simizu", &["E1005"]),
        ("tubasa", &["E1005"]),
        ("%", &["E1006"]),
        ("百%", &["E1006"]),
        ("_", &[]),
        ("\\", &[]),
        ("%%", &[]),
        ("a_b", &["E1006"]),
        ("axb", &["E1007"]),
        ("ー", &[]),
    ];
    for (q, expected) in cases {
        let (status, body) = call(&server, &admin, Method::GET, &with_query("/api/v1/people", &[("q", q)]), None).await;
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(numbers(&body), *expected, "people q={q}");
        let (status, body) =
            call(&server, &hotline, Method::GET, &with_query("/api/v1/hotline/people", &[("q", q)]), None).await;
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(numbers(&body), *expected, "hotline q={q}");
    }

    // List items and hotline results carry the login ID.
    let (_, body) = call(&server, &admin, Method::GET, "/api/v1/people?q=yamada", None).await;
    assert_eq!(body["items"][0]["login_id"], "yamada.taro");
    assert_eq!(body["items"][0]["id"], town.yamada.as_str());
    let (_, body) = call(&server, &admin, Method::GET, "/api/v1/people?q=ono", None).await;
    assert_eq!(body["items"][0]["login_id"], Value::Null, "no account yet");
    let (_, body) = call(&server, &hotline, Method::GET, "/api/v1/hotline/people?q=E1001", None).await;
    assert_eq!(body["items"][0]["login_id"], "yamada.taro");
    assert_eq!(body["items"][0]["org_unit"], "課110");

    // Filters, with and without a name.
    sqlx::query("UPDATE people SET status = 'retired' WHERE employee_number = 'E1005'")
        .execute(server.app.store.pool())
        .await
        .unwrap();
    let filtered: &[(Pairs, &[&str])] = &[
        (vec![("status", "retired")], &["E1005"]),
        (vec![("status", "active"), ("q", "shimizu")], &[]),
        (vec![("kind", "dispatched")], &["E1004"]),
        (vec![("kind", "part_time"), ("q", "yamada")], &["E1002"]),
        (vec![("org_unit", &town.department)], &["E1001", "E1002"]),
        (vec![("org_unit", &town.section)], &["E1001"]),
        (vec![("org_unit", "no-such-unit")], &[]),
        (vec![("q", "yamada"), ("limit", "1")], &["E1001"]),
        (vec![("q", "yamada"), ("limit", "1"), ("offset", "1")], &["E1002"]),
        (vec![("q", "yamada"), ("limit", "1"), ("offset", "2")], &[]),
        (vec![], &["E1001", "E1002", "E1003", "E1004", "E1005", "E1006", "E1007"]),
    ];
    for (pairs, expected) in filtered {
        let (status, body) = call(&server, &admin, Method::GET, &with_query("/api/v1/people", pairs), None).await;
        assert_eq!(status, 200, "{pairs:?}: {body}");
        assert_eq!(numbers(&body), *expected, "{pairs:?}");
    }

    // Bad input: 400 naming the parameter (or without one when the query string itself is wrong).
    let too_long = "や".repeat(65);
    let padded = format!("a{}", " ".repeat(64));
    let bad: &[(Pairs, Option<&str>)] = &[
        (vec![("q", "")], Some("q")),
        (vec![("q", "   ")], Some("q")),
        (vec![("q", &too_long)], Some("q")),
        (vec![("q", &padded)], Some("q")),
        (vec![("q", "a b c d e")], Some("q")),
        (vec![("q", "a\u{7}")], Some("q")),
        (vec![("status", "gone")], Some("status")),
        (vec![("kind", "intern")], Some("kind")),
        (vec![("org_unit", "")], Some("org_unit")),
        (vec![("limit", "0")], Some("limit")),
        (vec![("offset", "-1")], Some("offset")),
        (vec![("name", "yamada")], None),
        (vec![("limit", "ten")], None),
    ];
    for (pairs, field) in bad {
        let (status, problem) = call(&server, &admin, Method::GET, &with_query("/api/v1/people", pairs), None).await;
        assert_eq!((status, problem["field"].as_str()), (400, *field), "{pairs:?}: {problem}");
    }
    for pairs in [vec![("q", "")], vec![("q", too_long.as_str())], vec![("q", "a"), ("status", "active")]] {
        let path = with_query("/api/v1/hotline/people", &pairs);
        let (status, problem) = call(&server, &hotline, Method::GET, &path, None).await;
        assert_eq!(status, 400, "{pairs:?}: {problem}");
    }
    // The hotline's searches are audited with what was typed.
    let (_, events) = server.admin(Method::GET, "/api/v1/audit/events?action=hotline.search&limit=1000", None).await;
    assert!(events["items"].as_array().unwrap().iter().any(|e| e["detail"]["q"] == "ﾔﾏﾀﾞ"), "{events}");
    server.stop().await;
}

async fn a_record_shows_login_id_and_cards(db: Db) {
    let server = TestServer::start(db).await;
    let town = town(&server).await;
    let first = card(&server, &town.yamada, "職員証", "C-0100", "active").await;
    let second = card(&server, &town.yamada, "セキュリティキー", "SK-7", "active").await;
    let (status, record) = server.admin(Method::GET, &format!("/api/v1/people/{}", town.yamada), None).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["employee_number"], "E1001");
    assert_eq!(record["login_id"], "yamada.taro");
    let cards = record["authenticators"].as_array().unwrap();
    let ids: BTreeSet<&str> = cards.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from([first.as_str(), second.as_str()]));
    let staff_card = cards.iter().find(|c| c["id"] == first.as_str()).unwrap();
    assert_eq!(staff_card["label"], "職員証");
    assert_eq!(staff_card["management_number"], "C-0100");
    assert_eq!(staff_card["status"], "active");
    assert!(staff_card["created_at"].is_i64() && staff_card["last_used_at"].is_i64(), "{staff_card}");
    assert_eq!(staff_card["loss_reference"], Value::Null);
    let text = record.to_string();
    assert!(!text.contains("key material") && !text.contains("credential"), "never key material: {text}");
    // Without an account or cards.
    let (_, found) = server.admin(Method::GET, "/api/v1/people?q=E1004", None).await;
    let (status, record) =
        server.admin(Method::GET, &format!("/api/v1/people/{}", found["items"][0]["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    assert_eq!((record["login_id"].clone(), record["authenticators"].clone()), (Value::Null, json!([])));
    server.stop().await;
}

/// `L-YYYYMMDD-XXXX`, dated today in Japan.
fn assert_reference(server: &TestServer, reference: &str) {
    assert!(sekimori::authenticators::loss::is_reference(reference), "{reference}");
    let today = sekimori::directory::today_in_japan(server.app.clock.now());
    let date = format!("{:04}{:02}{:02}", today.year(), u8::from(today.month()), today.day());
    assert_eq!(reference.get(2..10), Some(date.as_str()), "{reference}");
}

async fn stored_reference(server: &TestServer, card_id: &str) -> Option<String> {
    use sqlx::Row;
    sqlx::query("SELECT loss_reference FROM authenticators WHERE id = $1")
        .bind(card_id)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("loss_reference")
        .unwrap()
}

async fn audit_events(server: &TestServer, pairs: &[(&str, &str)]) -> Vec<Value> {
    let (status, body) = server.admin(Method::GET, &with_query("/api/v1/audit/events", pairs), None).await;
    assert_eq!(status, 200, "{pairs:?}: {body}");
    body["items"].as_array().unwrap().clone()
}

async fn a_loss_report_has_one_reference(db: Db) {
    let server = TestServer::start(db).await;
    let town = town(&server).await;
    let hotline = token(&server, &["hotline"]).await;
    let card_id = card(&server, &town.yamada, "職員証", "C-0100", "active").await;
    let lost = format!("/api/v1/authenticators/{card_id}/lost");
    let report = json!({"reported_by": "本人（電話）", "reason": "電車内で紛失"});
    let (status, first) = call(&server, &hotline, Method::POST, &lost, Some(report.clone())).await;
    assert_eq!(status, 200, "{first}");
    let reference = first["loss_reference"].as_str().unwrap().to_owned();
    assert_reference(&server, &reference);
    assert_eq!(first["already_reported"], false);
    assert_eq!(first["authenticator"]["status"], "lost");
    assert_eq!(first["authenticator"]["loss_reference"], reference.as_str());
    assert_eq!(stored_reference(&server, &card_id).await.as_deref(), Some(reference.as_str()), "stored");

    // Reported again (the caller rings twice): the same reference, nothing more revoked.
    let (status, again) =
        call(&server, &hotline, Method::POST, &lost, Some(json!({"reported_by": "上司", "reason": "再度の連絡"})))
            .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["loss_reference"], reference.as_str());
    assert_eq!(again["already_reported"], true);
    assert_eq!(again["sessions_ended"], 0);
    assert_eq!(stored_reference(&server, &card_id).await.as_deref(), Some(reference.as_str()));

    // Shown on the person's record and to the hotline.
    let (_, record) = server.admin(Method::GET, &format!("/api/v1/people/{}", town.yamada), None).await;
    assert_eq!(record["authenticators"][0]["loss_reference"], reference.as_str(), "{record}");
    let (_, found) = call(&server, &hotline, Method::GET, "/api/v1/hotline/people?q=E1001", None).await;
    assert_eq!(found["items"][0]["authenticators"][0]["loss_reference"], reference.as_str());

    // Audited once as the revocation, with the reference; the repeat as a repeat.
    let target = format!("authenticator:{card_id}");
    let revokes = audit_events(&server, &[("action", "revoke"), ("limit", "1000")]).await;
    let revokes: Vec<&Value> = revokes.iter().filter(|e| e["target"] == target.as_str()).collect();
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert_eq!(revokes[0]["detail"]["loss_reference"], reference.as_str());
    assert!(revokes[0]["detail"]["reason"].as_str().unwrap().contains("電車内で紛失"));
    let repeats = audit_events(&server, &[("action", "authenticator.loss_report_repeated")]).await;
    assert_eq!(repeats.len(), 1, "{repeats:?}");
    assert_eq!(repeats[0]["target"], target.as_str());
    assert_eq!(repeats[0]["detail"]["loss_reference"], reference.as_str());
    assert!(repeats[0]["detail"]["reason"].as_str().unwrap().contains("上司"));

    // Two reports of one card at once: one stops it, both answer with its reference.
    let other = card(&server, &town.yamada, "セキュリティキー", "SK-7", "active").await;
    let path = format!("/api/v1/authenticators/{other}/lost");
    let (a, b) = tokio::join!(
        call(&server, &hotline, Method::POST, &path, Some(report.clone())),
        call(&server, &hotline, Method::POST, &path, Some(report.clone())),
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(a.1["loss_reference"], b.1["loss_reference"]);
    assert_ne!(a.1["loss_reference"], reference.as_str(), "each report its own number");
    let repeated: Vec<bool> = [&a.1, &b.1].iter().map(|r| r["already_reported"].as_bool().unwrap()).collect();
    assert!(repeated.contains(&true) && repeated.contains(&false), "{repeated:?}");
    let revokes = audit_events(&server, &[("action", "revoke"), ("limit", "1000")]).await;
    assert_eq!(revokes.iter().filter(|e| e["target"] == format!("authenticator:{other}").as_str()).count(), 1);

    // A card stopped otherwise has no reference to give; an unknown card is not found.
    let revoked = card(&server, &town.yamada, "旧職員証", "C-0001", "revoked").await;
    let (status, _) =
        call(&server, &hotline, Method::POST, &format!("/api/v1/authenticators/{revoked}/lost"), Some(report.clone()))
            .await;
    assert_eq!(status, 409);
    let (status, _) =
        call(&server, &hotline, Method::POST, "/api/v1/authenticators/no-such-card/lost", Some(report)).await;
    assert_eq!(status, 404);
    // The operators' page shows the reference after a report and in the card list.
    let script = server.http.get(format!("{}/hotline/hotline.js", server.admin_url)).send().await.unwrap();
    let script = script.text().await.unwrap();
    assert!(script.contains("answer.loss_reference") && script.contains("card.loss_reference"), "{script}");
    server.stop().await;
}

const PASSWORD: &str = "kiri-no-naka-no-toudai-7";
const REDIRECT: &str = "https://zeimu.city.example.lg.jp/cb";

fn iso(at: i64) -> String {
    sekimori::clock::japan_rfc3339(at).unwrap()
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

async fn the_audit_log_is_read_by_filters_and_pages(db: Db) {
    let server = TestServer::start(db).await;
    // Before: a person, their account, a consuming system.
    let tanaka = server.add_person("E2001", "tanaka", PASSWORD).await;
    let other = server.add_person("E2002", "suzuki", "umi-no-mieru-oka-de-42").await;
    server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential", "redirect_uris": [REDIRECT]}))
        .await;
    let before_the_logins = server.app.clock.now();
    // Two hours later: a login to zeimu and a failed one.
    server.app.clock.advance(2 * 3600);
    let logins_start = server.app.clock.now();
    obtain_code(&server, "zeimu", REDIRECT, None, "tanaka", PASSWORD).await;
    let authorize = crate::common::authorize_url(
        &server,
        &[("response_type", "code"), ("client_id", "zeimu"), ("redirect_uri", REDIRECT), ("scope", "openid")],
    );
    let refused = log_in(&crate::common::browser(), &server, &authorize, "tanaka", "wrong-password").await;
    assert_eq!(refused.status(), 401, "a wrong password");
    let (_, account) = server.admin(Method::GET, &format!("/api/v1/people/{tanaka}"), None).await;
    assert_eq!(account["login_id"], "tanaka");

    // Times in Japan time; newest first by default, oldest first when asked.
    let newest = audit_events(&server, &[("limit", "1000")]).await;
    assert!(newest.len() > 10);
    for event in &newest {
        let at = event["at"].as_str().unwrap();
        assert!(at.len() == 25 && at.ends_with("+09:00") && at.get(10..11) == Some("T"), "{at}");
    }
    assert!(seqs(&newest).windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(newest[0]["action"], "audit.read", "the read itself, recorded first");
    let oldest = audit_events(&server, &[("order", "asc"), ("limit", "1000")]).await;
    assert!(seqs(&oldest).windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(oldest[0]["seq"], 1);

    // person: actor or target, by every name the log gives them.
    let account_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM accounts WHERE person_id = $1")
            .bind(&tanaka)
            .fetch_one(server.app.store.pool())
            .await
            .unwrap()
            .try_get("id")
            .unwrap()
    };
    let names = [format!("person:{tanaka}"), format!("account:{account_id}"), "login_id:tanaka".to_owned()];
    let about = audit_events(&server, &[("person", &tanaka), ("limit", "1000")]).await;
    let actions: BTreeSet<&str> = about.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in ["person.create", "account.create", "login.password", "authorize.code_issued"] {
        assert!(actions.contains(expected), "{expected} in {actions:?}");
    }
    assert!(about.iter().any(|e| e["target"] == "login_id:tanaka" && e["outcome"] == "failure"), "the failed login");
    for event in &about {
        let involved = [&event["actor"], &event["target"]].iter().any(|v| names.iter().any(|n| **v == n.as_str()));
        assert!(involved, "{event}");
        assert!(!event.to_string().contains(&other), "not about the other person: {event}");
    }
    let nobody = audit_events(&server, &[("person", "00000000-0000-4000-8000-000000000000")]).await;
    assert!(nobody.is_empty());

    // system: done by or to it, or naming it as client_id.
    let zeimu = audit_events(&server, &[("system", "zeimu"), ("limit", "1000")]).await;
    let actions: BTreeSet<&str> = zeimu.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in ["client.register", "login.password", "authorize.code_issued"] {
        assert!(actions.contains(expected), "{expected} in {actions:?}");
    }
    assert!(!actions.contains("person.create"), "{actions:?}");
    assert!(audit_events(&server, &[("system", "fukushi")]).await.is_empty());

    // action: exact, or a prefix with *.
    let exact = audit_events(&server, &[("action", "login.password"), ("limit", "1000")]).await;
    assert!(exact.len() >= 2 && exact.iter().all(|e| e["action"] == "login.password"));
    let prefixed = audit_events(&server, &[("action", "account.*"), ("limit", "1000")]).await;
    assert!(!prefixed.is_empty() && prefixed.iter().all(|e| e["action"].as_str().unwrap().starts_with("account.")));
    assert!(audit_events(&server, &[("action", "account.")]).await.is_empty(), "exact unless it ends in *");
    assert!(audit_events(&server, &[("action", "account_*")]).await.is_empty(), "_ is not a wildcard");

    // outcome.
    let failures = audit_events(&server, &[("outcome", "failure"), ("limit", "1000")]).await;
    assert!(!failures.is_empty() && failures.iter().all(|e| e["outcome"] == "failure"));
    let successes = audit_events(&server, &[("outcome", "success"), ("limit", "1000")]).await;
    assert!(successes.iter().all(|e| e["outcome"] == "success"));

    // since (inclusive) and until (exclusive), with any offset; together they tile.
    let midpoint = before_the_logins + 3600;
    let after_mid = audit_events(&server, &[("since", &iso(midpoint)), ("order", "asc"), ("limit", "1000")]).await;
    assert!(after_mid.iter().all(|e| e["at"].as_str().unwrap() >= iso(logins_start).as_str()), "{after_mid:?}");
    assert!(after_mid.iter().any(|e| e["action"] == "login.password"));
    let utc = time::OffsetDateTime::from_unix_timestamp(midpoint)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(utc.ends_with('Z'), "{utc}");
    let before_mid = audit_events(&server, &[("until", &utc), ("order", "asc"), ("limit", "1000")]).await;
    assert!(!before_mid.is_empty());
    assert!(before_mid.iter().all(|e| e["at"].as_str().unwrap() <= iso(before_the_logins).as_str()));
    assert!(!before_mid.iter().any(|e| e["action"] == "login.password"));
    let both = audit_events(
        &server,
        &[("since", &iso(before_the_logins - 600)), ("until", &iso(midpoint)), ("person", &tanaka), ("order", "asc")],
    )
    .await;
    assert!(
        both.iter().any(|e| e["action"] == "person.create") && both.iter().all(|e| e["action"] != "login.password")
    );
    // A `+` left unencoded arrives as a space and still means +09:00.
    let raw = format!("/api/v1/audit/events?since={}&limit=1000", iso(midpoint));
    assert!(raw.contains("+09:00"), "{raw}");
    let (status, body) = server.admin(Method::GET, &raw, None).await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert!(items.iter().all(|e| e["at"].as_str().unwrap() >= iso(logins_start).as_str()), "{body}");
    assert!(items.iter().any(|e| e["action"] == "login.password"));

    // Malformed times and other bad parameters: 400 naming the parameter.
    for (pairs, field) in [
        (vec![("since", "2026-04-01")], "since"),
        (vec![("since", "2026-04-01T00:00:00")], "since"),
        (vec![("since", "2026-04-31T00:00:00+09:00")], "since"),
        (vec![("until", "yesterday")], "until"),
        (vec![("until", "2026-04-01T00:00:00+0900")], "until"),
        (vec![("since", "2026-04-02T00:00:00+09:00"), ("until", "2026-04-01T00:00:00+09:00")], "until"),
        (vec![("order", "newest")], "order"),
        (vec![("outcome", "ok")], "outcome"),
        (vec![("action", "login.%")], "action"),
        (vec![("system", "Zeimu")], "system"),
        (vec![("person", "x' OR '1'='1")], "person"),
        (vec![("limit", "1001")], "limit"),
        (vec![("before", "-1")], "before"),
    ] {
        let (status, problem) = server.admin(Method::GET, &with_query("/api/v1/audit/events", &pairs), None).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{pairs:?}: {problem}");
        assert!(problem["detail"].as_str().unwrap().starts_with(field), "{problem}");
    }
    let (status, _) = server.admin(Method::GET, "/api/v1/audit/events?page=2", None).await;
    assert_eq!(status, 400);

    // The read is recorded with the filters asked for.
    let reads = audit_events(&server, &[("action", "audit.read"), ("limit", "1000")]).await;
    assert!(reads.iter().any(|e| e["detail"]["action"] == "account.*" && e["detail"]["order"] == "desc"), "{reads:?}");
    assert!(reads.iter().any(|e| e["detail"]["person"] == tanaka.as_str()));

    // Paging newest first by `before`: every event once, no gaps, while reads add events.
    let top = audit_events(&server, &[("limit", "1")]).await[0]["seq"].as_i64().unwrap();
    let mut paged = Vec::new();
    let mut cursor = top + 1;
    loop {
        let page = audit_events(&server, &[("before", &cursor.to_string()), ("limit", "7")]).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        cursor = page.last().unwrap()["seq"].as_i64().unwrap();
        paged.extend(seqs(&page));
    }
    assert_eq!(paged, (1..=top).rev().collect::<Vec<_>>(), "every event once, newest first");
    // Oldest first by `after`, to the end (which moves as the reads are recorded).
    let mut paged = Vec::new();
    let mut cursor = 0;
    loop {
        let page = audit_events(&server, &[("after", &cursor.to_string()), ("order", "asc"), ("limit", "9")]).await;
        paged.extend(seqs(&page));
        match page.last() {
            Some(last) if page.len() == 9 => cursor = last["seq"].as_i64().unwrap(),
            _ => break,
        }
    }
    assert_eq!(paged, (1..=*paged.last().unwrap()).collect::<Vec<_>>(), "every event once, oldest first");
    assert!(*paged.last().unwrap() > top);
    // Paging a filter: the same events as one read of it.
    let whole =
        seqs(&audit_events(&server, &[("person", &tanaka), ("limit", "1000"), ("before", &top.to_string())]).await);
    let mut paged = Vec::new();
    let mut cursor = top;
    loop {
        let page = audit_events(&server, &[("person", &tanaka), ("before", &cursor.to_string()), ("limit", "2")]).await;
        let Some(last) = page.last() else { break };
        cursor = last["seq"].as_i64().unwrap();
        paged.extend(seqs(&page));
    }
    assert_eq!(paged, whole);
    assert!(whole.len() >= 4);
    // Both cursors at once: a window.
    let window = audit_events(&server, &[("after", "3"), ("before", "8"), ("order", "asc")]).await;
    assert_eq!(seqs(&window), vec![4, 5, 6, 7]);
    server.stop().await;
}

on_both_databases!(
    people_are_found_however_they_are_typed,
    a_record_shows_login_id_and_cards,
    a_loss_report_has_one_reference,
    the_audit_log_is_read_by_filters_and_pages,
);
