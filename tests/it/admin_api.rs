//! The admin listener: authenticated, authorised per scope, problem+json errors, bootstrap.

use serde_json::{json, Value};

use crate::common::{Db, TestServer};

async fn call(
    server: &TestServer,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut request = server.http.request(method, format!("{}{path}", server.admin_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, response.json().await.unwrap_or(Value::Null))
}

async fn nothing_is_anonymous_but_health(db: Db) {
    let server = TestServer::start(db).await;
    let (status, _, body) = call(&server, None, reqwest::Method::GET, "/health", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    for path in ["/api/v1/people", "/api/v1/clients", "/api/v1/org-units", "/api/v1/audit/events"] {
        let (status, content_type, body) = call(&server, None, reqwest::Method::GET, path, None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["status"], 401);
        let (status, _, _) = call(&server, Some("skm_forged"), reqwest::Method::GET, path, None).await;
        assert_eq!(status, 401, "{path}");
    }
    // Admin endpoints are not on the public listener.
    let response = server.http.get(format!("{}/api/v1/people", server.public_url)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}

async fn each_call_needs_its_scope(db: Db) {
    let server = TestServer::start(db).await;
    let (status, _, issued) = call(
        &server,
        Some(&server.admin_token),
        reqwest::Method::POST,
        "/api/v1/api-tokens",
        Some(json!({"name": "人事連携", "scopes": ["directory:read"]})),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let reader = issued["token"].as_str().unwrap();
    let (status, _, _) = call(&server, Some(reader), reqwest::Method::GET, "/api/v1/people", None).await;
    assert_eq!(status, 200);
    let (status, content_type, body) = call(&server, Some(reader), reqwest::Method::GET, "/api/v1/clients", None).await;
    assert_eq!(status, 403);
    assert_eq!(content_type, "application/problem+json");
    assert!(body["detail"].as_str().unwrap().contains("clients:read"));
    let (status, _, _) = call(&server, Some(reader), reqwest::Method::GET, "/api/v1/audit/events", None).await;
    assert_eq!(status, 403, "only an auditor reads the log");
    // A token cannot hand on rights it lacks.
    let (status, _, _) = call(
        &server,
        Some(reader),
        reqwest::Method::POST,
        "/api/v1/api-tokens",
        Some(json!({"name": "x", "scopes": ["directory:read"]})),
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}

async fn bad_input_gets_problem_details(db: Db) {
    let server = TestServer::start(db).await;
    let token = Some(server.admin_token.as_str());
    let cases: Vec<(Value, u16)> = vec![
        (json!({"name": "x"}), 422),
        (json!({"name": "x", "client_type": "confidential", "redirect_uris": ["http://evil.example/cb"]}), 422),
        (json!({"name": "x", "client_type": "confidential", "redirect_uris": ["https://a.example/cb#frag"]}), 422),
        (
            json!({"name": "x", "client_type": "public", "redirect_uris": ["https://a.example/cb"], "require_pkce": false}),
            422,
        ),
        (
            json!({"name": "x", "client_type": "confidential", "redirect_uris": ["https://a.example/cb"], "surprise": 1}),
            422,
        ),
        (
            json!({"name": "x", "client_type": "confidential", "redirect_uris": ["https://a.example/cb"], "client_id": "Bad ID!"}),
            422,
        ),
    ];
    for (body, expected) in cases {
        let (status, content_type, problem) =
            call(&server, token, reqwest::Method::POST, "/api/v1/clients", Some(body.clone())).await;
        assert_eq!(status, expected, "{body} -> {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert!(problem["title"].is_string());
    }
    // Not JSON at all.
    let response = server
        .http
        .post(format!("{}/api/v1/people", server.admin_url))
        .bearer_auth(&server.admin_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    // Wrong content type.
    let response = server
        .http
        .post(format!("{}/api/v1/people", server.admin_url))
        .bearer_auth(&server.admin_token)
        .body("employee_number=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // A body must be an object: serde would fill a struct from an array of its fields in order.
    for body in [json!([null, null]), json!(["RS256"]), json!("x"), json!(null)] {
        let (status, content_type, problem) =
            call(&server, token, reqwest::Method::POST, "/api/v1/signing-keys/rotate", Some(body.clone())).await;
        assert_eq!((status, content_type.as_str()), (422, "application/problem+json"), "{body} -> {problem}");
    }
    assert_eq!(server.app.keys.list().len(), 2, "nothing was rotated");
    // JSON does not tell 600 from 600.0; a fraction is still no integer.
    let (status, _, problem) = call(
        &server,
        token,
        reqwest::Method::POST,
        "/api/v1/signing-keys/rotate",
        Some(json!({"algs": ["ES256"], "publish_ahead_seconds": 600.0})),
    )
    .await;
    assert_eq!(status, 201, "{problem}");
    let (status, _, problem) = call(
        &server,
        token,
        reqwest::Method::POST,
        "/api/v1/signing-keys/rotate",
        Some(json!({"publish_ahead_seconds": 600.5})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, _, _) = call(&server, token, reqwest::Method::GET, "/api/v1/people/does-not-exist", None).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(&server, token, reqwest::Method::GET, "/api/v1/people?limit=100000", None).await;
    assert_eq!(status, 400);
    let (status, _, _) = call(
        &server,
        token,
        reqwest::Method::POST,
        "/api/v1/people/x/account",
        Some(json!({"login_id": "abc", "password": "a-long-enough-passphrase"})),
    )
    .await;
    assert_eq!(status, 404, "no such person");
    let (status, _, person) = call(
        &server,
        token,
        reqwest::Method::POST,
        "/api/v1/people",
        Some(json!({"employee_number": "E90817", "family_name": "田中", "given_name": "一郎", "family_name_kana": "タナカ",
                    "given_name_kana": "イチロウ", "kind": "regular", "start_date": "2020-04-01", "birth_date": "1990-05-12"})),
    )
    .await;
    assert_eq!(status, 201);
    let account_path = format!("/api/v1/people/{}/account", person["id"].as_str().unwrap());
    for weak in ["short", "tanaka-ichiro-1990", "Heisei2-0512-kasumi", "e90817-yoake-no-kaze"] {
        let (status, content_type, problem) = call(
            &server,
            token,
            reqwest::Method::POST,
            &account_path,
            Some(json!({"login_id": "tanaka.ichiro", "password": weak})),
        )
        .await;
        assert_eq!(status, 422, "{weak} must be refused: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["field"], "password");
    }
    assert_eq!(server.count_outside_console("clients").await, 0);
    assert_eq!(server.count("accounts").await, 0);
    server.stop().await;
}

async fn bootstrap_code_works_once(db: Db) {
    let server = TestServer::start(db).await;
    let code = sekimori::admin::auth::issue_bootstrap_code(
        &server.app.store,
        &sekimori::audit::Actor::Cli,
        server.app.clock.now(),
    )
    .await
    .unwrap();
    let body = json!({"code": code, "name": "最初の管理者"});
    let (status, _, issued) = call(&server, None, reqwest::Method::POST, "/api/v1/bootstrap", Some(body.clone())).await;
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().unwrap();
    let (status, _, _) = call(&server, Some(token), reqwest::Method::GET, "/api/v1/clients", None).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&server, None, reqwest::Method::POST, "/api/v1/bootstrap", Some(body)).await;
    assert_eq!(status, 401, "a bootstrap code is single-use");
    let (status, _, _) =
        call(&server, None, reqwest::Method::POST, "/api/v1/bootstrap", Some(json!({"code": "guess", "name": "x"})))
            .await;
    assert_eq!(status, 401);
    server.stop().await;
}

/// Keys rotated one right after the other (no publishing ahead) each begin signing strictly
/// after the one before — never in the same second, where their order could not be told — and
/// the newest signs once its second has come.
async fn keys_rotated_back_to_back_follow_each_other(db: Db) {
    let server = TestServer::start(db).await;
    let token = Some(server.admin_token.as_str());
    let mut created = Vec::new();
    for _ in 0..2 {
        let (status, _, rotated) = call(
            &server,
            token,
            reqwest::Method::POST,
            "/api/v1/signing-keys/rotate",
            Some(json!({"algs": ["ES256"], "publish_ahead_seconds": 0})),
        )
        .await;
        assert_eq!(status, 201, "{rotated}");
        created.push(rotated["created"][0].as_str().unwrap().to_owned());
    }
    let mut es256: Vec<(i64, String)> = server
        .app
        .keys
        .list()
        .into_iter()
        .filter(|k| k.alg == sekimori::systems::SigningAlg::ES256)
        .map(|k| (k.signs_from, k.kid))
        .collect();
    es256.sort();
    assert_eq!(es256.len(), 3, "the first key and the two rotated in");
    assert!(es256[0].0 < es256[1].0 && es256[1].0 < es256[2].0, "each begins after the one before: {es256:?}");
    assert_eq!(es256[2].1, created[1], "the last one rotated in is the last to begin");
    while server.app.clock.now() < es256[2].0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let signed = server.app.keys.sign(sekimori::systems::SigningAlg::ES256, "JWT", &json!({"sub": "x"})).unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signed.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], created[1].as_str(), "the newest key signs");
    server.stop().await;
}

on_both_databases!(
    nothing_is_anonymous_but_health,
    each_call_needs_its_scope,
    bad_input_gets_problem_details,
    bootstrap_code_works_once,
    keys_rotated_back_to_back_follow_each_other,
);
