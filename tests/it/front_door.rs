//! The front door: a direct login to Sekimori, マイページ (password age, cards, sessions with
//! their systems, recent sign-ins), ending one of my sessions (its tokens die with it), the
//! logged-out pages that lead to the login, the reset page naming the login ID, the
//! password refusal that gives its advice once, and the `staff` scope.

use serde_json::{json, Value};

use crate::common::{browser, hidden_input, location, log_in, query_of, token_request, Db, TestServer};

const PASSWORD: &str = "kaigan-no-matsubara-2026";
const REDIRECT: &str = "https://zeimu.city.example.lg.jp/callback";

/// Logs in directly (no consuming system) through `/login?next=…`; returns the response to the
/// login form.
async fn log_in_directly(
    browser: &reqwest::Client,
    server: &TestServer,
    next: &str,
    (login_id, password): (&str, &str),
) -> reqwest::Response {
    let page = browser.get(format!("{}/login?next={next}", server.public_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("マイページにログインします"), "a direct login says where it leads:\n{html}");
    browser
        .post(format!("{}/login", server.public_url))
        .form(&[
            ("csrf_token", hidden_input(&html, "csrf_token").as_str()),
            ("request", hidden_input(&html, "request").as_str()),
            ("login_id", login_id),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

async fn get(browser: &reqwest::Client, server: &TestServer, path: &str) -> reqwest::Response {
    browser.get(format!("{}{path}", server.public_url)).send().await.unwrap()
}

async fn introspect(server: &TestServer, secret: &str, token: &str) -> bool {
    crate::common::introspect_as(server, "zeimu", secret, token).await
}

async fn userinfo_of(server: &TestServer, access_token: &Value) -> Value {
    let request =
        server.http.get(format!("{}/userinfo", server.public_url)).bearer_auth(access_token.as_str().unwrap());
    request.send().await.unwrap().json().await.unwrap()
}

async fn with_zeimu(server: &TestServer, scopes: &[&str]) -> String {
    let (_, secret) = server
        .add_client(json!({
            "client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
            "redirect_uris": [REDIRECT], "scopes": scopes,
            "backchannel_logout_uri": "https://zeimu.city.example.lg.jp/backchannel"
        }))
        .await;
    secret.unwrap()
}

/// Logs in to 税務システム in `browser`; returns the token response.
async fn tokens_for_zeimu(browser: &reqwest::Client, server: &TestServer, secret: &str, scope: &str) -> Value {
    let url = crate::common::authorize_url(
        server,
        &[("response_type", "code"), ("client_id", "zeimu"), ("redirect_uri", REDIRECT), ("scope", scope)],
    );
    let response = log_in(browser, server, &url, "yamada", PASSWORD).await;
    assert_eq!(response.status(), 303);
    let code = query_of(&location(&response))["code"].clone();
    let (status, body, _) = token_request(
        server,
        Some(("zeimu", secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn a_person_logs_in_directly_and_sees_their_page(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E5001", "yamada", PASSWORD).await;
    let me = browser();

    // Logged out, the top page offers the login, and Sekimori's own pages lead to it.
    let top = get(&me, &server, "/").await;
    assert_eq!(top.status(), 200);
    assert!(top.text().await.unwrap().contains("href=\"/login\""), "the top page links to the login");
    for page in ["/my", "/password", "/authenticators"] {
        let response = get(&me, &server, page).await;
        assert_eq!(response.status(), 303, "{page}");
        assert_eq!(location(&response), format!("/login?next={page}"), "{page}");
    }
    // `next` names only Sekimori's own pages: anything else returns to マイページ.
    let response = log_in_directly(&me, &server, "https://evil.example/", ("yamada", "wrong-password-entirely")).await;
    assert_eq!(response.status(), 401);
    let html = response.text().await.unwrap();
    assert!(html.contains("正しいパスワードでもしばらく"), "the refusal says that failures pause logins:\n{html}");
    // The ID is filled in again and the cursor goes to the password.
    assert!(html.contains("value=\"yamada\""));
    let password_input = &html[html.find("id=\"password\"").unwrap()..];
    assert!(password_input[..password_input.find('>').unwrap()].contains("autofocus"), "{html}");

    // The language link of a direct login keeps it (no "login expired").
    let html = get(&me, &server, "/login").await.text().await.unwrap();
    let request = hidden_input(&html, "request");
    let english = get(&me, &server, &format!("/login?request={request}&lang=en")).await;
    assert_eq!(english.status(), 200);
    assert!(english.text().await.unwrap().contains("Log in"), "the direct login in English");
    assert_eq!(get(&me, &server, &format!("/login?request={request}&lang=ja")).await.status(), 200);

    let response = log_in_directly(&me, &server, "https://evil.example/", ("yamada", PASSWORD)).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/my", "a foreign next is ignored");
    // Logged in, the top page and the login go to マイページ.
    assert_eq!(location(&get(&me, &server, "/").await), "/my");
    assert_eq!(location(&get(&me, &server, "/login").await), "/my");

    let page = get(&me, &server, "/my").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for expected in ["試験 太郎", "yamada", "E5001", "最終変更日", "有効期限", "この端末", "最近のログイン", "成功"]
    {
        assert!(html.contains(expected), "マイページ shows {expected}:\n{html}");
    }
    // The password's expiry date is the policy's (90 days for regular staff by default).
    let changed = sekimori::clock::japan_date(server.app.clock.now());
    let expires = sekimori::clock::japan_date(server.app.clock.now() + 90 * 86_400);
    assert!(html.contains(&changed) && html.contains(&expires), "{changed} and {expires} on:\n{html}");
    // The failed attempt is a row of the recent sign-ins, marked failed, with its source.
    let recent = &html[html.find("id=\"sign-ins-heading\"").unwrap()..];
    let failed = &recent[recent.find("class=\"failed\"").expect("a failed sign-in row")..];
    assert!(failed[..failed.find("</tr>").unwrap()].contains("127.0.0.1"), "{recent}");

    // A direct login to the password page returns there.
    let other = browser();
    let response = log_in_directly(&other, &server, "/password", ("yamada", PASSWORD)).await;
    assert_eq!(location(&response), "/password");
    let page = get(&other, &server, "/password").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("href=\"/my\""), "the change page leads back to マイページ");
    server.stop().await;
}

async fn ending_another_session_ends_its_tokens(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E5002", "yamada", PASSWORD).await;
    let secret = with_zeimu(&server, &["openid", "profile"]).await;
    // At the desk: 税務システム, with a token.
    let desk = browser();
    let tokens = tokens_for_zeimu(&desk, &server, &secret, "openid profile").await;
    let access_token = tokens["access_token"].as_str().unwrap();
    assert!(introspect(&server, &secret, access_token).await);
    // From another machine: マイページ lists both sessions, the desk's with its system.
    let me = browser();
    assert_eq!(log_in_directly(&me, &server, "/my", ("yamada", PASSWORD)).await.status(), 303);
    let html = get(&me, &server, "/my").await.text().await.unwrap();
    assert!(html.contains("税務システム"), "the desk's session names its system:\n{html}");
    let ends: Vec<&str> = html.match_indices("/my/sessions/").map(|(i, _)| &html[i + 13..i + 13 + 36]).collect();
    assert_eq!(ends.len(), 2, "two sessions listed:\n{html}");
    let (this, desk_session) = {
        let current = html.find("class=\"current\"").unwrap();
        let this =
            html[current..].find("/my/sessions/").map(|i| &html[current + i + 13..current + i + 13 + 36]).unwrap();
        (this.to_owned(), ends.iter().find(|id| **id != this).unwrap().to_string())
    };
    let csrf = hidden_input(&html, "csrf_token");
    // Someone else's session, or nonsense, is not found.
    let stranger = browser();
    server.add_person("E5003", "suzuki", "yuugure-no-hashi-watari-2026").await;
    let response = log_in_directly(&stranger, &server, "/my", ("suzuki", "yuugure-no-hashi-watari-2026")).await;
    assert_eq!(response.status(), 303);
    let strangers_page = get(&stranger, &server, "/my").await.text().await.unwrap();
    let response = stranger
        .post(format!("{}/my/sessions/{desk_session}/end", server.public_url))
        .form(&[("csrf_token", hidden_input(&strangers_page, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "another person's session cannot be ended");
    // Nor seen: the stranger's page holds nothing of yamada's.
    assert!(!strangers_page.contains(&desk_session) && !strangers_page.contains("税務システム"), "{strangers_page}");
    assert!(introspect(&server, &secret, access_token).await);
    // Ending the desk's session from here: its token is inactive at once, its cookie useless.
    let response = me
        .post(format!("{}/my/sessions/{desk_session}/end", server.public_url))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/my?ended=1");
    assert!(!introspect(&server, &secret, access_token).await, "the ended session's token is inactive");
    let notices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM logout_notices WHERE client_id = 'zeimu'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap();
    assert_eq!(notices, 1, "税務システム is told, by back-channel logout");
    assert_eq!(location(&get(&desk, &server, "/my").await), "/login?next=/my", "the desk is logged out");
    let html = get(&me, &server, "/my?ended=1").await.text().await.unwrap();
    assert!(html.contains("ログインを終了しました"), "{html}");
    assert_eq!(html.matches("/my/sessions/").count(), 1, "only this browser's session is left");
    // Ending this browser's own session is logging out.
    let csrf = hidden_input(&html, "csrf_token");
    let response = me
        .post(format!("{}/my/sessions/{this}/end", server.public_url))
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("ログアウトしました") && html.contains("href=\"/login\""), "{html}");
    assert_eq!(location(&get(&me, &server, "/my").await), "/login?next=/my");
    server.stop().await;
}

async fn the_reset_link_names_the_login_id_and_sets_a_password(db: Db) {
    let server = TestServer::start(db).await;
    let person = server.add_person("E5004", "yamada", PASSWORD).await;
    let (status, body) =
        server.admin(reqwest::Method::POST, &format!("/api/v1/people/{person}/password-reset"), None).await;
    assert_eq!(status, 201, "{body}");
    let link = body["reset_url"].as_str().or(body["url"].as_str()).expect("a reset link").to_owned();
    let path = &link[link.find("/password/reset").unwrap()..];
    let me = browser();
    let html = get(&me, &server, path).await.text().await.unwrap();
    assert!(html.contains("<h1>パスワードの設定</h1>"), "titled as setting a password:\n{html}");
    assert!(html.contains("あなたのログインID") && html.contains(">yamada<"), "the login ID is shown:\n{html}");
    // A refusal gives its advice once, however many reasons there are.
    let response = me
        .post(format!("{}/password/reset", server.public_url))
        .form(&[
            ("csrf_token", hidden_input(&html, "csrf_token").as_str()),
            ("ticket", hidden_input(&html, "ticket").as_str()),
            ("new_password", "yamada-E5004-19900512"),
            ("confirm_password", "yamada-E5004-19900512"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("ログインIDが含まれています") && html.contains("職員番号が含まれています"), "{html}");
    assert_eq!(html.matches("長いパスフレーズにしてください").count(), 1, "the advice is given once:\n{html}");
    assert!(!html.contains("4つ以上"), "no advice contradicts another:\n{html}");
    let response = me
        .post(format!("{}/password/reset", server.public_url))
        .form(&[
            ("csrf_token", hidden_input(&html, "csrf_token").as_str()),
            ("ticket", hidden_input(&html, "ticket").as_str()),
            ("new_password", "shiosai-no-oto-wo-kiku-yoru"),
            ("confirm_password", "shiosai-no-oto-wo-kiku-yoru"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("パスワードを設定しました") && html.contains("href=\"/login\""), "{html}");
    assert_eq!(log_in_directly(&me, &server, "/my", ("yamada", "shiosai-no-oto-wo-kiku-yoru")).await.status(), 303);
    server.stop().await;
}

async fn the_staff_scope_gives_login_id_and_section(db: Db) {
    let server = TestServer::start(db).await;
    let person = crate::common::tanaka(&server).await;
    let (status, _) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{person}/account"),
            Some(json!({"login_id": "yamada", "password": PASSWORD, "require_change": false})),
        )
        .await;
    assert_eq!(status, 201);
    let discovery: Value = server
        .http
        .get(format!("{}/.well-known/openid-configuration", server.public_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(discovery["scopes_supported"].as_array().unwrap().contains(&json!("staff")));
    assert!(discovery["claims_supported"].as_array().unwrap().contains(&json!("section")));
    let secret = with_zeimu(&server, &["openid", "profile", "staff"]).await;
    let tokens = tokens_for_zeimu(&browser(), &server, &secret, "openid staff").await;
    let userinfo = userinfo_of(&server, &tokens["access_token"]).await;
    assert_eq!(userinfo["login_id"], "yamada", "{userinfo}");
    assert_eq!(userinfo["section"], json!({"code": "ZEIMU", "name": "税務課", "name#en": "Taxation Division"}));
    assert!(userinfo.get("name").is_none(), "profile was not asked for: {userinfo}");
    // Without the scope, neither claim.
    let tokens = tokens_for_zeimu(&browser(), &server, &secret, "openid profile").await;
    let userinfo = userinfo_of(&server, &tokens["access_token"]).await;
    assert!(userinfo.get("login_id").is_none() && userinfo.get("section").is_none(), "{userinfo}");
    server.stop().await;
}

async fn fixed_term_dates_are_checked_when_a_person_is_registered(db: Db) {
    let server = TestServer::start(db).await;
    let person = |kind: &str, end: Option<&str>| {
        json!({
            "employee_number": "E5006", "family_name": "会計", "given_name": "年度",
            "family_name_kana": "カイケイ", "given_name_kana": "ネンド", "kind": kind,
            "start_date": "2020-04-01", "end_date": end
        })
    };
    // 会計年度任用職員 are fixed-term: an end date is required.
    let (status, body) = server.admin(reqwest::Method::POST, "/api/v1/people", Some(person("part_time", None))).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("end_date")), "{body}");
    // An end date already behind us could never log in: refused with the reason.
    let (status, body) =
        server.admin(reqwest::Method::POST, "/api/v1/people", Some(person("temporary", Some("2021-03-31")))).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("end_date")), "{body}");
    assert!(body.to_string().contains("already passed"), "{body}");
    assert_eq!(server.count("people").await, 0, "nothing was registered");
    // The database refuses a part_time person without an end date too (a trigger on SQLite, a
    // constraint on PostgreSQL), whoever writes the row.
    let refused = sqlx::query(
        "INSERT INTO people (id, employee_number, family_name, given_name, family_name_kana, given_name_kana,
             kind, status, start_date, created_at, updated_at)
         VALUES ('p', 'E5099', 'a', 'b', 'ア', 'イ', 'part_time', 'active', '2026-04-01', 0, 0)",
    )
    .execute(server.app.store.pool())
    .await
    .expect_err("refused by the database");
    assert!(refused.to_string().contains("people_fixed_term_has_end_date"), "{refused}");
    // Registered with tomorrow as the last day: logs in until the end of it, not after.
    let tomorrow = sekimori::clock::japan_date(server.app.clock.now() + 86_400);
    let (status, body) =
        server.admin(reqwest::Method::POST, "/api/v1/people", Some(person("part_time", Some(&tomorrow)))).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{}/account", body["id"].as_str().unwrap()),
            Some(json!({"login_id": "yamada", "password": PASSWORD, "require_change": false})),
        )
        .await;
    assert_eq!(status, 201);
    let secret = with_zeimu(&server, &["openid", "profile"]).await;
    let tokens = tokens_for_zeimu(&browser(), &server, &secret, "openid profile").await;
    assert!(introspect(&server, &secret, tokens["access_token"].as_str().unwrap()).await);
    server.app.clock.advance(2 * 86_400);
    assert_eq!(log_in_directly(&browser(), &server, "/my", ("yamada", PASSWORD)).await.status(), 401);
    assert!(!introspect(&server, &secret, tokens["access_token"].as_str().unwrap()).await, "past the end date");
    server.stop().await;
}

/// The default lifetime is the configured `tokens.api_token_ttl` (30 days unless set), and
/// never beyond the creating token's end.
async fn an_api_token_without_a_lifetime_lives_the_configured_default(db: Db) {
    assert_eq!(sekimori::config::TokenConfig::default().api_token_ttl, 30 * 86_400);
    let server = TestServer::start_configured(db, |config| config.tokens.api_token_ttl = 7200).await;
    let now = server.app.clock.now();
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "script", "scopes": ["directory:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let expires_at = body["expires_at"].as_i64().unwrap();
    assert!((expires_at - (now + 7200)).abs() < 60, "{body}");
    server.stop().await;
}

/// A system's standing access (offline_access) outlives every session: マイページ lists it, and
/// the person can revoke it there.
async fn a_systems_standing_access_is_listed_and_can_be_revoked(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E5007", "yamada", PASSWORD).await;
    let secret = with_zeimu(&server, &["openid", "profile", "offline_access"]).await;
    let desk = browser();
    let tokens = tokens_for_zeimu(&desk, &server, &secret, "openid offline_access").await;
    let refresh_token = tokens["refresh_token"].as_str().expect("an offline refresh token").to_owned();
    let refresh = |token: String| {
        let secret = secret.clone();
        let server = &server;
        async move {
            token_request(
                server,
                Some(("zeimu", &secret)),
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    let (status, refreshed, _) = refresh(refresh_token).await;
    assert_eq!(status, 200, "{refreshed}");
    let current = refreshed["refresh_token"].as_str().unwrap().to_owned();

    let me = browser();
    assert_eq!(log_in_directly(&me, &server, "/my", ("yamada", PASSWORD)).await.status(), 303);
    let html = get(&me, &server, "/my").await.text().await.unwrap();
    assert!(html.contains("ログインしていなくても続くシステムのアクセス"), "{html}");
    let start = html.find("/my/grants/").expect("a grant to revoke") + "/my/grants/".len();
    let family = &html[start..start + html[start..].find('/').unwrap()];
    let csrf = hidden_input(&html, "csrf_token");
    // Nobody else can revoke it.
    let stranger = browser();
    server.add_person("E5008", "suzuki", "yuugure-no-hashi-watari-2026").await;
    assert_eq!(
        log_in_directly(&stranger, &server, "/my", ("suzuki", "yuugure-no-hashi-watari-2026")).await.status(),
        303
    );
    let strangers_page = get(&stranger, &server, "/my").await.text().await.unwrap();
    let response = stranger
        .post(format!("{}/my/grants/{family}/end", server.public_url))
        .form(&[("csrf_token", hidden_input(&strangers_page, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // The person revokes it: the system's refresh token is refused from now on.
    let response = me
        .post(format!("{}/my/grants/{family}/end", server.public_url))
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/my?revoked=1");
    let (status, body, _) = refresh(current).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let html = get(&me, &server, "/my?revoked=1").await.text().await.unwrap();
    assert!(html.contains("取り消しました") && !html.contains("/my/grants/"), "{html}");
    server.stop().await;
}

on_both_databases!(
    a_systems_standing_access_is_listed_and_can_be_revoked,
    a_person_logs_in_directly_and_sees_their_page,
    ending_another_session_ends_its_tokens,
    the_reset_link_names_the_login_id_and_sets_a_password,
    the_staff_scope_gives_login_id_and_section,
    fixed_term_dates_are_checked_when_a_person_is_registered,
    an_api_token_without_a_lifetime_lives_the_configured_default,
);
