//! The SCIM 2.0 service an HR system feeds Sekimori through: every leaver path (DELETE, PATCH
//! active=false and "False", PUT) ends everything at once as a CSV leave does; a returning
//! person keeps their record and login ID; filters, paging, projections, ETags and errors as
//! RFC 7644 says; a change dated by the Sekimori-Effective-Date header waits for its day.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

use crate::common::{browser, location, log_in, query_of, token_request, Db, TestServer};
use crate::hr::{audited, authorize, introspect, person_field, section, zeimu, CALLBACK, PASSWORD};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SEKIMORI: &str = "urn:sekimori:scim:schemas:extension:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// An API token carrying `scopes`, made by the test administrator.
async fn token(server: &TestServer, scopes: &[&str]) -> String {
    let (status, body) = server
        .admin(Method::POST, "/api/v1/api-tokens", Some(json!({"name": "人事給与システム", "scopes": scopes})))
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

struct Feed<'a> {
    server: &'a TestServer,
    token: String,
}

impl Feed<'_> {
    async fn new(server: &TestServer) -> Feed<'_> {
        Feed { server, token: token(server, &["hr:feed"]).await }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .server
            .http
            .request(method, format!("{}/scim/v2{path}", self.server.admin_url))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/scim+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if status != 204 && headers.get("content-length").and_then(|v| v.to_str().ok()) != Some("0") {
            assert_eq!(
                headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/scim+json"),
                "{status} {path}"
            );
        }
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body, _) = self.call(Method::GET, path, None, &[]).await;
        (status, body)
    }

    /// The SCIM id of the user with `user_name`, found by filter as HR connectors do.
    async fn id_of(&self, user_name: &str) -> String {
        let (status, list) = self.get(&format!("/Users?filter=userName%20eq%20%22{user_name}%22")).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["totalResults"], 1, "{list}");
        list["Resources"][0]["id"].as_str().unwrap().to_owned()
    }
}

fn user(user_name: &str, employee_number: &str, unit: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE, SEKIMORI],
        "userName": user_name,
        "externalId": format!("hr-{employee_number}"),
        "name": {"familyName": "山田", "givenName": "花子"},
        "active": true,
        "emails": [{"value": format!("{user_name}@city.example.lg.jp"), "type": "work", "primary": true}],
        ENTERPRISE: {"employeeNumber": employee_number},
        SEKIMORI: {"orgUnitCode": unit, "kind": "regular"},
    })
}

/// A person logged in to 税務 with a live access and refresh token.
struct Session {
    access: String,
    refresh: String,
}

async fn logged_in(server: &TestServer, secret: &str, login_id: &str, password: &str) -> Session {
    let response = log_in(&browser(), server, &authorize(server), login_id, password).await;
    assert_eq!(response.status(), 303);
    let code = query_of(&location(&response))["code"].clone();
    let (status, tokens, _) = token_request(
        server,
        Some(("zeimu", secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let session = Session {
        access: tokens["access_token"].as_str().unwrap().to_owned(),
        refresh: tokens["refresh_token"].as_str().unwrap().to_owned(),
    };
    assert!(introspect(server, secret, &session.access).await);
    session
}

async fn assert_everything_ended(
    server: &TestServer,
    secret: &str,
    login_id: &str,
    password: &str,
    session: &Session,
    how: &str,
) {
    assert!(!introspect(server, secret, &session.access).await, "{how}: the access token is inactive at introspection");
    let userinfo = server
        .http
        .get(format!("{}/userinfo", server.public_url))
        .bearer_auth(&session.access)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(userinfo, 401, "{how}: and at userinfo");
    let (status, body, _) = token_request(
        server,
        Some(("zeimu", secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &session.refresh)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{how}: refresh refused: {body}");
    let response = log_in(&browser(), server, &authorize(server), login_id, password).await;
    let logged_in = response.status() == 303 && location(&response).starts_with(CALLBACK);
    assert!(!logged_in, "{how}: the login is refused");
}

async fn every_leaver_path_ends_everything_at_once(db: Db) {
    let server = TestServer::start(db).await;
    let secret = zeimu(&server).await;
    section(&server, "ZEIMU").await;
    let feed = Feed::new(&server).await;
    let mut notices = 0;
    for (n, how) in ["DELETE", "PATCH active=false", "PATCH active=\"False\"", "PUT active=false"].iter().enumerate() {
        let login_id = format!("leaver{n}");
        // Passwords are never shared between people (R10): each leaver has their own.
        let password = format!("{PASSWORD}-{n}");
        let person_id = server.add_person(&format!("E900{n}"), &login_id, &password).await;
        let session = logged_in(&server, &secret, &login_id, &password).await;
        let id = feed.id_of(&login_id).await;
        assert_eq!(id, person_id, "a User's id is the person's id (the OIDC sub)");
        let (status, body, _) = match *how {
            "DELETE" => feed.call(Method::DELETE, &format!("/Users/{id}"), None, &[]).await,
            "PUT active=false" => {
                let (_, mut current) = feed.get(&format!("/Users/{id}")).await;
                current["active"] = json!(false);
                current[SEKIMORI]["orgUnitCode"] = json!("ZEIMU");
                feed.call(Method::PUT, &format!("/Users/{id}"), Some(current), &[]).await
            }
            _ => {
                let value = if how.contains('"') { json!("False") } else { json!(false) };
                let body =
                    json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": value}]});
                feed.call(Method::PATCH, &format!("/Users/{id}"), Some(body), &[]).await
            }
        };
        match *how {
            "DELETE" => assert_eq!(status, 204, "{body}"),
            _ => {
                assert_eq!(status, 200, "{how}: {body}");
                assert_eq!(body["active"], false, "{how}: the answer is the resource as it is now");
            }
        }
        assert_everything_ended(&server, &secret, &login_id, &password, &session, how).await;
        notices += 1;
        assert_eq!(server.count("logout_notices").await, notices, "{how}: 税務 is owed its back-channel notice");
        // Kept, not deleted.
        assert_eq!(person_field(&server, &person_id, "status").await.as_deref(), Some("retired"), "{how}");
        let leave = audited(&server, "person.leave", &format!("person:{person_id}")).await;
        assert_eq!(leave.len(), 1, "{how}");
        assert!(leave[0]["source"].as_str().unwrap().starts_with("scim:"), "{how}: {leave:?}");
        let (status, after) = feed.get(&format!("/Users/{id}")).await;
        if *how == "DELETE" {
            assert_eq!(status, 404, "a deleted User is gone from the feed's view");
            assert_eq!(after["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
        } else {
            assert_eq!((status, &after["active"]), (200, &json!(false)), "an inactive User is still returned");
        }
    }
    // A replay of the same deactivation changes nothing more.
    let id = feed.id_of("leaver1").await;
    let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let (status, _, _) = feed.call(Method::PATCH, &format!("/Users/{id}"), Some(body), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(server.count("logout_notices").await, notices);
    server.stop().await;
}

async fn a_returning_person_keeps_their_record_and_login_id(db: Db) {
    let server = TestServer::start(db).await;
    section(&server, "ZEIMU").await;
    let feed = Feed::new(&server).await;
    let (status, created, headers) =
        feed.call(Method::POST, "/Users", Some(user("suzuki", "E100", "ZEIMU")), &[]).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"].to_str().unwrap(), created["meta"]["location"].as_str().unwrap());
    assert_eq!(created["userName"], "suzuki");
    assert_eq!(created[SEKIMORI]["orgUnitCode"], "ZEIMU");
    assert_eq!(created["groups"][0]["type"], "primary");
    // One person, one ID: the same employee number while employed is a conflict.
    let (status, conflict, _) = feed.call(Method::POST, "/Users", Some(user("suzuki2", "E100", "ZEIMU")), &[]).await;
    assert_eq!((status, conflict["scimType"].as_str()), (409, Some("uniqueness")), "{conflict}");
    // Retires (DELETE), then is appointed again (再任用) under another userName.
    let (status, _, _) = feed.call(Method::DELETE, &format!("/Users/{id}"), None, &[]).await;
    assert_eq!(status, 204);
    let mut again = user("suzuki-saininyo", "E100", "ZEIMU");
    again[SEKIMORI]["kind"] = json!("re_employed");
    let (status, back, _) = feed.call(Method::POST, "/Users", Some(again), &[]).await;
    assert_eq!(status, 201, "{back}");
    assert_eq!(back["id"], id.as_str(), "the same person record");
    assert_eq!(back["active"], true);
    assert_eq!(back[SEKIMORI]["kind"], "re_employed");
    let accounts: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM accounts a JOIN people p ON p.id = a.person_id WHERE p.employee_number = 'E100'",
    )
    .fetch_one(server.app.store.pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap();
    assert_eq!(accounts, 1, "never a second account (R1)");
    assert_eq!(person_field(&server, &id, "status").await.as_deref(), Some("active"));
    assert_eq!(feed.get(&format!("/Users/{id}")).await.0, 200, "visible to the feed again");
    server.stop().await;
}

async fn filters_pages_sorting_and_projections(db: Db) {
    let server = TestServer::start(db).await;
    section(&server, "ZEIMU").await;
    section(&server, "KAIGO").await;
    let feed = Feed::new(&server).await;
    for (name, number, unit) in [("aoki", "E1", "ZEIMU"), ("baba", "E2", "KAIGO"), ("chiba", "E3", "ZEIMU")] {
        let (status, body, _) = feed.call(Method::POST, "/Users", Some(user(name, number, unit)), &[]).await;
        assert_eq!(status, 201, "{body}");
    }
    let list = |filter: &str| {
        let path = format!("/Users?filter={}", form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>());
        let feed = &feed;
        async move { feed.get(&path).await }
    };
    let names = |body: &Value| -> Vec<String> {
        body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_owned()).collect()
    };
    let (status, body) = list("userName eq \"BABA\"").await;
    assert_eq!((status, names(&body)), (200, vec!["baba".to_owned()]), "userName is case-insensitive");
    let (_, body) = list("externalId eq \"hr-E3\"").await;
    assert_eq!(names(&body), ["chiba"]);
    let (status, body) = list("userName eq \"nobody\"").await;
    assert_eq!(
        (status, body["totalResults"].as_u64(), body["Resources"].as_array().map(Vec::len)),
        (200, Some(0), Some(0))
    );
    let (_, body) = list(&format!("{SEKIMORI}:orgUnitCode eq \"ZEIMU\" and not (emails co \"aoki\")")).await;
    assert_eq!(names(&body), ["chiba"]);
    let (_, body) = list("meta.lastModified gt \"2000-01-01T00:00:00Z\" and userName sw \"a\"").await;
    assert_eq!(names(&body), ["aoki"]);
    let (_, body) = list("title pr or userName ew \"aba\"").await;
    assert_eq!(names(&body), ["baba"], "an attribute Sekimori does not keep matches nothing");
    let (status, body) = list("userName eq").await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidFilter")), "{body}");
    let (_, body) = feed.get("/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=1").await;
    assert_eq!(
        (body["totalResults"].as_u64(), body["startIndex"].as_u64(), names(&body)),
        (Some(3), Some(2), vec!["baba".to_owned()])
    );
    let (_, body) = feed.get("/Users?attributes=userName&count=1").await;
    let first = body["Resources"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["id", "schemas", "userName"]);
    let (status, body, _) = feed
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "name.familyName eq \"山田\"", "excludedAttributes": ["emails", ENTERPRISE]})),
            &[],
        )
        .await;
    assert_eq!((status, body["totalResults"].as_u64()), (200, Some(3)), "{body}");
    assert!(body["Resources"][0].get("emails").is_none() && body["Resources"][0].get(ENTERPRISE).is_none());
    // Groups are the org units; members follow the people and can be left out.
    let (_, groups) = feed.get("/Groups?filter=displayName%20eq%20%22%E8%AA%B2%22").await;
    assert_eq!(groups["totalResults"], 2, "{groups}");
    let zeimu =
        groups["Resources"].as_array().unwrap().iter().find(|g| g["members"].as_array().is_some_and(|m| m.len() == 2));
    assert!(zeimu.is_some(), "ZEIMU has aoki and chiba: {groups}");
    let (_, groups) = feed.get("/Groups?excludedAttributes=members").await;
    assert!(groups["Resources"].as_array().unwrap().iter().all(|g| g.get("members").is_none()));
    server.stop().await;
}

async fn etags_rights_and_errors(db: Db) {
    let server = TestServer::start(db).await;
    section(&server, "ZEIMU").await;
    let feed = Feed::new(&server).await;
    let (_, created, headers) = feed.call(Method::POST, "/Users", Some(user("ito", "E7", "ZEIMU")), &[]).await;
    let id = created["id"].as_str().unwrap();
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, created["meta"]["version"].as_str().unwrap());
    let rename =
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "name.givenName", "value": "一郎"}]});
    let (status, body, _) =
        feed.call(Method::PATCH, &format!("/Users/{id}"), Some(rename.clone()), &[("if-match", "W/\"stale\"")]).await;
    assert_eq!(status, 412, "{body}");
    let (status, body, headers) =
        feed.call(Method::PATCH, &format!("/Users/{id}"), Some(rename), &[("if-match", &etag)]).await;
    assert_eq!((status, &body["name"]["givenName"]), (200, &json!("一郎")), "{body}");
    assert_ne!(headers["etag"].to_str().unwrap(), etag, "a change makes a new version");
    // What a connector sends for a new work address: the person's one address becomes it.
    let email = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ito.new@city.example.lg.jp"}]});
    let (status, body, _) = feed.call(Method::PATCH, &format!("/Users/{id}"), Some(email), &[]).await;
    assert_eq!((status, &body["emails"]), (200, &json!([{"value": "ito.new@city.example.lg.jp"}])), "{body}");
    // An HR feed's token is the only way in, and carries nothing else.
    let reader = Feed { server: &server, token: token(&server, &["directory:read"]).await };
    assert_eq!(reader.get("/Users").await.0, 403);
    let nobody = Feed { server: &server, token: "skm_not-a-token".into() };
    assert_eq!(nobody.get("/Users").await.0, 401);
    let (status, body) = server
        .admin(Method::POST, "/api/v1/api-tokens", Some(json!({"name": "x", "scopes": ["hr:feed", "directory:read"]})))
        .await;
    assert_eq!(status, 422, "{body}");
    // Errors in the SCIM shape.
    let (status, body) = feed.get("/Users/00000000-0000-0000-0000-000000000000").await;
    assert_eq!((status, body["status"].as_str()), (404, Some("404")));
    let (status, body, _) = feed.call(Method::POST, "/Users", Some(json!({"userName": "x"})), &[]).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidValue")), "{body}");
    let mut bad_unit = user("kato", "E8", "NOWHERE");
    bad_unit["name"]["familyName"] = json!("加藤");
    let (status, body, _) = feed.call(Method::POST, "/Users", Some(bad_unit), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.count("people").await, 1, "nothing of a refused request is left");
    let members =
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
    let (_, groups) = feed.get("/Groups").await;
    let group = groups["Resources"][0]["id"].as_str().unwrap().to_owned();
    let (status, body, _) = feed.call(Method::PATCH, &format!("/Groups/{group}"), Some(members), &[]).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("mutability")), "{body}");
    let (status, body, _) = feed.call(Method::DELETE, &format!("/Groups/{group}"), None, &[]).await;
    assert_eq!(status, 409, "a unit people work in is not closed: {body}");
    server.stop().await;
}

async fn a_dated_change_waits_for_its_day(db: Db) {
    let server = TestServer::start(db).await;
    section(&server, "ZEIMU").await;
    section(&server, "KAIGO").await;
    let feed = Feed::new(&server).await;
    let (_, created, _) = feed.call(Method::POST, "/Users", Some(user("endo", "E9", "ZEIMU")), &[]).await;
    let id = created["id"].as_str().unwrap();
    let tomorrow = crate::hr::today(&server).next_day().unwrap();
    let date = sekimori::directory::types::format_date(tomorrow);
    let body = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": format!("{SEKIMORI}:orgUnitCode"), "value": "KAIGO"},
        {"op": "add", "path": format!("{SEKIMORI}:posts"), "value": [{"orgUnitCode": "ZEIMU"}]},
    ]});
    let (status, now, _) =
        feed.call(Method::PATCH, &format!("/Users/{id}"), Some(body), &[("Sekimori-Effective-Date", &date)]).await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now[SEKIMORI]["orgUnitCode"], "ZEIMU", "until the day, the person is where they are");
    let pending: i64 = sqlx::query("SELECT COUNT(*) AS n FROM person_changes WHERE status = 'pending'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(pending, 2);
    // The job, the day after tomorrow (the feed's token lives on: the server's clock stays).
    sekimori::hr::changes::apply_due(&server.app.store, server.app.clock.now() + 2 * 86_400).await.unwrap();
    let (_, later) = feed.get(&format!("/Users/{id}")).await;
    assert_eq!(later[SEKIMORI]["orgUnitCode"], "KAIGO", "{later}");
    assert_eq!(later[SEKIMORI]["posts"], json!([{"orgUnitCode": "ZEIMU"}]));
    let (status, body, _) = feed.call(Method::GET, "/Users", None, &[("Sekimori-Effective-Date", "2027-02-30")]).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidValue")));
    server.stop().await;
}

async fn a_feed_that_takes_too_many_out_in_a_day_is_held(db: Db) {
    let server = TestServer::start_configured(db, |config| config.hr.feed_max_per_day = 2).await;
    section(&server, "ZEIMU").await;
    let feed = Feed::new(&server).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let (status, body, _) =
            feed.call(Method::POST, "/Users", Some(user(&format!("staff{n}"), &format!("E5{n}"), "ZEIMU")), &[]).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let deactivate =
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    for id in &ids[..2] {
        let (status, body, _) = feed.call(Method::PATCH, &format!("/Users/{id}"), Some(deactivate.clone()), &[]).await;
        assert_eq!((status, &body["active"]), (200, &json!(false)), "within the day's limit: {body}");
    }
    // The third leaver of the day, and a deletion after it, wait for an administrator.
    let (status, body, _) =
        feed.call(Method::PATCH, &format!("/Users/{}", ids[2]), Some(deactivate.clone()), &[]).await;
    assert_eq!((status, &body["active"]), (202, &json!(true)), "held, not applied: {body}");
    let (status, _, _) = feed.call(Method::DELETE, &format!("/Users/{}", ids[3]), None, &[]).await;
    assert_eq!(status, 202);
    assert_eq!(feed.get(&format!("/Users/{}", ids[3])).await.0, 404, "gone from the feed's view at once");
    assert_eq!(person_field(&server, &ids[3], "status").await.as_deref(), Some("active"), "employed until confirmed");
    let held = sekimori::hr::batches::held(&server.app.store).await.unwrap();
    assert_eq!(held.len(), 1, "one held batch for the feed");
    assert!(held[0].source.starts_with("scim:"), "{:?}", held[0].source);
    assert_eq!(sekimori::hr::batches::held_changes(&server.app.store, &held[0].id).await.unwrap().len(), 2);
    // An administrator confirms: both leave.
    sekimori::hr::batches::confirm(
        &server.app.store,
        &sekimori::audit::Actor::Cli,
        server.app.clock.now(),
        &server.app.config.hr,
        &held[0].id,
    )
    .await
    .unwrap();
    sekimori::hr::changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();
    for id in &ids[2..] {
        assert_eq!(person_field(&server, id, "status").await.as_deref(), Some("retired"));
    }
    assert_eq!(feed.get(&format!("/Users/{}", ids[3])).await.0, 404);
    // A deletion held and then discarded: the person stays employed, and the feed can send them
    // again — the same person, not a conflict.
    let (_, kept, _) = feed.call(Method::POST, "/Users", Some(user("staff9", "E59", "ZEIMU")), &[]).await;
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    let (status, _, _) = feed.call(Method::DELETE, &format!("/Users/{kept_id}"), None, &[]).await;
    assert_eq!(status, 202);
    let held = sekimori::hr::batches::held(&server.app.store).await.unwrap();
    assert_eq!(held.len(), 1);
    sekimori::hr::batches::discard(
        &server.app.store,
        &sekimori::audit::Actor::Cli,
        server.app.clock.now(),
        &held[0].id,
    )
    .await
    .unwrap();
    assert_eq!(person_field(&server, &kept_id, "status").await.as_deref(), Some("active"));
    let (status, again, _) = feed.call(Method::POST, "/Users", Some(user("staff9", "E59", "ZEIMU")), &[]).await;
    assert_eq!((status, again["id"].as_str()), (201, Some(kept_id.as_str())), "{again}");
    assert_eq!(again["active"], true);
    server.stop().await;
}

on_both_databases!(
    a_feed_that_takes_too_many_out_in_a_day_is_held,
    every_leaver_path_ends_everything_at_once,
    a_returning_person_keeps_their_record_and_login_id,
    filters_pages_sorting_and_projections,
    etags_rights_and_errors,
    a_dated_change_waits_for_its_day,
);
