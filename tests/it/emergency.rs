//! R17: the emergency stop of one person or one consuming system — at once (tokens inactive,
//! refresh and logins refused, back-channel notices queued), reversible (the prior state comes
//! back, ended tokens stay ended), audited with its reason, from the API and the CLI — and the
//! alert to the security managers when one account is locked again and again.

use reqwest::Method;
use serde_json::json;
use sqlx::Row;

use crate::cli::{sekimori, temp_dir};
use crate::common::{browser, log_in, Db, TestServer};
use crate::systems_admin::{active, audited, authorize, client_credentials, redeem, refresh, userinfo_status};

const PASSWORD: &str = "correct-horse-battery";
const ZEIMU_CB: &str = "http://127.0.0.1:9101/callback";
const KANSA_CB: &str = "http://127.0.0.1:9102/callback";
const STOPS: &str = "/api/v1/emergency-stops";

/// 税務 (with client_credentials) and 監査, both told of logouts over the back channel.
async fn two_systems(server: &TestServer) -> (String, String) {
    let backchannel = "http://127.0.0.1:9/backchannel";
    let (_, zeimu) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [ZEIMU_CB], "backchannel_logout_uri": backchannel,
                           "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                           "service_scopes": ["zeimu.read"]}))
        .await;
    let (_, kansa) = server
        .add_client(json!({"client_id": "kansa", "name": "監査システム", "client_type": "confidential",
                           "redirect_uris": [KANSA_CB], "backchannel_logout_uri": backchannel,
                           "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                           "service_scopes": ["zeimu.read"]}))
        .await;
    (zeimu.unwrap(), kansa.unwrap())
}

async fn a_person_stop_ends_everything_at_once_and_lifting_lets_them_log_in_again(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E7001", "sato", PASSWORD).await;
    let (zeimu_secret, kansa_secret) = two_systems(&server).await;
    let (zeimu, kansa) = (("zeimu", zeimu_secret.as_str()), ("kansa", kansa_secret.as_str()));
    let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "sato", PASSWORD).await;
    let tokens = redeem(&server, zeimu, ZEIMU_CB, login).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(active(&server, kansa, &access).await);
    assert_eq!(userinfo_status(&server, &access).await, 200);

    // Refused before anything changes: no right, no reason, an unknown person.
    let (status, token) = server
        .admin(Method::POST, "/api/v1/api-tokens", Some(json!({"name": "閲覧のみ", "scopes": ["directory:read"]})))
        .await;
    assert_eq!(status, 201, "{token}");
    let without_right = server
        .http
        .post(format!("{}{STOPS}", server.admin_url))
        .bearer_auth(token["token"].as_str().unwrap())
        .json(&json!({"kind": "person", "target": "sato", "reason": "不正アクセスの疑い"}))
        .send()
        .await
        .unwrap();
    assert_eq!(without_right.status(), 403);
    for reason in ["", "   ", &"長".repeat(1001)] {
        let (status, problem) = server
            .admin(Method::POST, STOPS, Some(json!({"kind": "person", "target": "sato", "reason": reason})))
            .await;
        assert_eq!((status, problem["field"].as_str()), (422, Some("reason")), "{problem}");
    }
    let (status, _) =
        server.admin(Method::POST, STOPS, Some(json!({"kind": "person", "target": "nobody", "reason": "x"}))).await;
    assert_eq!(status, 404);
    assert_eq!(server.count("emergency_stops").await, 0);
    assert!(active(&server, kansa, &access).await);

    // Stopped by login ID: everything ends at once, and the system it signed in to is told.
    let (status, stop) = server
        .admin(Method::POST, STOPS, Some(json!({"kind": "person", "target": "sato", "reason": "不正アクセスの疑い"})))
        .await;
    assert_eq!(status, 201, "{stop}");
    assert_eq!((stop["target"].as_str(), stop["target_label"].as_str()), (Some(person_id.as_str()), Some("sato")));
    assert_eq!(stop["ended"]["sessions"], 1, "{stop}");
    assert_eq!(stop["ended"]["logout_notices"], 1, "{stop}");
    assert!(!active(&server, kansa, &access).await);
    assert_eq!(userinfo_status(&server, &access).await, 401);
    let (status, body) = refresh(&server, zeimu, &refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let notices: Vec<String> = sqlx::query("SELECT client_id FROM logout_notices WHERE person_id = $1")
        .bind(&person_id)
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("client_id").unwrap())
        .collect();
    assert_eq!(notices, ["zeimu"]);
    // The right password no longer logs in.
    let refused = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "sato", PASSWORD).await;
    assert_eq!(refused.status(), 401);
    // One stop per person: a second one, by id this time, is a conflict.
    let (status, problem) = server
        .admin(Method::POST, STOPS, Some(json!({"kind": "person", "target": person_id, "reason": "二度目"})))
        .await;
    assert_eq!(status, 409, "{problem}");
    let (_, in_force) = server.admin(Method::GET, &format!("{STOPS}?active=true"), None).await;
    assert_eq!(in_force["items"].as_array().unwrap().len(), 1);

    // Lifted: the person logs in again; what the stop ended stays ended.
    let lift = format!("{STOPS}/{}/lift", stop["id"].as_str().unwrap());
    let (status, problem) = server.admin(Method::POST, &lift, Some(json!({"reason": ""}))).await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("reason")));
    let (status, lifted) = server.admin(Method::POST, &lift, Some(json!({"reason": "本人確認済み"}))).await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["lift_reason"], "本人確認済み");
    let (status, _) = server.admin(Method::POST, &lift, Some(json!({"reason": "もう一度"}))).await;
    assert_eq!(status, 409);
    let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "sato", PASSWORD).await;
    let fresh = redeem(&server, zeimu, ZEIMU_CB, login).await;
    assert!(active(&server, kansa, fresh["access_token"].as_str().unwrap()).await);
    assert!(!active(&server, kansa, &access).await);
    let (status, _) = refresh(&server, zeimu, &refresh_token).await;
    assert_eq!(status, 400);
    let (_, in_force) = server.admin(Method::GET, &format!("{STOPS}?active=true"), None).await;
    assert_eq!(in_force["items"], json!([]));

    // Audited with both reasons.
    let events = audited(&server, &format!("person:{person_id}")).await;
    let reason_of = |action: &str| {
        events.iter().find(|(a, _)| a == action).map(|(_, detail)| detail["reason"].clone()).unwrap_or_default()
    };
    assert_eq!(reason_of("emergency.stop"), "不正アクセスの疑い");
    assert_eq!(reason_of("emergency.lift"), "本人確認済み");
    server.stop().await;
}

async fn a_system_stop_refuses_the_system_and_lifting_gives_back_its_prior_state(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E7002", "suzuki", PASSWORD).await;
    let (zeimu_secret, kansa_secret) = two_systems(&server).await;
    let (zeimu, kansa) = (("zeimu", zeimu_secret.as_str()), ("kansa", kansa_secret.as_str()));
    let person_browser = browser();
    let login = log_in(&person_browser, &server, &authorize(&server, "zeimu", ZEIMU_CB), "suzuki", PASSWORD).await;
    let tokens = redeem(&server, zeimu, ZEIMU_CB, login).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(client_credentials(&server, zeimu.0, zeimu.1).await, 200);

    let (status, stop) = server
        .admin(Method::POST, STOPS, Some(json!({"kind": "system", "target": "zeimu", "reason": "改ざんの疑い"})))
        .await;
    assert_eq!(status, 201, "{stop}");
    assert_eq!(stop["target_label"], "税務システム");
    // Its tokens are inactive for everyone, and it is refused everywhere.
    assert!(!active(&server, kansa, &access).await);
    let own = server.http.post(format!("{}/introspect", server.public_url)).basic_auth("zeimu", Some(zeimu.1));
    assert_eq!(own.form(&[("token", &access)]).send().await.unwrap().status(), 401);
    assert_eq!(userinfo_status(&server, &access).await, 401);
    assert_eq!(client_credentials(&server, zeimu.0, zeimu.1).await, 401);
    let (status, body) = refresh(&server, zeimu, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let refused = person_browser.get(authorize(&server, "zeimu", ZEIMU_CB)).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let (_, client) = server.admin(Method::GET, "/api/v1/clients/zeimu", None).await;
    assert_eq!((client["status"].as_str(), &client["emergency_stopped"]), (Some("active"), &json!(true)));
    // The person's session is theirs: 監査 still signs them in.
    let sso = person_browser.get(authorize(&server, "kansa", KANSA_CB)).send().await.unwrap();
    redeem(&server, kansa, KANSA_CB, sso).await;

    // Lifted: the system works again, as it was; its old token stays ended.
    let lift = format!("{STOPS}/{}/lift", stop["id"].as_str().unwrap());
    let (status, _) = server.admin(Method::POST, &lift, Some(json!({"reason": "調査の結果、問題なし"}))).await;
    assert_eq!(status, 200);
    assert_eq!(client_credentials(&server, zeimu.0, zeimu.1).await, 200);
    assert!(!active(&server, kansa, &access).await);
    let (_, client) = server.admin(Method::GET, "/api/v1/clients/zeimu", None).await;
    assert_eq!((client["status"].as_str(), &client["emergency_stopped"]), (Some("active"), &json!(false)));

    // A system disabled before the stop is still disabled after it is lifted.
    let (status, _) = server.admin(Method::POST, "/api/v1/clients/kansa/disable", None).await;
    assert_eq!(status, 200);
    let (status, stop) = server
        .admin(Method::POST, STOPS, Some(json!({"kind": "system", "target": "kansa", "reason": "念のため"})))
        .await;
    assert_eq!(status, 201, "{stop}");
    let lift = format!("{STOPS}/{}/lift", stop["id"].as_str().unwrap());
    let (status, _) = server.admin(Method::POST, &lift, Some(json!({"reason": "解除"}))).await;
    assert_eq!(status, 200);
    let (_, client) = server.admin(Method::GET, "/api/v1/clients/kansa", None).await;
    assert_eq!((client["status"].as_str(), &client["emergency_stopped"]), (Some("disabled"), &json!(false)));
    assert_eq!(client_credentials(&server, kansa.0, kansa.1).await, 401);
    let actions: Vec<String> = audited(&server, "client:zeimu").await.into_iter().map(|(action, _)| action).collect();
    for expected in ["emergency.stop", "revoke", "emergency.lift"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} in {actions:?}");
    }
    server.stop().await;
}

/// The CLI stops a person on a running server (the stop is in the database: the server sees it
/// at the next request), lists and lifts it, and refuses an unknown target readably.
async fn the_cli_stops_a_person_on_a_running_server(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E7003", "tanabe", PASSWORD).await;
    let (zeimu_secret, kansa_secret) = two_systems(&server).await;
    let (zeimu, kansa) = (("zeimu", zeimu_secret.as_str()), ("kansa", kansa_secret.as_str()));
    let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "tanabe", PASSWORD).await;
    let access = redeem(&server, zeimu, ZEIMU_CB, login).await["access_token"].as_str().unwrap().to_owned();
    let dir = std::sync::Arc::new(temp_dir());
    let url = server.database_url.clone();
    let key = server.app.config.master_key.clone().unwrap();
    let run = move |args: Vec<String>| {
        let dir = dir.clone();
        let url = url.clone();
        let key = key.clone();
        async move {
            let output = tokio::task::spawn_blocking(move || {
                sekimori(&dir)
                    .args(args)
                    .env("SEKIMORI_DATABASE_URL", url)
                    .env("SEKIMORI_MASTER_KEY", key)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status.code(), stdout, stderr)
        }
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (code, stdout, stderr) = run(args(&["emergency-stop", "person", "nobody", "--reason", "x"])).await;
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stderr.contains("error: no such person"), "{stderr}");
    let (code, _, stderr) = run(args(&["emergency-stop", "person", "tanabe", "--reason", " "])).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--reason"), "{stderr}");
    assert!(active(&server, kansa, &access).await);

    let (code, stdout, stderr) = run(args(&["emergency-stop", "person", "tanabe", "--reason", "端末紛失の届出"])).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("stopped: person") && stdout.contains("(tanabe)"), "{stdout}");
    assert!(!active(&server, kansa, &access).await, "the running server sees it at once");
    let refused = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "tanabe", PASSWORD).await;
    assert_eq!(refused.status(), 401);
    let (code, _, stderr) = run(args(&["emergency-stop", "person", "tanabe", "--reason", "again"])).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("already stopped"), "{stderr}");

    let (code, listed, _) = run(args(&["emergency-stop", "list"])).await;
    assert_eq!(code, Some(0));
    assert!(listed.contains("端末紛失の届出") && listed.contains("by cli"), "{listed}");
    let stop_id = listed.split_whitespace().next().unwrap().to_owned();
    let (code, stdout, stderr) = run(args(&["emergency-stop", "lift", &stop_id, "--reason", "端末を回収"])).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("lifted"), "{stdout}");
    let (code, _, stderr) = run(args(&["emergency-stop", "lift", "no-such-stop", "--reason", "x"])).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no such emergency stop"), "{stderr}");
    let (code, _, stderr) = run(args(&["emergency-stop", "system", "no-such-system", "--reason", "x"])).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no such client"), "{stderr}");
    let (_, listed, _) = run(args(&["emergency-stop", "list"])).await;
    assert!(listed.contains("no emergency stops in force"), "{listed}");
    let (_, listed, _) = run(args(&["emergency-stop", "list", "--all"])).await;
    assert!(listed.contains("端末を回収"), "{listed}");
    let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "tanabe", PASSWORD).await;
    assert_eq!(login.status(), 303);
    server.stop().await;
}

/// Names a security manager the way the console will: a live grant of the role
/// `security_manager` on the console system, made by the manager of the section owning it.
/// Returns the security manager's person id.
async fn security_manager(server: &TestServer) -> String {
    // The security manager's role is Sekimori's own administrative role, granted for a time.
    let security = server.add_person("E7101", "tokatsu", "kanrisha-no-kagi-hakobune-77").await;
    let end = sekimori::directory::types::format_date(
        sekimori::directory::today_in_japan(server.app.clock.now()) + time::Duration::days(30),
    );
    let (status, body) = server
        .admin(
            Method::POST,
            "/api/v1/admin-roles/grants",
            Some(json!({"person_id": security, "role": "security_manager", "end_date": end, "reason": "統括セキュリティ責任者に指名"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let today = sekimori::directory::today_in_japan(server.app.clock.now());
    let managers = sekimori::emergency::alerts::security_managers(server.app.store.pool(), today).await.unwrap();
    assert_eq!(managers, std::slice::from_ref(&security));
    security
}

/// Three lockouts of one account within a day tell the security manager once; a fourth, part
/// of the same streak, does not tell them again.
async fn repeated_lockouts_alert_the_security_manager_once(db: Db) {
    let server = TestServer::start(db).await;
    let security = security_manager(&server).await;
    server.add_person("E7004", "yamada", PASSWORD).await;
    two_systems(&server).await;
    let attempt = || {
        let server = &server;
        async move {
            log_in(&browser(), server, &authorize(server, "zeimu", ZEIMU_CB), "yamada", "wrong-password-guess")
                .await
                .status()
        }
    };
    let alerts = || notices(&server, "alert_account_locked");
    // The first lockout (5 failures), then two more (one failure each once the lock is over).
    for _ in 0..5 {
        assert_eq!(attempt().await, 401);
    }
    server.app.clock.advance(31);
    attempt().await;
    assert!(alerts().await.is_empty(), "two lockouts are not yet a streak");
    server.app.clock.advance(61);
    attempt().await;
    let told = alerts().await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, security);
    assert!(told[0].1.contains("yamada") && told[0].1.contains("3"), "{}", told[0].1);
    // A fourth lockout continues the same streak: nobody is told again.
    server.app.clock.advance(121);
    attempt().await;
    assert_eq!(alerts().await.len(), 1);
    assert_eq!(server.count("audit_events WHERE action = 'alert.abnormal_access'").await, 1);
    server.stop().await;
}

/// The (person, body) of every notice of `kind`.
async fn notices(server: &TestServer, kind: &str) -> Vec<(String, String)> {
    sqlx::query("SELECT person_id, body FROM notifications WHERE kind = $1")
        .bind(kind)
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| (row.try_get::<String, _>("person_id").unwrap(), row.try_get::<String, _>("body").unwrap()))
        .collect()
}

/// A source address throttled again and again (here twice, in windows of a minute) tells the
/// security manager once.
async fn a_source_throttled_again_and_again_alerts_the_security_manager(db: Db) {
    let server = TestServer::start_configured(db, |config| {
        config.password.source_max_failures = 2;
        config.password.source_window_seconds = 60;
        config.alerts.source_throttles = 2;
    })
    .await;
    let security = security_manager(&server).await;
    two_systems(&server).await;
    let attempt = |login_id: &'static str| {
        let server = &server;
        async move {
            log_in(&browser(), server, &authorize(server, "zeimu", ZEIMU_CB), login_id, "wrong-password-guess")
                .await
                .status()
        }
    };
    // Two failures (any login IDs) use up the window: the source is throttled once.
    assert_eq!(attempt("ito").await, 401);
    assert_eq!(attempt("kato").await, 401);
    assert_eq!(attempt("sasaki").await, 429);
    assert!(notices(&server, "alert_source_throttled").await.is_empty(), "once is not yet a streak");
    server.app.clock.advance(61);
    attempt("ito").await;
    attempt("kato").await;
    let told = notices(&server, "alert_source_throttled").await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, security);
    assert!(told[0].1.contains("127.0.0.1"), "{}", told[0].1);
    // More failures in the same window continue the same throttling: nobody is told again.
    attempt("sasaki").await;
    assert_eq!(notices(&server, "alert_source_throttled").await.len(), 1);
    server.stop().await;
}

on_both_databases!(
    a_person_stop_ends_everything_at_once_and_lifting_lets_them_log_in_again,
    a_system_stop_refuses_the_system_and_lifting_gives_back_its_prior_state,
    the_cli_stops_a_person_on_a_running_server,
    repeated_lockouts_alert_the_security_manager_once,
    a_source_throttled_again_and_again_alerts_the_security_manager,
);
