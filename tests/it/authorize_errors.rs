//! Authorization-endpoint errors: never a redirect to an unverified URI; the rest go back to
//! the client with state and iss; nothing is left behind.

use serde_json::json;

use crate::common::{authorize_url, browser, hidden_input, location, log_in, query_of, Db, TestServer};

const REDIRECT: &str = "http://127.0.0.1:9002/callback";

async fn setup(db: Db) -> TestServer {
    let server = TestServer::start(db).await;
    server.add_person("E2001", "sato", "correct-horse-battery").await;
    server
        .add_client(
            json!({"client_id": "toshokan", "name": "図書館", "client_type": "public", "redirect_uris": [REDIRECT]}),
        )
        .await;
    server
}

async fn assert_nothing_left(server: &TestServer) {
    assert_eq!(server.count("authorization_requests").await, 0);
    assert_eq!(server.count("auth_codes").await, 0);
    assert_eq!(server.count("sessions").await, 0);
}

async fn client_and_redirect_errors_are_shown_not_redirected(db: Db) {
    let server = setup(db).await;
    let evil = "https://evil.example/steal";
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("response_type", "code"), ("client_id", "nobody"), ("redirect_uri", REDIRECT), ("scope", "openid")],
        vec![("response_type", "code"), ("client_id", "toshokan"), ("redirect_uri", evil), ("scope", "openid")],
        // A prefix or a variant of the registered URI is not the registered URI.
        vec![
            ("response_type", "code"),
            ("client_id", "toshokan"),
            ("redirect_uri", "http://127.0.0.1:9002/callback/../x"),
            ("scope", "openid"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "toshokan"),
            ("redirect_uri", "http://127.0.0.1:9002/callbackx"),
            ("scope", "openid"),
        ],
        vec![("response_type", "code"), ("client_id", "toshokan"), ("scope", "openid")],
        vec![("response_type", "code"), ("redirect_uri", REDIRECT), ("scope", "openid")],
    ];
    for params in cases {
        let response = server.http.get(authorize_url(&server, &params)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{params:?}");
        assert!(response.headers().get("location").is_none(), "must not redirect: {params:?}");
        let html = response.text().await.unwrap();
        assert!(html.contains("<html lang=\"ja\">"), "an error page in Japanese");
        assert!(!html.contains(evil));
    }
    // A repeated redirect_uri cannot be trusted either.
    let url = format!(
        "{}&redirect_uri={}",
        authorize_url(
            &server,
            &[("response_type", "code"), ("client_id", "toshokan"), ("redirect_uri", REDIRECT), ("scope", "openid")]
        ),
        "https%3A%2F%2Fevil.example%2F"
    );
    let response = server.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert_nothing_left(&server).await;
    server.stop().await;
}

async fn request_errors_are_redirected_with_state_and_iss(db: Db) {
    let server = setup(db).await;
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut params = vec![("client_id", "toshokan"), ("redirect_uri", REDIRECT), ("state", "xyz")];
        params.extend_from_slice(extra);
        params
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            base(&[("scope", "openid"), ("code_challenge", challenge), ("code_challenge_method", "S256")]),
            "invalid_request",
        ),
        (
            base(&[
                ("response_type", "token"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ]),
            "unsupported_response_type",
        ),
        (
            base(&[
                ("response_type", "code id_token"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ]),
            "unsupported_response_type",
        ),
        (
            base(&[
                ("response_type", "code"),
                ("scope", "profile"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ]),
            "invalid_scope",
        ),
        // A public client without PKCE.
        (base(&[("response_type", "code"), ("scope", "openid")]), "invalid_request"),
        // plain is not accepted, nor is a challenge without method (which means plain).
        (
            base(&[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "plain"),
            ]),
            "invalid_request",
        ),
        (base(&[("response_type", "code"), ("scope", "openid"), ("code_challenge", challenge)]), "invalid_request"),
        (
            base(&[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", "too-short"),
                ("code_challenge_method", "S256"),
            ]),
            "invalid_request",
        ),
        (
            base(&[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("max_age", "-1"),
            ]),
            "invalid_request",
        ),
        (
            base(&[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("request", "eyJ.x.y"),
            ]),
            "request_not_supported",
        ),
        (
            base(&[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "none login"),
            ]),
            "invalid_request",
        ),
        // prompt=none and nobody logged in.
        (
            base(&[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ]),
            "login_required",
        ),
    ];
    for (params, expected) in cases {
        let response = server.http.get(authorize_url(&server, &params)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{params:?}");
        let target = location(&response);
        assert!(target.starts_with(REDIRECT), "{target}");
        let query = query_of(&target);
        assert_eq!(query.get("error").map(String::as_str), Some(expected), "{params:?} -> {target}");
        assert_eq!(query.get("state").map(String::as_str), Some("xyz"));
        assert_eq!(query.get("iss"), Some(&server.public_url));
        assert!(!query.contains_key("code"));
    }
    // A repeated parameter other than client_id/redirect_uri.
    let url = format!(
        "{}&scope=openid",
        authorize_url(
            &server,
            &base(&[
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256")
            ])
        )
    );
    let response = server.http.get(url).send().await.unwrap();
    assert_eq!(query_of(&location(&response)).get("error").map(String::as_str), Some("invalid_request"));
    assert_nothing_left(&server).await;
    server.stop().await;
}

async fn wrong_password_gives_no_hint_whether_the_account_exists(db: Db) {
    let server = setup(db).await;
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let params = [
        ("response_type", "code"),
        ("client_id", "toshokan"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    let browser = browser();
    let url = authorize_url(&server, &params);
    let wrong = log_in(&browser, &server, &url, "sato", "not-the-password").await;
    let unknown = log_in(&browser, &server, &url, "nosuchuser", "not-the-password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert!(wrong.headers().get("location").is_none());
    let wrong_body = wrong.text().await.unwrap();
    let unknown_body = unknown.text().await.unwrap();
    assert!(wrong_body.contains("ログインIDまたはパスワードが正しくありません"));
    // Apart from the echoed login ID and the pending request's handle, the pages are identical.
    let normalise = |body: &str, login: &str| {
        body.replace(&format!("value=\"{login}\""), "value=\"LOGIN\"").replace(&hidden_input(body, "request"), "REQ")
    };
    assert_eq!(normalise(&wrong_body, "sato"), normalise(&unknown_body, "nosuchuser"));
    assert_eq!(server.count("sessions").await, 0);
    assert_eq!(server.count("auth_codes").await, 0);
    // Both failures are audited.
    use sqlx::Row;
    let failures: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'login.password' AND outcome = 'failure'")
            .fetch_one(server.app.store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(failures, 2);
    server.stop().await;
}

async fn login_without_csrf_token_is_refused(db: Db) {
    let server = setup(db).await;
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let params = [
        ("response_type", "code"),
        ("client_id", "toshokan"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    let browser = browser();
    let response = browser.get(authorize_url(&server, &params)).send().await.unwrap();
    let login_url = format!("{}{}", server.public_url, location(&response));
    let html = browser.get(&login_url).send().await.unwrap().text().await.unwrap();
    let request = hidden_input(&html, "request");
    let csrf = hidden_input(&html, "csrf_token");
    let post = |form: Vec<(&'static str, String)>, client: reqwest::Client| {
        let url = format!("{}/login", server.public_url);
        async move { client.post(url).form(&form).send().await.unwrap() }
    };
    let base = vec![
        ("request", request.clone()),
        ("login_id", "sato".to_owned()),
        ("password", "correct-horse-battery".to_owned()),
    ];
    // Missing token.
    let r = post(base.clone(), browser.clone()).await;
    assert_eq!(r.status(), 403);
    // Wrong token.
    let mut forged = base.clone();
    forged.push(("csrf_token", "AAAA".into()));
    assert_eq!(post(forged, browser.clone()).await.status(), 403);
    // The right token from another browser (no CSRF cookie): a cross-site forgery.
    let mut replayed = base.clone();
    replayed.push(("csrf_token", csrf.clone()));
    assert_eq!(post(replayed.clone(), crate::common::browser()).await.status(), 403);
    assert_eq!(server.count("sessions").await, 0);
    assert_eq!(server.count("auth_codes").await, 0);
    // And with it, from this browser, the login goes through.
    let ok = post(replayed, browser).await;
    assert_eq!(ok.status(), 303);
    assert!(location(&ok).starts_with(REDIRECT));
    server.stop().await;
}

async fn login_page_is_japanese_first_with_english_available(db: Db) {
    let server = setup(db).await;
    let params = [
        ("response_type", "code"),
        ("client_id", "toshokan"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ];
    let browser = browser();
    let response = browser.get(authorize_url(&server, &params)).send().await.unwrap();
    let login_url = format!("{}{}", server.public_url, location(&response));
    let ja = browser.get(&login_url).send().await.unwrap();
    assert!(ja.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let ja = ja.text().await.unwrap();
    assert!(ja.contains("<html lang=\"ja\">"));
    assert!(ja.contains("<label for=\"login_id\">ログインID</label>"));
    assert!(ja.contains("<label for=\"password\">パスワード</label>"));
    let en = browser.get(format!("{login_url}&lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(en.contains("<html lang=\"en\">"));
    assert!(en.contains("<label for=\"login_id\">Login ID</label>"));
    // The choice is remembered.
    let again = browser.get(&login_url).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("<html lang=\"en\">"));
    // A consuming system can ask for a language with ui_locales.
    let fresh = crate::common::browser();
    let mut with_locale = params.to_vec();
    with_locale.push(("ui_locales", "en-US ja"));
    let response = fresh.get(authorize_url(&server, &with_locale)).send().await.unwrap();
    let page = fresh.get(format!("{}{}", server.public_url, location(&response))).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("<html lang=\"en\">"));
    server.stop().await;
}

async fn expired_or_unknown_login_request_is_explained(db: Db) {
    let server = setup(db).await;
    let response = browser().get(format!("{}/login?request=doesnotexist", server.public_url)).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("有効期限"));
    let _ = log_in;
    server.stop().await;
}

on_both_databases!(
    client_and_redirect_errors_are_shown_not_redirected,
    request_errors_are_redirected_with_state_and_iss,
    wrong_password_gives_no_hint_whether_the_account_exists,
    login_without_csrf_token_is_refused,
    login_page_is_japanese_first_with_english_available,
    expired_or_unknown_login_request_is_explained,
);
