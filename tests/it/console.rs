//! People as administrators (R7, R8): administrative roles granted for a limited time, API
//! tokens owned by a person and dying with their right, the bootstrap that leaves nothing
//! permanent, and the console opened only by a card login.

use serde_json::{json, Value};

use crate::cards::{self, Card, PASSWORD};
use crate::common::{hidden_input, location, Db, TestServer};

/// A strong password nobody else has (passwords are not shared between people).
/// A strong password of its own for each person. The random part is consonants only: no run
/// of it can spell a birth date or an employee number (digits) or a name or login ID in romaji
/// (vowels), which the policy refuses as a substring (a random token once held one).
fn password() -> String {
    const CONSONANTS: &[u8] = b"bcdfghjklmnpqrstvwxz";
    let random: String = (0..12).map(|_| CONSONANTS[rand::random::<usize>() % CONSONANTS.len()] as char).collect();
    format!("hakobune-{random}-minato")
}

fn today(server: &TestServer) -> String {
    sekimori::directory::types::format_date(sekimori::directory::today_in_japan(server.app.clock.now()))
}

fn days_from_today(server: &TestServer, days: i64) -> String {
    let date = sekimori::directory::today_in_japan(server.app.clock.now()) + time::Duration::days(days);
    sekimori::directory::types::format_date(date)
}

async fn grant_role(server: &TestServer, person_id: &str, role: &str, end_date: &str) -> (u16, Value) {
    server
        .admin(
            reqwest::Method::POST,
            "/api/v1/admin-roles/grants",
            Some(json!({"person_id": person_id, "role": role, "end_date": end_date, "reason": "担当業務の指定"})),
        )
        .await
}

/// A token owned by `person_id` with `scopes` (made by the test's unowned token, as the
/// bootstrap token would).
async fn token_of(server: &TestServer, person_id: &str, scopes: &[&str]) -> (u16, Value) {
    server
        .admin(
            reqwest::Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "作業用", "scopes": scopes, "owner": person_id})),
        )
        .await
}

async fn call(server: &TestServer, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server.http.request(method, format!("{}{path}", server.admin_url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// A person holding `role` until `end_date`, and a token of theirs with `scopes`.
async fn administrator(server: &TestServer, employee: &str, login: &str, role: &str, end_date: &str, scopes: &[&str]) -> (String, String) {
    let person_id = server.add_person(employee, login, &password()).await;
    let (status, grant) = grant_role(server, &person_id, role, end_date).await;
    assert_eq!(status, 201, "{grant}");
    let (status, token) = token_of(server, &person_id, scopes).await;
    assert_eq!(status, 201, "{token}");
    assert_eq!(token["owner"], person_id.as_str());
    (person_id, token["token"].as_str().unwrap().to_owned())
}

async fn a_hotline_operator_reports_a_card_lost_and_does_nothing_else(db: Db) {
    let server = TestServer::start(db).await;
    let until = days_from_today(&server, 30);
    let (_, operator) = administrator(&server, "E9001", "uketsuke", "hotline_operator", &until, &["hotline"]).await;
    // The token cannot carry a right its owner does not hold.
    let holder = server.add_person("E9002", "mochinushi", &password()).await;
    let (status, _) = token_of(&server, &holder, &["hotline"]).await;
    assert_eq!(status, 422, "a token for someone without the role");

    let (status, found) = call(&server, &operator, reqwest::Method::GET, "/api/v1/hotline/people?q=mochinushi", None).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["items"][0]["id"], holder.as_str());
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/people"),
        (reqwest::Method::GET, "/api/v1/audit/events"),
        (reqwest::Method::GET, "/api/v1/clients"),
        (reqwest::Method::GET, "/api/v1/api-tokens"),
        (reqwest::Method::GET, "/api/v1/admin-roles/grants"),
    ] {
        let (status, body) = call(&server, &operator, method, path, None).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = call(
        &server,
        &operator,
        reqwest::Method::POST,
        &format!("/api/v1/people/{holder}/enrollment-codes"),
        None,
    )
    .await;
    assert_eq!(status, 403, "an operator does not enroll cards");
    server.stop().await;
}

async fn an_auditor_reads_the_records_and_the_reading_is_recorded(db: Db) {
    let server = TestServer::start(db).await;
    let until = days_from_today(&server, 30);
    let (auditor_id, auditor) = administrator(&server, "E9101", "kansa", "auditor", &until, &["audit:read"]).await;
    let (status, events) = call(&server, &auditor, reqwest::Method::GET, "/api/v1/audit/events?action=audit.read", None).await;
    assert_eq!(status, 200, "{events}");
    let reads: Vec<&Value> = events["items"].as_array().unwrap().iter().filter(|e| e["action"] == "audit.read").collect();
    assert!(!reads.is_empty(), "the reading appears in the log: {events}");
    assert!(reads[0]["actor"].as_str().unwrap().starts_with("api_token:"));
    // The auditor reads; an auditor changes nothing, and holds no other administrative role.
    let (status, _) = call(&server, &auditor, reqwest::Method::GET, "/api/v1/people", None).await;
    assert_eq!(status, 403);
    let (status, body) = grant_role(&server, &auditor_id, "security_manager", &until).await;
    assert_eq!(status, 409, "separation of duties: {body}");
    server.stop().await;
}

async fn a_right_past_its_end_date_is_refused_at_once(db: Db) {
    let server = TestServer::start(db).await;
    let last_day = today(&server);
    let (_, auditor) = administrator(&server, "E9201", "kansa2", "auditor", &last_day, &["audit:read"]).await;
    let (status, _) = call(&server, &auditor, reqwest::Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(status, 200, "on its last day the role is held");
    server.app.clock.advance(86_400);
    let (status, _) = call(&server, &auditor, reqwest::Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(status, 401, "the day after, the token has no right left");
    server.stop().await;
}

async fn an_api_token_dies_with_its_owners_right(db: Db) {
    let server = TestServer::start(db).await;
    let until = days_from_today(&server, 90);
    let (owner, token) =
        administrator(&server, "E9301", "jinji", "hr_feed_owner", &until, &["hr:admin"]).await;
    let (status, _) = call(&server, &token, reqwest::Method::GET, "/api/v1/hr/batches", None).await;
    assert_eq!(status, 200);
    let (_, grants) = server.admin(reqwest::Method::GET, "/api/v1/admin-roles/grants", None).await;
    let grant = grants["items"].as_array().unwrap().iter().find(|g| g["person_id"] == owner.as_str()).unwrap().clone();
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/access/grants/{}/revoke", grant["id"].as_str().unwrap()),
            Some(json!({"reason": "異動"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(&server, &token, reqwest::Method::GET, "/api/v1/hr/batches", None).await;
    assert_eq!(status, 401, "the token died with its owner's role");
    server.stop().await;
}

async fn administrative_roles_are_granted_with_care(db: Db) {
    let server = TestServer::start(db).await;
    let until = days_from_today(&server, 30);
    let (manager, manager_token) =
        administrator(&server, "E9401", "tokatsu", "security_manager", &until, &["admin-roles:grant", "tokens:write"]).await;
    // Nobody grants themselves a role; an end date is required and bounded.
    let body = json!({"person_id": manager, "role": "system_admin", "end_date": until, "reason": "自分に"});
    let (status, answer) = call(&server, &manager_token, reqwest::Method::POST, "/api/v1/admin-roles/grants", Some(body)).await;
    assert_eq!(status, 409, "{answer}");
    let clerk = server.add_person("E9402", "shokuin", &password()).await;
    let too_long = days_from_today(&server, 400);
    for (end_date, why) in [("", "no end date"), (too_long.as_str(), "beyond a year"), ("2001-01-01", "in the past")] {
        let body = json!({"person_id": clerk, "role": "directory_clerk", "end_date": end_date, "reason": "名簿担当"});
        let (status, answer) =
            call(&server, &manager_token, reqwest::Method::POST, "/api/v1/admin-roles/grants", Some(body)).await;
        assert_eq!(status, 422, "{why}: {answer}");
    }
    let body = json!({"person_id": clerk, "role": "directory_clerk", "end_date": until, "reason": "名簿担当"});
    let (status, granted) = call(&server, &manager_token, reqwest::Method::POST, "/api/v1/admin-roles/grants", Some(body)).await;
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["end_date"], until.as_str());
    // A person's token is their own, and carries only what they hold.
    let (status, _) = call(
        &server,
        &manager_token,
        reqwest::Method::POST,
        "/api/v1/api-tokens",
        Some(json!({"name": "代理", "scopes": ["tokens:write"], "owner": clerk})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = call(
        &server,
        &manager_token,
        reqwest::Method::POST,
        "/api/v1/api-tokens",
        Some(json!({"name": "監査用", "scopes": ["audit:read"]})),
    )
    .await;
    assert_eq!(status, 403, "the security manager does not read the access records");
    // The console system is Sekimori's own: not changed through the general API.
    let (status, _) = server
        .admin(reqwest::Method::PATCH, "/api/v1/clients/sekimori-console", Some(json!({"redirect_uris": ["https://evil.example/cb"]})))
        .await;
    assert_eq!(status, 409);
    let (status, _) = server
        .admin(
            reqwest::Method::PUT,
            "/api/v1/clients/sekimori-console/roles/security_manager",
            Some(json!({"label": "x", "classification": "general"})),
        )
        .await;
    assert_eq!(status, 409);
    server.stop().await;
}

async fn the_bootstrap_leaves_no_permanent_right(db: Db) {
    let server = TestServer::start(db).await;
    let now = server.app.clock.now();
    let code = sekimori::admin::auth::issue_bootstrap_code(&server.app.store, &sekimori::audit::Actor::Cli, now).await.unwrap();
    let response = server
        .http
        .post(format!("{}/api/v1/bootstrap", server.admin_url))
        .json(&json!({"code": code, "name": "初期設定"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let issued: Value = response.json().await.unwrap();
    let bootstrap = issued["token"].as_str().unwrap().to_owned();
    let scopes: Vec<&str> = issued["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(scopes.contains(&"admin-roles:grant") && scopes.contains(&"directory:write"), "{scopes:?}");
    assert!(!scopes.contains(&"audit:read") && !scopes.contains(&"hr:feed"), "{scopes:?}");
    // It names the first security manager, for a limited time.
    let person = server.add_person("E9501", "hajime", &password()).await;
    let until = days_from_today(&server, 7);
    let body = json!({"person_id": person, "role": "security_manager", "end_date": until, "reason": "初代の統括"});
    let (status, granted) = call(&server, &bootstrap, reqwest::Method::POST, "/api/v1/admin-roles/grants", Some(body)).await;
    assert_eq!(status, 201, "{granted}");
    let (status, _) = call(&server, &bootstrap, reqwest::Method::GET, "/api/v1/audit/events", None).await;
    assert_eq!(status, 403);
    // A day later the bootstrap token is gone; eight days later so is the security manager's role.
    server.app.clock.advance(86_400 + 60);
    let (status, _) = call(&server, &bootstrap, reqwest::Method::GET, "/api/v1/org-units", None).await;
    assert_eq!(status, 401);
    let open_ended = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM access_grants WHERE client_id = 'sekimori-console' AND end_date IS NULL",
    )
    .fetch_one(server.app.store.pool())
    .await
    .unwrap();
    assert_eq!(open_ended, 0, "no administrative right without an end");
    server.app.clock.advance(7 * 86_400);
    let today = sekimori::directory::today_in_japan(server.app.clock.now());
    let holders = sekimori::admin::roles::holders(
        server.app.store.pool(),
        sekimori::admin::roles::AdminRole::SecurityManager,
        today,
    )
    .await
    .unwrap();
    assert!(holders.is_empty());
    assert!(sekimori::admin::auth::needs_bootstrap(&server.app.store, server.app.clock.now()).await.unwrap());
    server.stop().await;
}

/// Follows the console's login from `/console/login` through the issuer, with the card, back to
/// the console; returns the status of the console's callback.
async fn console_login(server: &TestServer, browser: &reqwest::Client, card: &mut Card) -> u16 {
    let response = browser.get(format!("{}/console/login", server.admin_url)).send().await.unwrap();
    assert_eq!(response.status(), 303);
    // The issuer is named localhost; the browser reaches it at 127.0.0.1 (same cookies).
    let authorize = location(&response).replace(&server.issuer, &server.public_url);
    assert!(authorize.contains("client_id=sekimori-console"), "{authorize}");
    let response = browser.get(&authorize).send().await.unwrap();
    let step = location(&response);
    assert!(step.starts_with("/login/card"), "the console demands the card: {step}");
    let html = browser.get(format!("{}{step}", server.public_url)).send().await.unwrap().text().await.unwrap();
    let (ceremony, csrf, options) = cards::ceremony_of(&html);
    let (status, answer) = cards::post_json(
        browser,
        server,
        "/webauthn/login",
        json!({"csrf_token": csrf, "ceremony": ceremony, "credential": card.sign(server, options)}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let callback = answer["redirect"].as_str().unwrap();
    assert!(callback.starts_with(&format!("{}/console/callback?", server.admin_url)), "{callback}");
    browser.get(callback).send().await.unwrap().status().as_u16()
}

async fn the_console_opens_with_a_card_and_closes_when_the_role_ends(db: Db) {
    let server = cards::start(db, false).await;
    cards::add_tax_system(&server).await;
    let until = days_from_today(&server, 30);
    let (manager, browser) = cards::logged_in_person(&server, "E9601", "tokatsu", PASSWORD).await;
    let mut card = Card::new();
    let code = cards::enrollment_code(&server, &manager).await;
    assert_eq!(cards::enroll(&browser, &server, &mut card, "職員証", "K-9601", &code).await.0, 200);
    for role in ["security_manager", "system_admin"] {
        let (status, body) = grant_role(&server, &manager, role, &until).await;
        assert_eq!(status, 201, "{body}");
    }

    // Without a session the console offers the card login.
    let page = browser.get(format!("{}/console", server.admin_url)).send().await.unwrap();
    assert_eq!(page.status(), 401);
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/login"), "{html}");

    assert_eq!(console_login(&server, &browser, &mut card).await, 200);
    let page = browser.get(format!("{}/console", server.admin_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("統括情報セキュリティ責任者") && html.contains(&until), "{html}");
    assert!(!html.contains("/console/audit"), "the security manager does not read the access records");

    // The console's JSON calls: reading with the cookie; a change needs the CSRF token.
    let listed = browser.get(format!("{}/api/v1/admin-roles", server.admin_url)).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let new_token = json!({"name": "人事連携の準備", "scopes": ["tokens:write"]});
    let refused = browser.post(format!("{}/api/v1/api-tokens", server.admin_url)).json(&new_token).send().await.unwrap();
    assert_eq!(refused.status(), 403, "no CSRF token");
    let roles_page = browser.get(format!("{}/console/roles", server.admin_url)).send().await.unwrap().text().await.unwrap();
    let csrf = hidden_input(&roles_page, "csrf");
    let made = browser
        .post(format!("{}/api/v1/api-tokens", server.admin_url))
        .header("X-Sekimori-CSRF", &csrf)
        .json(&new_token)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["owner"], manager.as_str());
    let machine_token = made["token"].as_str().unwrap().to_owned();

    // The security manager grants the hotline role from the console.
    let operator = server.add_person("E9602", "uketsuke", &password()).await;
    let granted = browser
        .post(format!("{}/console/roles", server.admin_url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("login_id", "uketsuke"),
            ("role", "hotline_operator"),
            ("end_date", until.as_str()),
            ("reason", "紛失受付当番"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);
    let today = sekimori::directory::today_in_japan(server.app.clock.now());
    let operators = sekimori::admin::roles::holders(
        server.app.store.pool(),
        sekimori::admin::roles::AdminRole::HotlineOperator,
        today,
    )
    .await
    .unwrap();
    assert_eq!(operators, vec![operator.clone()]);
    // A consuming system registered from the console: its secret is shown on that page only.
    let registered = browser
        .post(format!("{}/console/systems", server.admin_url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("client_id", "shisetsu"),
            ("name", "施設予約システム"),
            ("client_type", "confidential"),
            ("redirect_uri", "https://shisetsu.city.example.lg.jp/callback"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let page = registered.text().await.unwrap();
    let stored: String = sqlx::query_scalar("SELECT secret_hash FROM clients WHERE client_id = 'shisetsu'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap();
    let shown = page.split("<code class=\"reference\">").nth(1).and_then(|rest| rest.split('<').next()).unwrap();
    assert_eq!(sekimori::crypto::sha256_hex(shown), stored, "the secret shown is the one whose hash is kept");
    let later = browser.get(format!("{}/console/systems", server.admin_url)).send().await.unwrap().text().await.unwrap();
    assert!(later.contains("shisetsu") && !later.contains(shown), "listed, the secret never shown again");

    // An emergency stop from the console, and its lift.
    let stopped = browser
        .post(format!("{}/console/emergency", server.admin_url))
        .form(&[("csrf", csrf.as_str()), ("kind", "person"), ("target", "uketsuke"), ("reason", "端末の不正利用の疑い")])
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 200);
    let pool = server.app.store.pool();
    assert!(sekimori::emergency::is_stopped(pool, sekimori::emergency::Kind::Person, &operator).await.unwrap());
    let stops = sekimori::emergency::list(pool, true).await.unwrap();
    assert_eq!(stops[0].stopped_by, format!("person:{manager}"), "recorded under the manager's own name");
    let lifted = browser
        .post(format!("{}/console/emergency/{}/lift", server.admin_url, stops[0].id))
        .form(&[("csrf", csrf.as_str()), ("reason", "調査の結果問題なし")])
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    assert!(!sekimori::emergency::is_stopped(pool, sekimori::emergency::Kind::Person, &operator).await.unwrap());
    // A form without the session's token changes nothing.
    let forged = browser
        .post(format!("{}/console/roles", server.admin_url))
        .form(&[("csrf", "x"), ("login_id", "uketsuke"), ("role", "auditor"), ("end_date", until.as_str()), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // The roles end: the open console and the token made from it are refused at once.
    let (_, grants) = server.admin(reqwest::Method::GET, "/api/v1/admin-roles/grants", None).await;
    for grant in grants["items"].as_array().unwrap().iter().filter(|g| g["person_id"] == manager.as_str()) {
        let (status, _) = server
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/access/grants/{}/revoke", grant["id"].as_str().unwrap()),
                Some(json!({"reason": "任期満了前の交代"})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let page = browser.get(format!("{}/console", server.admin_url)).send().await.unwrap();
    assert_eq!(page.status(), 403);
    let (status, _) = call(&server, &machine_token, reqwest::Method::GET, "/api/v1/api-tokens", None).await;
    assert_eq!(status, 401);
    server.stop().await;
}

async fn a_lost_card_ends_the_console_session(db: Db) {
    let server = cards::start(db, false).await;
    cards::add_tax_system(&server).await;
    let until = days_from_today(&server, 30);
    let (person, browser) = cards::logged_in_person(&server, "E9701", "kansa", PASSWORD).await;
    let mut card = Card::new();
    let code = cards::enrollment_code(&server, &person).await;
    assert_eq!(cards::enroll(&browser, &server, &mut card, "職員証", "K-9701", &code).await.0, 200);
    let (status, body) = grant_role(&server, &person, "auditor", &until).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(console_login(&server, &browser, &mut card).await, 200);
    let page = browser.get(format!("{}/console/audit?action=console.login", server.admin_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("console.login"), "{html}");
    // The card is reported lost: the browser session it made ends, and the console with it.
    let (_, record) = server.admin(reqwest::Method::GET, &format!("/api/v1/people/{person}"), None).await;
    let card_id = record["authenticators"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/authenticators/{card_id}/lost"),
            Some(json!({"reported_by": "本人", "reason": "電車に置き忘れ"})),
        )
        .await;
    assert_eq!(status, 200);
    let page = browser.get(format!("{}/console/audit", server.admin_url)).send().await.unwrap();
    assert_eq!(page.status(), 401);
    server.stop().await;
}

async fn the_cli_issues_a_token_only_for_a_right_its_owner_holds(db: Db) {
    let server = TestServer::start(db).await;
    let until = days_from_today(&server, 30);
    let owner = server.add_person("E9801", "jinji", &password()).await;
    let (status, body) = grant_role(&server, &owner, "hr_feed_owner", &until).await;
    assert_eq!(status, 201, "{body}");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sekimori"))
            .args(args)
            .env("SEKIMORI_DATABASE_URL", &server.database_url)
            .env("SEKIMORI_MASTER_KEY", server.app.config.master_key.as_deref().unwrap())
            .output()
            .unwrap()
    };
    let refused = run(&["token", "create", "--owner", "jinji", "--scope", "audit:read", "--name", "x"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not hold audit:read"));
    let nobody = run(&["token", "create", "--owner", "nobody", "--scope", "hr:feed", "--name", "x"]);
    assert_eq!(nobody.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("nobody has the login ID"));
    let made = run(&["token", "create", "--owner", "jinji", "--scope", "hr:feed", "--name", "人事連携"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let stdout = String::from_utf8(made.stdout).unwrap();
    let token = stdout.lines().find_map(|l| l.trim().strip_prefix("skm_")).map(|t| format!("skm_{t}")).unwrap();
    let scim = server
        .http
        .get(format!("{}/scim/v2/Users?count=1", server.admin_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(scim.status(), 200, "the HR feed's token works");
    let stored = sqlx::query_scalar::<_, String>("SELECT owner_person_id FROM api_tokens WHERE name = '人事連携'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, owner);
    server.stop().await;
}

on_both_databases!(
    the_cli_issues_a_token_only_for_a_right_its_owner_holds,
    a_hotline_operator_reports_a_card_lost_and_does_nothing_else,
    an_auditor_reads_the_records_and_the_reading_is_recorded,
    a_right_past_its_end_date_is_refused_at_once,
    an_api_token_dies_with_its_owners_right,
    administrative_roles_are_granted_with_care,
    the_bootstrap_leaves_no_permanent_right,
    the_console_opens_with_a_card_and_closes_when_the_role_ends,
    a_lost_card_ends_the_console_session,
);
