//! Everyday administration of consuming systems: a change checked as a whole (and nothing
//! changed when refused), disable and enable (refused everywhere, tokens ended for good,
//! people's sessions kept), secret rotation with a grace period, and the same from the CLI.

use base64::Engine;
use reqwest::Method;
use sekimori::audit::Actor;
use sekimori::revocation::{self, Target};
use serde_json::{json, Value};
use sqlx::Row;

use crate::cli::{sekimori, temp_dir};
use crate::common::{authorize_url, browser, location, log_in, query_of, token_request, Db, TestServer};

const PASSWORD: &str = "correct-horse-battery";
const ZEIMU_CB: &str = "http://127.0.0.1:9101/callback";
const KANSA_CB: &str = "http://127.0.0.1:9102/callback";

/// The actions of the audit log's events on `target`, oldest first, with their details.
pub(crate) async fn audited(server: &TestServer, target: &str) -> Vec<(String, Value)> {
    sqlx::query("SELECT action, detail FROM audit_events WHERE target = $1 ORDER BY seq")
        .bind(target)
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let detail: String = row.try_get("detail").unwrap();
            (row.try_get("action").unwrap(), serde_json::from_str(&detail).unwrap())
        })
        .collect()
}

pub(crate) fn authorize(server: &TestServer, client_id: &str, redirect_uri: &str) -> String {
    authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid profile"),
            ("state", "s1"),
        ],
    )
}

/// Redeems the code the redirect `response` carries; returns the token response.
pub(crate) async fn redeem(
    server: &TestServer,
    client: (&str, &str),
    redirect_uri: &str,
    response: reqwest::Response,
) -> Value {
    assert_eq!(response.status(), 303);
    let code = query_of(&location(&response))["code"].clone();
    let (status, body, _) = token_request(
        server,
        Some(client),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", redirect_uri)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// RFC 7662 introspection by `by`; returns whether the token is active.
pub(crate) async fn active(server: &TestServer, by: (&str, &str), token: &str) -> bool {
    let response = server
        .http
        .post(format!("{}/introspect", server.public_url))
        .basic_auth(by.0, Some(by.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["active"].as_bool().unwrap()
}

pub(crate) async fn userinfo_status(server: &TestServer, access_token: &str) -> u16 {
    let response =
        server.http.get(format!("{}/userinfo", server.public_url)).bearer_auth(access_token).send().await.unwrap();
    response.status().as_u16()
}

pub(crate) async fn refresh(server: &TestServer, client: (&str, &str), refresh_token: &str) -> (u16, Value) {
    let (status, body, _) =
        token_request(server, Some(client), &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await;
    (status, body)
}

async fn a_change_is_checked_as_a_whole_and_a_refused_one_changes_nothing(db: Db) {
    let server = TestServer::start(db).await;
    server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [ZEIMU_CB]}))
        .await;
    server
        .add_client(json!({"client_id": "toshokan", "name": "図書館", "client_type": "public",
                           "redirect_uris": ["https://lib.city.example.lg.jp/cb"]}))
        .await;
    let (_, before) = server.admin(Method::GET, "/api/v1/clients/zeimu", None).await;
    let path = "/api/v1/clients/zeimu";
    for (bad, field) in [
        (json!({"name": "新税務", "redirect_uris": ["http://evil.example/cb"]}), Some("redirect_uris")),
        (json!({"redirect_uris": []}), Some("redirect_uris")),
        (json!({"redirect_uris": [format!("{ZEIMU_CB}#x")]}), Some("redirect_uris")),
        (json!({"service_scopes": ["zeimu.read"]}), Some("service_scopes")),
        (json!({"grant_types": ["refresh_token"]}), Some("grant_types")),
        (json!({"token_endpoint_auth_method": "none"}), Some("token_endpoint_auth_method")),
        (json!({"backchannel_logout_uri": "http://rp.example.jp/logout"}), Some("backchannel_logout_uri")),
        (json!({"owner_org_unit_id": "no-such-unit"}), Some("owner_org_unit_id")),
        (json!({"access_token_ttl": 7200}), Some("access_token_ttl")),
        (json!({"name": null}), None),
        (json!({"redirect_uris": null}), None),
        (json!({"client_type": "public"}), None),
        (json!({"client_id": "zeimu2"}), None),
        (json!({"status": "disabled"}), None),
        (json!({"client_secret": "chosen-by-me"}), None),
    ] {
        let (status, problem) = server.admin(Method::PATCH, path, Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad} -> {problem}");
        assert_eq!(problem["field"].as_str(), field, "{bad} -> {problem}");
    }
    // A public client keeps PKCE and has no secret to authenticate with.
    for bad in [json!({"require_pkce": false}), json!({"token_endpoint_auth_method": "client_secret_basic"})] {
        let (status, problem) = server.admin(Method::PATCH, "/api/v1/clients/toshokan", Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad} -> {problem}");
    }
    let (status, _) = server.admin(Method::PATCH, "/api/v1/clients/nobody", Some(json!({"name": "x"}))).await;
    assert_eq!(status, 404);
    let (_, after) = server.admin(Method::GET, path, None).await;
    assert_eq!(after, before, "nothing changed");
    assert!(audited(&server, "client:zeimu").await.iter().all(|(action, _)| action != "client.update"));

    // The old redirect URI works until it is replaced.
    let new_cb = "https://zeimu.city.example.lg.jp/callback";
    let (status, changed) = server
        .admin(
            Method::PATCH,
            path,
            Some(json!({"name": " 税務システム（新） ", "redirect_uris": [new_cb],
                        "backchannel_logout_uri": "https://zeimu.city.example.lg.jp/bc",
                        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                        "service_scopes": ["zeimu.read", "zeimu.read"], "refresh_token_ttl": 7200})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "税務システム（新）");
    assert_eq!(changed["redirect_uris"], json!([new_cb]));
    assert_eq!(changed["service_scopes"], json!(["zeimu.read"]));
    assert_eq!(changed["client_type"], "confidential", "untouched members stay");
    let (_, read_back) = server.admin(Method::GET, path, None).await;
    assert_eq!(read_back, changed);
    let refused = server.http.get(authorize(&server, "zeimu", ZEIMU_CB)).send().await.unwrap();
    assert_eq!(refused.status(), 400, "the replaced redirect URI is no longer trusted");
    assert!(refused.headers().get("location").is_none());
    let accepted = server.http.get(authorize(&server, "zeimu", new_cb)).send().await.unwrap();
    assert_eq!(accepted.status(), 303);

    // null clears what may be empty; a patch that changes nothing records nothing.
    let (status, cleared) = server.admin(Method::PATCH, path, Some(json!({"backchannel_logout_uri": null}))).await;
    assert_eq!((status, &cleared["backchannel_logout_uri"]), (200, &Value::Null));
    let (status, _) = server.admin(Method::PATCH, path, Some(json!({}))).await;
    assert_eq!(status, 200);
    let updates: Vec<Value> = audited(&server, "client:zeimu")
        .await
        .into_iter()
        .filter(|(action, _)| action == "client.update")
        .map(|(_, detail)| detail)
        .collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0]["changed"]["redirect_uris"], json!({"from": [ZEIMU_CB], "to": [new_cb]}));
    assert_eq!(updates[0]["changed"]["refresh_token_ttl"]["to"], 7200);
    assert!(updates[0]["changed"].get("client_type").is_none(), "only what changed");
    assert_eq!(updates[1]["changed"].as_object().unwrap().keys().collect::<Vec<_>>(), ["backchannel_logout_uri"]);
    server.stop().await;
}

async fn a_disabled_system_is_refused_everywhere_and_its_tokens_stay_ended(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E5001", "kimura", PASSWORD).await;
    let backchannel = json!("http://127.0.0.1:9/backchannel");
    let (_, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [ZEIMU_CB], "backchannel_logout_uri": backchannel,
                           "scopes": ["openid", "profile", "offline_access"]}))
        .await;
    let zeimu = ("zeimu", secret.as_deref().unwrap());
    let (_, kansa_secret) = server
        .add_client(json!({"client_id": "kansa", "name": "監査システム", "client_type": "confidential",
                           "redirect_uris": [KANSA_CB], "backchannel_logout_uri": backchannel}))
        .await;
    let kansa = ("kansa", kansa_secret.as_deref().unwrap());

    // One person's browser signs in to 税務, with an offline grant too.
    let person_browser = browser();
    let login = log_in(&person_browser, &server, &authorize(&server, "zeimu", ZEIMU_CB), "kimura", PASSWORD).await;
    let tokens = redeem(&server, zeimu, ZEIMU_CB, login).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let offline_url = authorize_url(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "zeimu"),
            ("redirect_uri", ZEIMU_CB),
            ("scope", "openid offline_access"),
        ],
    );
    let offline = person_browser.get(offline_url).send().await.unwrap();
    let offline_refresh = redeem(&server, zeimu, ZEIMU_CB, offline).await["refresh_token"].as_str().unwrap().to_owned();
    assert!(active(&server, kansa, &access).await);
    assert_eq!(userinfo_status(&server, &access).await, 200);
    // A login under way for 税務 (the login page is open) when it is disabled.
    let pending = server.http.get(authorize(&server, "zeimu", ZEIMU_CB)).send().await.unwrap();
    assert_eq!(pending.status(), 303);

    assert_eq!(server.count("authorization_requests").await, 1);
    let (status, disabled) = server.admin(Method::POST, "/api/v1/clients/zeimu/disable", None).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["client"]["status"], "disabled");
    assert!(disabled["client"]["disabled_at"].is_i64());
    assert_eq!(disabled["access_tokens_revoked"], 2);
    assert_eq!(disabled["refresh_tokens_revoked"], 2, "the offline family too");
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/zeimu/disable", None).await;
    assert_eq!(status, 409, "already disabled");
    assert_eq!(server.count("authorization_requests").await, 0, "the login under way is dropped");

    // Its authorization requests get a page, never a redirect to it.
    let refused = person_browser.get(authorize(&server, "zeimu", ZEIMU_CB)).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());
    // Its token requests fail client authentication (RFC 6749 §5.2).
    let (status, body) = refresh(&server, zeimu, &refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    let (status, body, _) =
        token_request(&server, Some(zeimu), &[("grant_type", "client_credentials"), ("scope", "x")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    // Its access token is inactive for everyone.
    assert!(!active(&server, kansa, &access).await);
    assert_eq!(userinfo_status(&server, &access).await, 401);

    // The person's session stays: 監査 signs them in without a password.
    let sso = person_browser.get(authorize(&server, "kansa", KANSA_CB)).send().await.unwrap();
    let kansa_tokens = redeem(&server, kansa, KANSA_CB, sso).await;
    assert!(kansa_tokens["access_token"].is_string());
    // When that session ends (the person logs out), 監査 is told and the disabled 税務 is not.
    let session_id: String = sqlx::query("SELECT id FROM sessions WHERE person_id = $1 AND revoked_at IS NULL")
        .bind(&person_id)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("id")
        .unwrap();
    let mut tx = server.app.store.begin().await.unwrap();
    let now = server.app.clock.now();
    revocation::revoke(&mut tx, &Actor::Person(person_id.clone()), now, Target::Session(&session_id), "logout")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let notices: Vec<String> = sqlx::query("SELECT client_id FROM logout_notices")
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("client_id").unwrap())
        .collect();
    assert_eq!(notices, ["kansa"]);

    // A token request that authenticated just before the disable committed may write its token
    // after the disable's revocation: as if the rows had been written then, unrevoked.
    for table in ["access_tokens", "refresh_tokens"] {
        sqlx::query(&format!("UPDATE {table} SET revoked_at = NULL WHERE client_id = 'zeimu'"))
            .execute(server.app.store.pool())
            .await
            .unwrap();
    }
    // Enabled again: new logins work, the old tokens stay ended (those late ones too).
    let (status, enabled) = server.admin(Method::POST, "/api/v1/clients/zeimu/enable", None).await;
    assert_eq!((status, enabled["status"].as_str(), &enabled["disabled_at"]), (200, Some("active"), &Value::Null));
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/zeimu/enable", None).await;
    assert_eq!(status, 409, "not disabled");
    for old in [&refresh_token, &offline_refresh] {
        let (status, body) = refresh(&server, zeimu, old).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    }
    assert!(!active(&server, kansa, &access).await);
    assert_eq!(userinfo_status(&server, &access).await, 401);
    let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "kimura", PASSWORD).await;
    let fresh = redeem(&server, zeimu, ZEIMU_CB, login).await;
    assert!(active(&server, kansa, fresh["access_token"].as_str().unwrap()).await);
    let actions: Vec<String> = audited(&server, "client:zeimu").await.into_iter().map(|(action, _)| action).collect();
    for expected in ["client.disable", "revoke", "client.enable"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} in {actions:?}");
    }
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/nobody/disable", None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// A notice queued for a system before it was disabled is not sent to it: the worker abandons
/// it, saying why.
async fn notices_queued_before_a_system_was_disabled_are_abandoned(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E5002", "hayashi", PASSWORD).await;
    let (_, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [ZEIMU_CB], "backchannel_logout_uri": "http://127.0.0.1:9/backchannel"}))
        .await;
    let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "hayashi", PASSWORD).await;
    redeem(&server, ("zeimu", secret.as_deref().unwrap()), ZEIMU_CB, login).await;
    let mut tx = server.app.store.begin().await.unwrap();
    let revoked = revocation::revoke(
        &mut tx,
        &Actor::Person(person_id.clone()),
        server.app.clock.now(),
        Target::Person(&person_id),
        "logout",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(revoked.logout_notices, 1);
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/zeimu/disable", None).await;
    assert_eq!(status, 200);
    let mut outcome = None;
    for _ in 0..40 {
        // Past any backoff of an attempt made before the disable.
        server.app.clock.advance(6);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let row = sqlx::query("SELECT abandoned_at, delivered_at, last_error FROM logout_notices")
            .fetch_one(server.app.store.pool())
            .await
            .unwrap();
        let abandoned: Option<i64> = row.try_get("abandoned_at").unwrap();
        let delivered: Option<i64> = row.try_get("delivered_at").unwrap();
        assert!(delivered.is_none());
        if abandoned.is_some() {
            outcome = row.try_get::<Option<String>, _>("last_error").unwrap();
            break;
        }
    }
    assert_eq!(outcome.as_deref(), Some("the client is disabled"));
    server.stop().await;
}

pub(crate) async fn client_credentials(server: &TestServer, client_id: &str, secret: &str) -> u16 {
    let form = [("grant_type", "client_credentials"), ("scope", "zeimu.read")];
    token_request(server, Some((client_id, secret)), &form).await.0
}

async fn rotate(server: &TestServer, client_id: &str, body: Value) -> (u16, Value) {
    server.admin(Method::POST, &format!("/api/v1/clients/{client_id}/secret"), Some(body)).await
}

async fn a_rotated_secret_works_beside_the_old_one_until_the_grace_ends(db: Db) {
    let server = TestServer::start(db).await;
    let (_, first) = server
        .add_client(json!({"client_id": "renkei", "name": "連携基盤", "client_type": "confidential",
                           "redirect_uris": [ZEIMU_CB], "grant_types": ["client_credentials"],
                           "service_scopes": ["zeimu.read"]}))
        .await;
    let first = first.unwrap();
    assert_eq!(client_credentials(&server, "renkei", &first).await, 200);

    let before = server.app.clock.now();
    let (status, rotated) = rotate(&server, "renkei", json!({"grace_seconds": 3600})).await;
    assert_eq!(status, 201, "{rotated}");
    let second = rotated["client_secret"].as_str().unwrap().to_owned();
    // The rotation's own second plus the grace (the clock may tick during the request).
    let expires_at = rotated["previous_secret_expires_at"].as_i64().unwrap();
    assert!((before + 3600..=server.app.clock.now() + 3600).contains(&expires_at), "{expires_at}");
    assert_eq!(client_credentials(&server, "renkei", &second).await, 200);
    assert_eq!(client_credentials(&server, "renkei", &first).await, 200, "the old secret during its grace");
    assert_eq!(client_credentials(&server, "renkei", "guess").await, 401);
    server.app.clock.advance(3601);
    assert_eq!(client_credentials(&server, "renkei", &first).await, 401, "the old secret after its grace");
    assert_eq!(client_credentials(&server, "renkei", &second).await, 200);

    // At most two secrets: a rotation during a grace period ends the older one.
    let (_, rotated) = rotate(&server, "renkei", json!({})).await;
    let third = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated["previous_secret_expires_at"], server.app.clock.now() + 86_400, "a day by default");
    let (_, rotated) = rotate(&server, "renkei", json!({"grace_seconds": null})).await;
    let fourth = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(client_credentials(&server, "renkei", &second).await, 401);
    assert_eq!(client_credentials(&server, "renkei", &third).await, 200);
    assert_eq!(client_credentials(&server, "renkei", &fourth).await, 200);
    // A leaked secret ends at once.
    let (_, rotated) = rotate(&server, "renkei", json!({"grace_seconds": 0})).await;
    assert_eq!(rotated["previous_secret_expires_at"], Value::Null);
    let fifth = rotated["client_secret"].as_str().unwrap().to_owned();
    for dead in [&third, &fourth] {
        assert_eq!(client_credentials(&server, "renkei", dead).await, 401);
    }
    assert_eq!(client_credentials(&server, "renkei", &fifth).await, 200);

    // Refusals, each with its reason.
    for (bad, field) in [
        (json!({"grace_seconds": -1}), Some("grace_seconds")),
        (json!({"grace_seconds": 30 * 86_400 + 1}), Some("grace_seconds")),
        (json!({"grace_seconds": "1d"}), None),
        (json!({"grace": 60}), None),
    ] {
        let (status, problem) = rotate(&server, "renkei", bad.clone()).await;
        assert_eq!((status, problem["field"].as_str()), (422, field), "{bad} -> {problem}");
    }
    server
        .add_client(json!({"client_id": "toshokan", "name": "図書館", "client_type": "public",
                           "redirect_uris": [ZEIMU_CB]}))
        .await;
    let (status, problem) = rotate(&server, "toshokan", json!({})).await;
    assert_eq!(status, 409);
    assert!(problem["detail"].as_str().unwrap().contains("public client has no secret"), "{problem}");
    let (status, _) = rotate(&server, "nobody", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(client_credentials(&server, "renkei", &fifth).await, 200, "refusals changed nothing");

    // Audited, never the secret.
    let rotations: Vec<Value> = audited(&server, "client:renkei")
        .await
        .into_iter()
        .filter(|(action, _)| action == "client.secret_rotate")
        .map(|(_, detail)| detail)
        .collect();
    assert_eq!(rotations.len(), 4);
    assert_eq!(rotations[0]["grace_seconds"], 3600);
    let log = sqlx::query("SELECT detail FROM audit_events").fetch_all(server.app.store.pool()).await.unwrap();
    for row in log {
        let detail: String = row.try_get("detail").unwrap();
        for secret in [&first, &second, &third, &fourth, &fifth] {
            assert!(!detail.contains(secret.as_str()), "a secret in the audit log: {detail}");
        }
    }
    server.stop().await;
}

/// A service token (client_credentials) with the scope `zeimu.read`, and its jti.
async fn service_token(server: &TestServer, client: (&str, &str)) -> (String, String) {
    let form = [("grant_type", "client_credentials"), ("scope", "zeimu.read")];
    let (status, body, _) = token_request(server, Some(client), &form).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    (token, claims["jti"].as_str().unwrap().to_owned())
}

async fn revoke_token(server: &TestServer, by: (&str, &str), token: &str) -> u16 {
    let response = server
        .http
        .post(format!("{}/revoke", server.public_url))
        .basic_auth(by.0, Some(by.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// A system's own tokens are not stored one by one, yet each ends at once: on RFC 7009
/// revocation (that one only), when the system is disabled, and on its emergency stop (every
/// earlier one, for good), and each is in the audit log.
async fn a_service_token_has_no_row_and_still_ends_at_once(db: Db) {
    let server = TestServer::start(db).await;
    let service = json!({"client_type": "confidential", "redirect_uris": [ZEIMU_CB],
                         "grant_types": ["client_credentials"], "service_scopes": ["zeimu.read"]});
    let mut renkei_client = service.clone();
    renkei_client["client_id"] = json!("renkei");
    renkei_client["name"] = json!("連携基盤");
    let (_, renkei_secret) = server.add_client(renkei_client).await;
    let renkei = ("renkei", renkei_secret.as_deref().unwrap());
    let (_, kansa_secret) = server
        .add_client(json!({"client_id": "kansa", "name": "監査システム", "client_type": "confidential",
                           "redirect_uris": [KANSA_CB]}))
        .await;
    let kansa = ("kansa", kansa_secret.as_deref().unwrap());

    let (first, first_jti) = service_token(&server, renkei).await;
    let (second, _) = service_token(&server, renkei).await;
    assert_eq!(server.count("access_tokens").await, 0, "no row for a system's own token");
    assert!(active(&server, kansa, &first).await);
    assert!(active(&server, renkei, &second).await);
    let issued: Vec<Value> = audited(&server, "client:renkei")
        .await
        .into_iter()
        .filter(|(action, _)| action == "token.issued")
        .map(|(_, detail)| detail)
        .collect();
    assert_eq!(issued.len(), 2, "every token is in the audit log");
    assert_eq!(issued[0]["jti"], first_jti.as_str());
    assert_eq!(issued[0]["grant_type"], "client_credentials");

    // RFC 7009: only by the system it was issued to; it ends at once, the other stays.
    assert_eq!(revoke_token(&server, kansa, &first).await, 400, "unauthorized_client: not kansa's token");
    assert!(active(&server, kansa, &first).await);
    assert_eq!(revoke_token(&server, renkei, &first).await, 200);
    assert!(!active(&server, kansa, &first).await);
    assert!(!active(&server, renkei, &first).await);
    assert!(active(&server, kansa, &second).await);
    assert_eq!(revoke_token(&server, renkei, &first).await, 200, "revoking again is no error");
    assert_eq!(server.count("revoked_access_tokens").await, 1);
    let revoked = audited(&server, &format!("access_token:{first_jti}")).await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!((revoked[0].0.as_str(), &revoked[0].1["access_tokens"]), ("revoke", &json!(1)));

    // Disabled: every earlier token ends, and stays ended once it is enabled again; so does
    // one a token request that authenticated just before the disable signs after it.
    let before_disable = sekimori::systems::get(&server.app.store, "renkei").await.unwrap().unwrap();
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/renkei/disable", None).await;
    assert_eq!(status, 200);
    assert!(!active(&server, kansa, &second).await);
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/renkei/enable", None).await;
    assert_eq!(status, 200);
    assert!(!active(&server, kansa, &second).await);
    let now = server.app.clock.now();
    let late_jti = sekimori::oidc::access_tokens::service_jti(before_disable.token_generation);
    let late = server
        .app
        .keys
        .sign(
            sekimori::systems::SigningAlg::ES256,
            "at+jwt",
            &sekimori::oidc::claims::service_access_token(
                &server.app.config.issuer,
                &before_disable,
                "zeimu.read",
                &late_jti,
                now,
            ),
        )
        .unwrap();
    assert!(!active(&server, kansa, &late).await, "a token of the generation before the disable");
    let (third, _) = service_token(&server, renkei).await;
    assert!(active(&server, kansa, &third).await, "a new token after the enable works");

    // The emergency stop of the system: at once, and for good once lifted.
    let (status, stop) = server
        .admin(
            Method::POST,
            "/api/v1/emergency-stops",
            Some(json!({"kind": "system", "target": "renkei", "reason": "不正利用の疑い"})),
        )
        .await;
    assert_eq!(status, 201, "{stop}");
    assert!(!active(&server, kansa, &third).await);
    let lift = format!("/api/v1/emergency-stops/{}/lift", stop["id"].as_str().unwrap());
    let (status, _) = server.admin(Method::POST, &lift, Some(json!({"reason": "確認済み"}))).await;
    assert_eq!(status, 200);
    assert!(!active(&server, kansa, &third).await);
    let (fourth, _) = service_token(&server, renkei).await;
    assert!(active(&server, kansa, &fourth).await);
    assert_eq!(server.count("access_tokens").await, 0);

    // The revocation list keeps an entry only until the token would have expired anyway.
    let window = server.app.config.password.source_window_seconds;
    sekimori::jobs::sweep(&server.app.store, server.app.clock.now(), window).await.unwrap();
    assert_eq!(server.count("revoked_access_tokens").await, 1);
    server.app.clock.advance(2 * 86_400);
    sekimori::jobs::sweep(&server.app.store, server.app.clock.now(), window).await.unwrap();
    assert_eq!(server.count("revoked_access_tokens").await, 0);
    server.stop().await;
}

/// Introspections of systems' own tokens that arrive together are read together, in one query
/// (`oidc::token_cache`); each must still be answered for its own token: active ones active,
/// revoked ones and those of a disabled system not, and no answer given to another call.
async fn service_tokens_asked_about_together_are_each_answered_for_themselves(db: Db) {
    let server = TestServer::start(db).await;
    let service = |id: &str, name: &str| {
        json!({"client_id": id, "name": name, "client_type": "confidential", "redirect_uris": [ZEIMU_CB],
               "grant_types": ["client_credentials"], "service_scopes": ["zeimu.read"]})
    };
    let (_, renkei_secret) = server.add_client(service("renkei", "連携基盤")).await;
    let renkei = ("renkei", renkei_secret.as_deref().unwrap());
    let (_, kyoyu_secret) = server.add_client(service("kyoyu", "共有基盤")).await;
    let kyoyu = ("kyoyu", kyoyu_secret.as_deref().unwrap());
    let (_, kansa_secret) = server
        .add_client(json!({"client_id": "kansa", "name": "監査システム", "client_type": "confidential",
                           "redirect_uris": [KANSA_CB]}))
        .await;
    let kansa = ("kansa", kansa_secret.as_deref().unwrap());

    // (token, whether it must be found active)
    let mut tokens = Vec::new();
    for n in 0..8 {
        let (token, _) = service_token(&server, renkei).await;
        if n % 2 == 1 {
            assert_eq!(revoke_token(&server, renkei, &token).await, 200);
        }
        tokens.push((token, n % 2 == 0));
    }
    for _ in 0..4 {
        tokens.push((service_token(&server, kyoyu).await.0, false));
    }
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/kyoyu/disable", None).await;
    assert_eq!(status, 200);

    let shared = &server;
    for round in 0..5 {
        let asked = tokens.iter().cycle().skip(round).take(3 * tokens.len());
        let answers = futures_util::future::join_all(
            asked.map(|(token, expected)| async move { (active(shared, kansa, token).await, *expected) }),
        )
        .await;
        for (n, (answer, expected)) in answers.iter().enumerate() {
            assert_eq!(answer, expected, "round {round}, call {n}");
        }
    }
    server.stop().await;
}

on_both_databases!(
    service_tokens_asked_about_together_are_each_answered_for_themselves,
    a_service_token_has_no_row_and_still_ends_at_once,
    a_change_is_checked_as_a_whole_and_a_refused_one_changes_nothing,
    a_disabled_system_is_refused_everywhere_and_its_tokens_stay_ended,
    notices_queued_before_a_system_was_disabled_are_abandoned,
    a_rotated_secret_works_beside_the_old_one_until_the_grace_ends,
);

/// The same administration from the shell, with the operator's messages.
#[test]
fn the_cli_lists_shows_changes_disables_enables_and_rotates() {
    let dir = temp_dir();
    let run = |args: &[&str]| {
        let output =
            sekimori(&dir).args(args).env("SEKIMORI_ISSUER", "https://sso.city.example.lg.jp").output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stdout, stderr)
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        stdout
    };
    let refused = |args: &[&str]| {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?} must be refused: {stdout}");
        stderr
    };

    let added = ok(&["client", "add", "--name", "税務システム", "--client-id", "zeimu", "--redirect-uri", ZEIMU_CB]);
    assert!(
        added.contains("discovery:     https://sso.city.example.lg.jp/.well-known/openid-configuration"),
        "the configured issuer: {added}"
    );
    ok(&["client", "add", "--name", "図書館", "--client-id", "toshokan", "--public", "--redirect-uri", KANSA_CB]);
    let listed = ok(&["client", "list"]);
    let zeimu_line = listed.lines().find(|l| l.starts_with("zeimu ")).unwrap_or_default();
    assert!(
        zeimu_line.contains("active") && zeimu_line.contains("confidential") && zeimu_line.contains("税務システム")
    );
    let shown = ok(&["client", "show", "zeimu"]);
    assert!(shown.contains(&format!("redirect URIs:             {ZEIMU_CB}")), "{shown}");
    let secret = added.lines().find_map(|l| l.strip_prefix("client_secret: ")).unwrap_or_default();
    let secret = secret.split_whitespace().next().unwrap_or_default();
    assert_eq!(secret.len(), 43, "{added}");
    assert!(!shown.contains(secret), "never the secret: {shown}");
    assert!(refused(&["client", "show", "nobody"]).contains("no consuming system has client_id nobody"));

    // A change: refused with its reason and nothing changed, or applied.
    let err = refused(&["client", "update", "zeimu", "--name", "新", "--redirect-uri", "http://evil.example/cb"]);
    assert!(err.contains("redirect_uris") && err.contains("https"), "{err}");
    assert_eq!(ok(&["client", "show", "zeimu"]), shown, "nothing changed");
    assert!(refused(&["client", "update", "zeimu"]).contains("nothing to change"));
    assert!(
        refused(&["client", "update", "nobody", "--name", "x"]).contains("no consuming system has client_id nobody")
    );
    let cb2 = "https://zeimu.city.example.lg.jp/cb";
    let updated =
        ok(&["client", "update", "zeimu", "--name", "税務（新）", "--redirect-uri", ZEIMU_CB, "--redirect-uri", cb2]);
    assert!(updated.contains("税務（新）") && updated.contains(&format!("{ZEIMU_CB} {cb2}")), "{updated}");
    let err = refused(&["client", "update", "toshokan", "--require-pkce", "false"]);
    assert!(err.contains("require_pkce"), "{err}");

    // Disable and enable, each once.
    let disabled = ok(&["client", "disable", "zeimu"]);
    assert!(disabled.starts_with("zeimu disabled; ended 0 access tokens"), "{disabled}");
    assert!(refused(&["client", "disable", "zeimu"]).contains("already disabled"));
    assert!(ok(&["client", "list"]).lines().any(|l| l.starts_with("zeimu ") && l.contains("disabled")));
    let shown = ok(&["client", "show", "zeimu"]);
    assert!(shown.contains("disabled since 20") && shown.contains("+09:00"), "{shown}");
    assert!(ok(&["client", "enable", "zeimu"]).starts_with("zeimu enabled"));
    assert!(refused(&["client", "enable", "zeimu"]).contains("not disabled"));

    // Secret rotation.
    let rotated = ok(&["client", "rotate-secret", "zeimu", "--grace", "2h"]);
    assert!(rotated.contains("client_secret:   ") && rotated.contains("(shown only now)"), "{rotated}");
    assert!(rotated.contains("previous secret: works until 20") && rotated.contains("+09:00"), "{rotated}");
    assert!(ok(&["client", "show", "zeimu"]).contains("previous secret:           works until"));
    assert!(ok(&["client", "rotate-secret", "zeimu", "--grace", "0"]).contains("previous secret: ended now"));
    assert!(refused(&["client", "rotate-secret", "toshokan"]).contains("a public client has no secret to rotate"));
    let (code, _, err) = run(&["client", "rotate-secret", "zeimu", "--grace", "31d"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--grace") && err.contains("30d"), "{err}");

    let verify = ok(&["audit", "verify"]);
    assert!(verify.contains("intact"), "{verify}");
    let _ = std::fs::remove_dir_all(&dir);
}
