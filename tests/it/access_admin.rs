//! The administrator's side of need-based access through the admin API (right `access:admin`):
//! roles declared with their exclusions and retired, a system that needs a role, requests and
//! grants listed, a grant revoked at once through the revocation path, deputies named and
//! ended, reviews opened and listed — and hostile input answered with 4xx problem documents,
//! never a 500, on both databases.

use reqwest::Method;
use sekimori::access::catalog;
use sekimori::access::requests::{self, NewRequest};
use sekimori::directory::types::format_date;
use serde_json::{json, Value};
use sqlx::Row;

use crate::common::{Db, TestServer};

const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

/// A call to the admin API with `token` and an optional JSON body.
async fn call(server: &TestServer, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server.http.request(method, format!("{}{path}", server.admin_url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{path}: {body}");
    }
    (status, body)
}

async fn admin(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(server, &server.admin_token, method, path, body).await
}

fn day(server: &TestServer, days: i64) -> String {
    let today = sekimori::directory::today_in_japan(server.app.clock.now());
    format_date(today.checked_add(time::Duration::days(days)).unwrap())
}

/// The org: 市民部 > 市民課 (managed by 課長 E-100), a clerk E-200 in 市民課, and an outsider
/// E-300 with no unit; the system `shimin`, owned by 市民課.
struct World {
    department: String,
    section: String,
    manager: String,
    clerk: String,
    outsider: String,
}

async fn world(server: &TestServer) -> World {
    let post = |path: &'static str, body: Value| async move {
        let (status, made) = admin(server, Method::POST, path, Some(body)).await;
        assert_eq!(status, 201, "{path}: {made}");
        made["id"].as_str().unwrap().to_owned()
    };
    let department =
        post("/api/v1/org-units", json!({"code": "SHIMINBU", "name": "市民部", "level": "department"})).await;
    let section = post(
        "/api/v1/org-units",
        json!({"code": "SHIMIN", "name": "市民課", "level": "section", "parent_id": department}),
    )
    .await;
    let person = |number: &str, unit: Option<&str>| {
        json!({
            "employee_number": number, "family_name": "市民", "given_name": "太郎",
            "family_name_kana": "シミン", "given_name_kana": "タロウ", "kind": "regular",
            "org_unit_id": unit, "start_date": "2020-04-01"
        })
    };
    let manager = post("/api/v1/people", person("E-100", Some(&section))).await;
    let clerk = post("/api/v1/people", person("E-200", Some(&section))).await;
    let outsider = post("/api/v1/people", person("E-300", None)).await;
    let (status, problem) = admin(
        server,
        Method::PUT,
        &format!("/api/v1/org-units/{section}/manager"),
        Some(json!({"person_id": manager})),
    )
    .await;
    assert_eq!(status, 204, "{problem}");
    server
        .add_client(json!({
            "client_id": "shimin", "name": "住民窓口システム", "client_type": "confidential",
            "redirect_uris": ["https://shimin.city.example.lg.jp/cb"], "owner_org_unit_id": section
        }))
        .await;
    World { department, section, manager, clerk, outsider }
}

async fn declare(server: &TestServer, name: &str, spec: Value) -> (u16, Value) {
    admin(server, Method::PUT, &format!("/api/v1/clients/shimin/roles/{name}"), Some(spec)).await
}

/// A grant of `role` to `person`, as the domain makes it: the person asks, the manager approves.
async fn granted(server: &TestServer, world: &World, person: &str, role: &str) -> (String, String) {
    let now = server.app.clock.now();
    let mut tx = server.app.store.begin().await.unwrap();
    let request = requests::submit(
        &mut tx,
        &server.app.config.access,
        now,
        person,
        NewRequest {
            client_id: "shimin".into(), role: role.into(), reason: "窓口業務のため".into(), end_date: None
        },
    )
    .await
    .unwrap();
    let decided = requests::decide(&mut tx, now, &world.manager, &request.id, true, "").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(decided.status, "approved");
    (request.id, decided.grant_id.unwrap())
}

/// The audit events of `action`, as (actor, target).
async fn audited(server: &TestServer, action: &str) -> Vec<(String, String)> {
    // Not the console's roles, which Sekimori declares itself at start.
    sqlx::query("SELECT actor, target FROM audit_events WHERE action = $1 AND target <> 'client:sekimori-console' ORDER BY seq")
        .bind(action)
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get("actor").unwrap(), r.try_get("target").unwrap()))
        .collect()
}

async fn a_token_without_access_admin_is_refused_everywhere(db: Db) {
    let server = TestServer::start(db).await;
    world(&server).await;
    let (status, token) = admin(
        &server,
        Method::POST,
        "/api/v1/api-tokens",
        Some(json!({"name": "窓口", "scopes": ["clients:read", "clients:write", "directory:write"]})),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let other = token["token"].as_str().unwrap();
    let role = json!({"label": "閲覧", "classification": "general"});
    for (method, path, body) in [
        (Method::GET, "/api/v1/clients/shimin/roles".to_owned(), None),
        (Method::PUT, "/api/v1/clients/shimin/roles/viewer".to_owned(), Some(role.clone())),
        (Method::DELETE, "/api/v1/clients/shimin/roles/viewer".to_owned(), None),
        (Method::PUT, "/api/v1/clients/shimin/requires-role".to_owned(), Some(json!({"requires_role": true}))),
        (Method::GET, "/api/v1/access/requests".to_owned(), None),
        (Method::GET, format!("/api/v1/access/requests/{UNKNOWN}"), None),
        (Method::GET, "/api/v1/access/grants".to_owned(), None),
        (Method::GET, format!("/api/v1/access/grants/{UNKNOWN}"), None),
        (Method::POST, format!("/api/v1/access/grants/{UNKNOWN}/revoke"), Some(json!({"reason": "x"}))),
        (Method::GET, "/api/v1/access/deputies".to_owned(), None),
        (Method::POST, "/api/v1/access/deputies".to_owned(), Some(json!({}))),
        (Method::POST, format!("/api/v1/access/deputies/{UNKNOWN}/revoke"), None),
        (Method::GET, "/api/v1/access/reviews".to_owned(), None),
        (Method::POST, "/api/v1/access/reviews".to_owned(), Some(json!({"client_id": "shimin"}))),
        (Method::GET, format!("/api/v1/access/reviews/{UNKNOWN}"), None),
    ] {
        let (status, problem) = call(&server, other, method.clone(), &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("access:admin"), "{problem}");
    }
    // Nothing was declared or changed.
    assert_eq!(server.count_outside_console("system_roles").await, 0);
    // The first administrator's token holds the right; a token made with it can be handed on.
    let (status, token) = admin(
        &server,
        Method::POST,
        "/api/v1/api-tokens",
        Some(json!({"name": "アクセス管理", "scopes": ["access:admin"]})),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let (status, catalog) =
        call(&server, token["token"].as_str().unwrap(), Method::GET, "/api/v1/clients/shimin/roles", None).await;
    assert_eq!(status, 200, "{catalog}");
    server.stop().await;
}

async fn roles_are_declared_with_their_exclusions_and_retired(db: Db) {
    let server = TestServer::start(db).await;
    let world = world(&server).await;
    let (status, catalog) = admin(&server, Method::GET, "/api/v1/clients/shimin/roles", None).await;
    assert_eq!((status, catalog), (200, json!({"client_id": "shimin", "requires_role": false, "items": []})));

    let (status, viewer) = declare(&server, "viewer", json!({"label": " 閲覧 ", "classification": "general"})).await;
    assert_eq!(status, 201, "{viewer}");
    assert_eq!(viewer["label"], "閲覧", "trimmed: {viewer}");
    assert_eq!((viewer["retired"].as_bool(), viewer["label_en"].is_null()), (Some(false), true));
    let (status, editor) = declare(
        &server,
        "editor",
        json!({"label": "更新", "label_en": "Editor", "classification": "secret", "max_duration_days": 365,
               "review_interval_days": 90, "incompatible_with": ["viewer"]}),
    )
    .await;
    assert_eq!(status, 201, "{editor}");
    assert_eq!(editor["incompatible_with"], json!(["viewer"]));
    assert_eq!((editor["max_duration_days"].as_i64(), editor["review_interval_days"].as_i64()), (Some(365), Some(90)));
    // The exclusion goes both ways.
    let (_, catalog) = admin(&server, Method::GET, "/api/v1/clients/shimin/roles", None).await;
    let names: Vec<(&str, &Value)> = catalog["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), &r["incompatible_with"]))
        .collect();
    assert_eq!(names, vec![("editor", &json!(["viewer"])), ("viewer", &json!(["editor"]))]);

    // Refused: unknown roles to exclude, itself, twice; names, labels and days outside their rules.
    let spec = |extra: Value| {
        let mut body = json!({"label": "監査", "classification": "general"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (name, body, field) in [
        ("auditor", spec(json!({"incompatible_with": ["nobody"]})), Some("incompatible_with")),
        ("auditor", spec(json!({"incompatible_with": ["auditor"]})), Some("incompatible_with")),
        ("auditor", spec(json!({"incompatible_with": ["viewer", "viewer"]})), Some("incompatible_with")),
        ("auditor", spec(json!({"incompatible_with": ["vie\u{0}wer"]})), Some("incompatible_with")),
        ("auditor", spec(json!({"incompatible_with": ["x".repeat(100_000)]})), Some("incompatible_with")),
        ("auditor", spec(json!({"incompatible_with": null})), None),
        ("bad%20name", spec(json!({})), Some("name")),
        ("-lead", spec(json!({})), Some("name")),
        (&"r".repeat(65), spec(json!({})), Some("name")),
        ("nul%00", spec(json!({})), Some("name")),
        ("auditor", spec(json!({"label": ""})), Some("label")),
        ("auditor", spec(json!({"label": "   "})), Some("label")),
        ("auditor", spec(json!({"label": "監\u{7}査"})), Some("label")),
        ("auditor", spec(json!({"label": "監".repeat(101)})), Some("label")),
        ("auditor", spec(json!({"label": format!(" {} ", "監".repeat(100))})), Some("label")),
        ("auditor", spec(json!({"label": "x".repeat(900_000)})), Some("label")),
        ("auditor", spec(json!({"label_en": "\u{0}"})), Some("label_en")),
        ("auditor", spec(json!({"max_duration_days": 0})), Some("max_duration_days")),
        ("auditor", spec(json!({"max_duration_days": -30})), Some("max_duration_days")),
        ("auditor", spec(json!({"max_duration_days": 3651})), Some("max_duration_days")),
        ("auditor", spec(json!({"review_interval_days": -1})), Some("review_interval_days")),
        ("auditor", spec(json!({"max_duration_days": 1.5})), None),
        ("auditor", spec(json!({"max_duration_days": 1e300})), None),
        ("auditor", spec(json!({"classification": "top_secret"})), None),
        ("auditor", spec(json!({"owner": "x"})), None),
        ("auditor", json!({"label": "監査"}), None),
    ] {
        let (status, problem) = declare(&server, name, body.clone()).await;
        assert_eq!((status, problem["field"].as_str()), (422, field), "{name} {body:.200}: {problem}");
    }
    let (status, _) = declare(&server, "auditor", spec(json!({"max_duration_days": 3650}))).await;
    assert_eq!(status, 201);
    // The domain itself, as the pages call it: a name twice is stored once, a NUL is refused
    // before it reaches the database.
    let declared = |others: &[&str]| {
        let app = server.app.clone();
        let spec = catalog::RoleSpec {
            label: "監査".into(),
            label_en: None,
            classification: sekimori::access::Classification::General,
            max_duration_days: None,
            review_interval_days: None,
            incompatible_with: others.iter().map(|o| o.to_string()).collect(),
        };
        async move {
            let mut tx = app.store.begin().await.unwrap();
            let declared = catalog::declare_role(
                &mut tx,
                &sekimori::audit::Actor::Cli,
                app.clock.now(),
                "shimin",
                "auditor",
                spec,
            )
            .await;
            tx.commit().await.unwrap();
            declared
        }
    };
    assert_eq!(declared(&["viewer", "viewer"]).await.unwrap().incompatible_with, vec!["viewer".to_owned()]);
    match declared(&["vie\u{0}wer"]).await {
        Err(sekimori::access::AccessError::Invalid(invalid)) => assert_eq!(invalid.field, "incompatible_with"),
        other => panic!("{other:?}"),
    }
    assert_eq!(declared(&[]).await.unwrap().incompatible_with, Vec::<String>::new());
    // A system nobody registered, or a client_id no system could have.
    for client in ["nobody", "%00", "NO", &"x".repeat(200)] {
        let path = format!("/api/v1/clients/{client}/roles/viewer");
        let (status, problem) = admin(&server, Method::PUT, &path, Some(spec(json!({})))).await;
        assert_eq!(status, 404, "{path}: {problem}");
        let (status, _) = admin(&server, Method::GET, &format!("/api/v1/clients/{client}/roles"), None).await;
        assert_eq!(status, 404, "{path}");
    }
    // Not JSON, or not sent as JSON.
    let response = server
        .http
        .put(format!("{}/api/v1/clients/shimin/roles/viewer", server.admin_url))
        .bearer_auth(&server.admin_token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = server
        .http
        .put(format!("{}/api/v1/clients/shimin/roles/viewer", server.admin_url))
        .bearer_auth(&server.admin_token)
        .body("label=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    // Declared again: the whole of it replaced, the exclusion gone from both sides.
    let (status, viewer) = declare(&server, "viewer", json!({"label": "閲覧のみ", "classification": "general"})).await;
    assert_eq!(status, 200, "{viewer}");
    assert_eq!((viewer["label"].as_str(), &viewer["incompatible_with"]), (Some("閲覧のみ"), &json!([])));
    let (_, catalog) = admin(&server, Method::GET, "/api/v1/clients/shimin/roles", None).await;
    assert_eq!(catalog["items"][1]["name"], "editor");
    assert_eq!(catalog["items"][1]["incompatible_with"], json!([]), "{catalog}");
    let events = audited(&server, "access.role_redeclared").await;
    assert_eq!(events.len(), 3, "two through the domain above, one through the API: {events:?}");
    assert!(events[2].0.starts_with("api_token:"), "{events:?}");
    assert_eq!(events[2].1, "client:shimin");
    assert_eq!(audited(&server, "access.role_declared").await.len(), 3);

    // The system needs a role from now on.
    let rr = "/api/v1/clients/shimin/requires-role";
    let (status, catalog) = admin(&server, Method::PUT, rr, Some(json!({"requires_role": true}))).await;
    assert_eq!((status, &catalog["requires_role"]), (200, &json!(true)), "{catalog}");
    assert_eq!(catalog["items"].as_array().unwrap().len(), 3);
    for bad in [
        json!({}),
        json!({"requires_role": "yes"}),
        json!({"requires_role": null}),
        json!({"requires_role": true, "x": 1}),
    ] {
        let (status, problem) = admin(&server, Method::PUT, rr, Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {problem}");
    }
    let (status, _) =
        admin(&server, Method::PUT, "/api/v1/clients/nobody/requires-role", Some(json!({"requires_role": true}))).await;
    assert_eq!(status, 404);
    let system = sekimori::access::catalog::system(server.app.store.pool(), "shimin").await.unwrap().unwrap();
    assert!(system.requires_role);
    let events = audited(&server, "access.requires_role").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, "client:shimin");

    // Retired: every grant of it ends now; the role stays listed, marked retired.
    let (_, grant_id) = granted(&server, &world, &world.clerk, "editor").await;
    let (status, retired) = admin(&server, Method::DELETE, "/api/v1/clients/shimin/roles/editor", None).await;
    assert_eq!(status, 200, "{retired}");
    assert_eq!((retired["grants_ended"].as_u64(), &retired["role"]["retired"]), (Some(1), &json!(true)));
    let (status, grant) = admin(&server, Method::GET, &format!("/api/v1/access/grants/{grant_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(grant["end_reason"], "role_retired", "{grant}");
    let (status, problem) = admin(&server, Method::DELETE, "/api/v1/clients/shimin/roles/editor", None).await;
    assert_eq!(status, 409, "{problem}");
    for path in [
        "/api/v1/clients/shimin/roles/nobody",
        "/api/v1/clients/nobody/roles/editor",
        "/api/v1/clients/shimin/roles/%00",
    ] {
        let (status, problem) = admin(&server, Method::DELETE, path, None).await;
        assert_eq!(status, 404, "{path}: {problem}");
    }
    // Nobody can ask for it now; declared again it is in use again, and grants nothing back.
    let mut tx = server.app.store.begin().await.unwrap();
    let refused = requests::submit(
        &mut tx,
        &server.app.config.access,
        server.app.clock.now(),
        &world.clerk,
        NewRequest { client_id: "shimin".into(), role: "editor".into(), reason: "再度".into(), end_date: None },
    )
    .await;
    assert!(refused.is_err());
    drop(tx);
    let (status, editor) = declare(&server, "editor", json!({"label": "更新", "classification": "secret"})).await;
    assert_eq!((status, &editor["retired"]), (200, &json!(false)), "{editor}");
    let (_, live) = admin(&server, Method::GET, "/api/v1/access/grants?client_id=shimin", None).await;
    assert_eq!(live["items"], json!([]));
    server.stop().await;
}

async fn requests_and_grants_are_listed_and_a_grant_revoked_at_once(db: Db) {
    let server = TestServer::start(db).await;
    let world = world(&server).await;
    let (status, _) = declare(&server, "viewer", json!({"label": "閲覧", "classification": "general"})).await;
    assert_eq!(status, 201);
    let (request_id, grant_id) = granted(&server, &world, &world.clerk, "viewer").await;

    // The request, with its one step decided by the manager.
    let (status, list) =
        admin(&server, Method::GET, &format!("/api/v1/access/requests?person_id={}", world.clerk), None).await;
    assert_eq!(status, 200, "{list}");
    let request = &list["items"][0];
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!((request["id"].as_str(), request["status"].as_str()), (Some(request_id.as_str()), Some("approved")));
    assert_eq!(request["grant_id"].as_str(), Some(grant_id.as_str()));
    assert_eq!(request["steps"][0]["step"], "owner");
    assert_eq!(request["steps"][0]["decided_by"].as_str(), Some(world.manager.as_str()));
    assert_eq!(request["steps"][0]["acting_as"], "manager");
    let (status, one) = admin(&server, Method::GET, &format!("/api/v1/access/requests/{request_id}"), None).await;
    assert_eq!((status, &one), (200, request));
    for query in [
        "status=pending",
        "client_id=other",
        &format!("person_id={}", world.outsider),
        "offset=1",
        "limit=1&offset=5000000000",
    ] {
        let (status, list) = admin(&server, Method::GET, &format!("/api/v1/access/requests?{query}"), None).await;
        assert_eq!((status, &list["items"]), (200, &json!([])), "{query}");
    }
    let (status, list) =
        admin(&server, Method::GET, "/api/v1/access/requests?status=approved&client_id=shimin&limit=1", None).await;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 1));
    for (query, field) in [
        ("status=granted", Some("status")),
        ("person_id=x", Some("person_id")),
        ("person_id=%00", Some("person_id")),
        ("client_id=SHIMIN", Some("client_id")),
        ("client_id=%00%00%00", Some("client_id")),
        ("limit=0", Some("limit")),
        ("limit=501", Some("limit")),
        ("offset=-1", Some("offset")),
        ("limit=ten", None),
        ("offset=99999999999999999999", None),
        ("page=2", None),
    ] {
        let (status, problem) = admin(&server, Method::GET, &format!("/api/v1/access/requests?{query}"), None).await;
        assert_eq!((status, problem["field"].as_str()), (400, field), "{query}: {problem}");
    }
    for id in [UNKNOWN, "x", "%00", &"0".repeat(5000)] {
        let (status, problem) = admin(&server, Method::GET, &format!("/api/v1/access/requests/{id}"), None).await;
        assert_eq!(status, 404, "{id:.40}: {problem}");
    }

    // The grant.
    let (status, list) = admin(&server, Method::GET, "/api/v1/access/grants?client_id=shimin", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let grant = &list["items"][0];
    assert_eq!((grant["id"].as_str(), grant["origin"].as_str()), (Some(grant_id.as_str()), Some("request")));
    assert_eq!(grant["granted_by"].as_str(), Some(format!("person:{}", world.manager).as_str()));
    assert_eq!(grant["ended_at"], Value::Null);
    let (status, one) = admin(&server, Method::GET, &format!("/api/v1/access/grants/{grant_id}"), None).await;
    assert_eq!((status, &one), (200, grant));
    let (_, owned) =
        admin(&server, Method::GET, &format!("/api/v1/access/grants?owner_org_unit_id={}", world.section), None).await;
    assert_eq!(owned["items"].as_array().unwrap().len(), 1, "{owned}");
    let (_, owned) =
        admin(&server, Method::GET, &format!("/api/v1/access/grants?owner_org_unit_id={}", world.department), None)
            .await;
    assert_eq!(owned["items"], json!([]), "only systems the unit itself owns");
    for (query, field) in [
        ("owner_org_unit_id=SHIMIN", Some("owner_org_unit_id")),
        ("person_id=00000000-0000-4000-8000-00000000000G", Some("person_id")),
        ("include_ended=yes", None),
        ("limit=-5", Some("limit")),
    ] {
        let (status, problem) = admin(&server, Method::GET, &format!("/api/v1/access/grants?{query}"), None).await;
        assert_eq!((status, problem["field"].as_str()), (400, field), "{query}: {problem}");
    }

    // Revoked: bad reasons and unknown grants refused first, nothing ended by them.
    let revoke = format!("/api/v1/access/grants/{grant_id}/revoke");
    for (body, field) in [
        (json!({"reason": ""}), Some("reason")),
        (json!({"reason": "  \n "}), Some("reason")),
        (json!({"reason": "不\u{0}正"}), Some("reason")),
        (json!({"reason": "\u{1b}[31m"}), Some("reason")),
        (json!({"reason": "x".repeat(1001)}), Some("reason")),
        (json!({"reason": format!(" {} ", "x".repeat(1000))}), Some("reason")),
        (json!({}), None),
        (json!({"reason": 1}), None),
        (json!({"reason": "x", "notify": false}), None),
    ] {
        let (status, problem) = admin(&server, Method::POST, &revoke, Some(body.clone())).await;
        assert_eq!((status, problem["field"].as_str()), (422, field), "{body:.80}: {problem}");
    }
    for id in [UNKNOWN, "not-a-grant", "%00"] {
        let (status, problem) = admin(
            &server,
            Method::POST,
            &format!("/api/v1/access/grants/{id}/revoke"),
            Some(json!({"reason": "異動"})),
        )
        .await;
        assert_eq!(status, 404, "{id}: {problem}");
    }
    let (status, ended) =
        admin(&server, Method::POST, &revoke, Some(json!({"reason": " 不要になった\n業務終了 "}))).await;
    assert_eq!(status, 200, "{ended}");
    assert!(ended["ended_at"].is_i64(), "{ended}");
    assert_eq!(ended["end_reason"], "不要になった\n業務終了");
    let (status, problem) = admin(&server, Method::POST, &revoke, Some(json!({"reason": "二度目"}))).await;
    assert_eq!(status, 409, "{problem}");
    // Through the one revocation path, recorded with the API token as the actor; the person told.
    let events = audited(&server, "revoke").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].0.starts_with("api_token:"), "{events:?}");
    assert_eq!(events[0].1, format!("access_grant:{grant_id}"));
    let told: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE person_id = $1 AND kind = 'grant_ended'")
            .bind(&world.clerk)
            .fetch_one(server.app.store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(told, 1);
    // No longer live; still there with include_ended.
    let (_, live) = admin(&server, Method::GET, "/api/v1/access/grants", None).await;
    assert_eq!(live["items"], json!([]));
    let (_, all) =
        admin(&server, Method::GET, "/api/v1/access/grants?include_ended=true&limit=500&offset=0", None).await;
    assert_eq!(all["items"][0]["id"].as_str(), Some(grant_id.as_str()), "{all}");
    // Asked for again, it can be held again.
    granted(&server, &world, &world.clerk, "viewer").await;
    let (_, live) =
        admin(&server, Method::GET, &format!("/api/v1/access/grants?person_id={}", world.clerk), None).await;
    assert_eq!(live["items"].as_array().unwrap().len(), 1);
    server.stop().await;
}

async fn deputies_are_named_listed_and_ended(db: Db) {
    let server = TestServer::start(db).await;
    let world = world(&server).await;
    let d = "/api/v1/access/deputies";
    let new = |extra: Value| {
        let mut body = json!({
            "org_unit_id": world.section, "deputy_person_id": world.clerk,
            "valid_from": day(&server, 0), "valid_until": day(&server, 7)
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (new(json!({"valid_from": "2026-02-30"})), Some("valid_from")),
        (new(json!({"valid_until": "2026-13-01"})), Some("valid_until")),
        (new(json!({"valid_from": format!(" {}", day(&server, 0))})), Some("valid_from")),
        (new(json!({"valid_from": "-2026-01-01"})), Some("valid_from")),
        (new(json!({"valid_from": "+99999-01-01"})), Some("valid_from")),
        (new(json!({"valid_from": day(&server, 3), "valid_until": day(&server, 2)})), Some("valid_until")),
        (new(json!({"valid_from": day(&server, -10), "valid_until": day(&server, -1)})), Some("valid_until")),
        (new(json!({"valid_from": day(&server, 0), "valid_until": day(&server, 366)})), Some("valid_until")),
        (new(json!({"valid_from": "0001-01-01"})), Some("valid_until")),
        (new(json!({"deputy_person_id": world.manager})), Some("deputy_person_id")),
        (new(json!({"deputy_person_id": UNKNOWN})), Some("deputy_person_id")),
        (new(json!({"deputy_person_id": "\u{0}"})), Some("deputy_person_id")),
        (new(json!({"org_unit_id": UNKNOWN})), Some("org_unit_id")),
        (new(json!({"org_unit_id": "x".repeat(10_000)})), Some("org_unit_id")),
        (new(json!({"valid_from": null})), None),
        (new(json!({"by_manager": world.manager})), None),
        (json!({"org_unit_id": world.section}), None),
    ] {
        let (status, problem) = admin(&server, Method::POST, d, Some(body.clone())).await;
        assert_eq!((status, problem["field"].as_str()), (422, field), "{body:.200}: {problem}");
    }
    assert_eq!(server.count("deputies").await, 0);
    let (status, deputy) = admin(&server, Method::POST, d, Some(new(json!({})))).await;
    assert_eq!(status, 201, "{deputy}");
    assert_eq!(deputy["deputy_person_id"].as_str(), Some(world.clerk.as_str()));
    assert!(deputy["created_by"].as_str().unwrap().starts_with("api_token:"), "{deputy}");
    assert_eq!(deputy["revoked_at"], Value::Null);
    let id = deputy["id"].as_str().unwrap().to_owned();
    // The deputy decides for the unit now.
    let mut tx = server.app.store.begin().await.unwrap();
    let capacity = sekimori::access::org::capacity(
        &mut tx,
        &world.clerk,
        &world.section,
        sekimori::directory::today_in_japan(server.app.clock.now()),
    )
    .await
    .unwrap();
    assert_eq!(capacity, Some(sekimori::access::org::Capacity::Deputy));
    drop(tx);
    // Listed, all or by unit.
    let (status, list) = admin(&server, Method::GET, d, None).await;
    assert_eq!((status, &list["items"]), (200, &json!([deputy])));
    let (_, list) = admin(&server, Method::GET, &format!("{d}?org_unit_id={}", world.section), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, list) = admin(&server, Method::GET, &format!("{d}?org_unit_id={}", world.department), None).await;
    assert_eq!(list["items"], json!([]));
    for query in ["org_unit_id=x", "org_unit_id=%00", "org_unit_id=", "unit=1"] {
        let (status, problem) = admin(&server, Method::GET, &format!("{d}?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {problem}");
    }
    // Ended now, once.
    let revoke = format!("{d}/{id}/revoke");
    let (status, ended) = admin(&server, Method::POST, &revoke, None).await;
    assert_eq!(status, 200, "{ended}");
    assert!(ended["revoked_at"].is_i64());
    let (status, problem) = admin(&server, Method::POST, &revoke, None).await;
    assert_eq!(status, 409, "{problem}");
    for id in [UNKNOWN, "x", "%00"] {
        let (status, problem) = admin(&server, Method::POST, &format!("{d}/{id}/revoke"), None).await;
        assert_eq!(status, 404, "{id}: {problem}");
    }
    let events = audited(&server, "access.deputy_revoked").await;
    assert_eq!(events, vec![(events[0].0.clone(), format!("org_unit:{}", world.section))]);
    assert!(events[0].0.starts_with("api_token:"));
    // A person who has left cannot be named.
    sqlx::query("UPDATE people SET status = 'retired' WHERE id = $1")
        .bind(&world.outsider)
        .execute(server.app.store.pool())
        .await
        .unwrap();
    let (status, problem) =
        admin(&server, Method::POST, d, Some(new(json!({"deputy_person_id": world.outsider})))).await;
    assert_eq!(status, 409, "{problem}");
    server.stop().await;
}

async fn reviews_are_opened_and_listed(db: Db) {
    let server = TestServer::start(db).await;
    let world = world(&server).await;
    declare(&server, "viewer", json!({"label": "閲覧", "classification": "general"})).await;
    let (_, grant_id) = granted(&server, &world, &world.clerk, "viewer").await;
    let r = "/api/v1/access/reviews";
    for (body, field) in [
        (json!({}), Some("client_id")),
        (json!({"client_id": null, "org_unit_id": null}), Some("client_id")),
        (json!({"client_id": "shimin", "org_unit_id": world.section}), Some("client_id")),
        (json!({"client_id": "nobody"}), Some("client_id")),
        (json!({"client_id": "\u{0}\u{0}\u{0}"}), Some("client_id")),
        (json!({"org_unit_id": UNKNOWN}), Some("org_unit_id")),
        (json!({"org_unit_id": "SHIMIN"}), Some("org_unit_id")),
        (json!({"client_id": "shimin", "deadline": day(&server, -1)}), Some("deadline")),
        (json!({"client_id": "shimin", "deadline": day(&server, 367)}), Some("deadline")),
        (json!({"client_id": "shimin", "deadline": "2026-02-30"}), Some("deadline")),
        (json!({"client_id": "shimin", "deadline": "tomorrow"}), Some("deadline")),
        (json!({"client_id": "shimin", "deadline": 20270101}), None),
        (json!({"client_id": "shimin", "open": true}), None),
    ] {
        let (status, problem) = admin(&server, Method::POST, r, Some(body.clone())).await;
        assert_eq!((status, problem["field"].as_str()), (422, field), "{body}: {problem}");
    }
    assert_eq!(server.count("access_reviews").await, 0);
    let (status, review) =
        admin(&server, Method::POST, r, Some(json!({"client_id": "shimin", "deadline": day(&server, 14)}))).await;
    assert_eq!(status, 201, "{review}");
    assert_eq!(
        (review["scope_name"].as_str(), review["deadline"].as_str()),
        (Some("住民窓口システム"), Some(day(&server, 14).as_str()))
    );
    assert_eq!(review["deciding_org_unit_id"].as_str(), Some(world.section.as_str()));
    assert_eq!(review["items"][0]["grant"]["id"].as_str(), Some(grant_id.as_str()));
    assert_eq!(review["items"][0]["decision"], Value::Null);
    assert!(review["opened_by"].as_str().unwrap().starts_with("api_token:"));
    let id = review["id"].as_str().unwrap().to_owned();
    // One open review per scope.
    let (status, problem) = admin(&server, Method::POST, r, Some(json!({"client_id": "shimin"}))).await;
    assert_eq!(status, 409, "{problem}");
    // A section's review, with the default deadline.
    let (status, by_unit) = admin(&server, Method::POST, r, Some(json!({"org_unit_id": world.section}))).await;
    assert_eq!(status, 201, "{by_unit}");
    assert_eq!(by_unit["deadline"].as_str(), Some(day(&server, 14).as_str()));
    // Listed (newest first), open ones only, one by one.
    let (status, list) = admin(&server, Method::GET, r, None).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["items"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()));
    let (status, open) = admin(&server, Method::GET, &format!("{r}?open_only=true"), None).await;
    assert_eq!((status, open["items"].as_array().unwrap().len()), (200, 2));
    let (status, one) = admin(&server, Method::GET, &format!("{r}/{id}"), None).await;
    assert_eq!((status, &one), (200, &review));
    for query in ["open_only=maybe", "status=open"] {
        let (status, _) = admin(&server, Method::GET, &format!("{r}?{query}"), None).await;
        assert_eq!(status, 400, "{query}");
    }
    for id in [UNKNOWN, "x", "%00"] {
        let (status, problem) = admin(&server, Method::GET, &format!("{r}/{id}"), None).await;
        assert_eq!(status, 404, "{id}: {problem}");
    }
    let events = audited(&server, "access.review_opened").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].1, "client:shimin");
    // The manager was told.
    let told: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE person_id = $1 AND kind = 'review_opened'")
            .bind(&world.manager)
            .fetch_one(server.app.store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(told, 2);
    server.stop().await;
}

on_both_databases!(
    a_token_without_access_admin_is_refused_everywhere,
    roles_are_declared_with_their_exclusions_and_retired,
    requests_and_grants_are_listed_and_a_grant_revoked_at_once,
    deputies_are_named_listed_and_ended,
    reviews_are_opened_and_listed,
);
