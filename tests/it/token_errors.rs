//! Token-endpoint errors exactly as RFC 6749 §5.2 says, and none of them issues anything.

use serde_json::json;

use crate::common::{obtain_code, pkce_pair, token_request, Db, TestServer};

const REDIRECT: &str = "http://127.0.0.1:9001/callback";
const PASSWORD: &str = "correct-horse-battery";

async fn setup(db: Db) -> (TestServer, String) {
    let server = TestServer::start(db).await;
    server.add_person("E3001", "watanabe", PASSWORD).await;
    let (_, secret) = server
        .add_client(
            json!({"client_id": "zeimu", "name": "税務", "client_type": "confidential", "redirect_uris": [REDIRECT]}),
        )
        .await;
    (server, secret.unwrap())
}

fn assert_oauth_error(status: u16, body: &serde_json::Value, expected_status: u16, expected_error: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"], expected_error, "{body}");
}

async fn pkce_verifier_must_match(db: Db) {
    let (server, secret) = setup(db).await;
    let (verifier, challenge) = pkce_pair();
    let (other_verifier, _) = pkce_pair();
    for attempt in [None, Some(other_verifier.as_str())] {
        let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
        let mut form = vec![("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT)];
        if let Some(v) = attempt {
            form.push(("code_verifier", v));
        }
        let (status, body, _) = token_request(&server, Some(("zeimu", &secret)), &form).await;
        assert_oauth_error(status, &body, 400, "invalid_grant");
        // The failed attempt used the code up: the right verifier cannot follow.
        let mut retry = form.clone();
        retry.retain(|(k, _)| *k != "code_verifier");
        retry.push(("code_verifier", verifier.as_str()));
        let (status, body, _) = token_request(&server, Some(("zeimu", &secret)), &retry).await;
        assert_oauth_error(status, &body, 400, "invalid_grant");
    }
    // A malformed verifier is a malformed request.
    let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
    let (status, body, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", "short"),
        ],
    )
    .await;
    assert_oauth_error(status, &body, 400, "invalid_request");
    // A verifier for a code issued without a challenge is a downgrade attempt (RFC 9700 §4.8.2).
    let code = obtain_code(&server, "zeimu", REDIRECT, None, "watanabe", PASSWORD).await;
    let (status, body, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_oauth_error(status, &body, 400, "invalid_grant");
    assert_eq!(server.count("access_tokens").await, 0);
    server.stop().await;
}

async fn replayed_code_is_refused_and_revokes_what_it_issued(db: Db) {
    let (server, secret) = setup(db).await;
    let (verifier, challenge) = pkce_pair();
    let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, first, headers) = token_request(&server, Some(("zeimu", &secret)), &form).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(first["token_type"], "Bearer");
    let access_token = first["access_token"].as_str().unwrap().to_owned();
    let userinfo = |token: String| {
        let http = server.http.clone();
        let url = format!("{}/userinfo", server.public_url);
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(userinfo(access_token.clone()).await.status(), 200);

    let (status, body, _) = token_request(&server, Some(("zeimu", &secret)), &form).await;
    assert_oauth_error(status, &body, 400, "invalid_grant");
    // The token issued from the code is dead at once, although its JWT has not expired.
    let response = userinfo(access_token).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    server.stop().await;
}

async fn expired_code_is_refused(db: Db) {
    let (server, secret) = setup(db).await;
    let (verifier, challenge) = pkce_pair();
    let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
    server.app.clock.advance(server.app.config.tokens.code_ttl + 1);
    let (status, body, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_oauth_error(status, &body, 400, "invalid_grant");
    assert_eq!(server.count("access_tokens").await, 0);
    server.stop().await;
}

async fn client_authentication_failures(db: Db) {
    let (server, secret) = setup(db).await;
    let (verifier, challenge) = pkce_pair();
    let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    // Wrong secret, unknown client: 401 with a Basic challenge.
    for (id, s) in [("zeimu", "wrong-secret"), ("nobody", secret.as_str())] {
        let (status, body, headers) = token_request(&server, Some((id, s)), &form).await;
        assert_oauth_error(status, &body, 401, "invalid_client");
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    }
    // The registered method is client_secret_basic: the same secret in the body is refused.
    let mut post_form = form.to_vec();
    post_form.push(("client_id", "zeimu"));
    post_form.push(("client_secret", &secret));
    let (status, body, _) = token_request(&server, None, &post_form).await;
    assert_oauth_error(status, &body, 401, "invalid_client");
    // Two methods at once.
    let (status, body, _) = token_request(&server, Some(("zeimu", &secret)), &post_form).await;
    assert_oauth_error(status, &body, 400, "invalid_request");
    // No authentication at all from a confidential client.
    let mut none_form = form.to_vec();
    none_form.push(("client_id", "zeimu"));
    let (status, body, _) = token_request(&server, None, &none_form).await;
    assert_oauth_error(status, &body, 401, "invalid_client");
    assert_eq!(server.count("access_tokens").await, 0);
    // The code was never touched by those attempts: the real client can still redeem it.
    let (status, body, _) = token_request(&server, Some(("zeimu", &secret)), &form).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

async fn malformed_token_requests(db: Db) {
    let (server, secret) = setup(db).await;
    let auth = Some(("zeimu", secret.as_str()));
    let (status, body, _) = token_request(&server, auth, &[("code", "x")]).await;
    assert_oauth_error(status, &body, 400, "invalid_request");
    let (status, body, _) =
        token_request(&server, auth, &[("grant_type", "password"), ("username", "a"), ("password", "b")]).await;
    assert_oauth_error(status, &body, 400, "unsupported_grant_type");
    let (status, body, _) =
        token_request(&server, auth, &[("grant_type", "authorization_code"), ("redirect_uri", REDIRECT)]).await;
    assert_oauth_error(status, &body, 400, "invalid_request");
    let (status, body, _) = token_request(
        &server,
        auth,
        &[("grant_type", "authorization_code"), ("code", "forged"), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_oauth_error(status, &body, 400, "invalid_grant");
    let (status, body, _) = token_request(
        &server,
        auth,
        &[
            ("grant_type", "authorization_code"),
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_oauth_error(status, &body, 400, "invalid_request");
    // JSON is not what RFC 6749 asks for.
    let response = server
        .http
        .post(format!("{}/token", server.public_url))
        .basic_auth("zeimu", Some(&secret))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["error"], "invalid_request");
    // A wrong redirect_uri uses the code up.
    let (verifier, challenge) = pkce_pair();
    let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
    let (status, body, _) = token_request(
        &server,
        auth,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9001/other"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_oauth_error(status, &body, 400, "invalid_grant");
    assert_eq!(server.count("access_tokens").await, 0);
    server.stop().await;
}

async fn code_issued_to_one_client_cannot_be_used_by_another(db: Db) {
    let (server, _) = setup(db).await;
    let (_, other_secret) = server
        .add_client(
            json!({"client_id": "fukushi", "name": "福祉", "client_type": "confidential", "redirect_uris": [REDIRECT]}),
        )
        .await;
    let (verifier, challenge) = pkce_pair();
    let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
    let (status, body, _) = token_request(
        &server,
        Some(("fukushi", other_secret.as_deref().unwrap())),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_oauth_error(status, &body, 400, "invalid_grant");
    assert_eq!(server.count("access_tokens").await, 0);
    server.stop().await;
}

async fn userinfo_refuses_bad_tokens(db: Db) {
    let (server, _) = setup(db).await;
    let url = format!("{}/userinfo", server.public_url);
    let none = server.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"sekimori\"");
    let forged = server.http.get(&url).bearer_auth("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.").send().await.unwrap();
    assert_eq!(forged.status(), 401);
    server.stop().await;
}

async fn browser_clients_may_call_token_and_userinfo_cross_origin(db: Db) {
    let (server, _) = setup(db).await;
    for path in ["/token", "/userinfo", "/jwks.json", "/.well-known/openid-configuration"] {
        let response = server
            .http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.public_url))
            .header("origin", "https://toshokan.city.example.lg.jp")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(response.headers().get("access-control-allow-credentials").is_none());
    }
    // The login page is not for other origins.
    let response = server
        .http
        .get(format!("{}/login?request=x", server.public_url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}

async fn expired_rows_are_swept(db: Db) {
    let (server, secret) = setup(db).await;
    let (verifier, challenge) = pkce_pair();
    let code = obtain_code(&server, "zeimu", REDIRECT, Some(&challenge), "watanabe", PASSWORD).await;
    let (status, _, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let now = server.app.clock.now();
    let window = server.app.config.password.source_window_seconds;
    // Nothing still in use is swept.
    sekimori::jobs::sweep(&server.app.store, now, window).await.unwrap();
    assert_eq!(server.count("auth_codes").await, 1);
    assert_eq!(server.count("access_tokens").await, 1);
    server.app.clock.advance(2 * 86_400);
    sekimori::jobs::sweep(&server.app.store, server.app.clock.now(), window).await.unwrap();
    assert_eq!(server.count("auth_codes").await, 0);
    assert_eq!(server.count("access_tokens").await, 0);
    assert_eq!(server.count("authorization_requests").await, 0);
    // The audit trail of it all stays.
    assert!(server.count("audit_events").await > 0);
    server.stop().await;
}

on_both_databases!(
    expired_rows_are_swept,
    browser_clients_may_call_token_and_userinfo_cross_origin,
    pkce_verifier_must_match,
    replayed_code_is_refused_and_revokes_what_it_issued,
    expired_code_is_refused,
    client_authentication_failures,
    malformed_token_requests,
    code_issued_to_one_client_cannot_be_used_by_another,
    userinfo_refuses_bad_tokens,
);
