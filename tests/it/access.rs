//! Need-based access end to end: no grant means no role in any token (and no login where a
//! role is needed), approvals from the org tree (both managers for another section's
//! employee), deputies only inside their dates, nobody deciding their own request or for a
//! system their section does not own, separation of duties, and every way a grant ends —
//! end date, review lapse, revocation, transfer — ending the token already held for that
//! system at once and telling the system by back-channel logout.

use sekimori::access::catalog::{self, RoleSpec};
use sekimori::access::requests::{self, NewRequest};
use sekimori::access::reviews::{self, NewReview};
use sekimori::access::{deputies, grants, AccessError, Classification};
use sekimori::audit::Actor;
use serde_json::{json, Value};

use crate::common::{authorize_url, browser, location, log_in, pkce_pair, query_of, token_request, Db, TestServer};
use crate::lifecycle::TestRp;

const PASSWORD: &str = "kasumi-ga-seki-2026!";
/// Each person's own password (passwords are not shared, R11).
fn password_of(login: &str) -> String {
    let word = match login {
        "bucho" => "aozora",
        "zeimu-kacho" => "yuugure",
        "fukushi-kacho" => "kogarashi",
        "zeimu-staff" => "harusame",
        _ => "sazanami",
    };
    format!("{word}-{PASSWORD}")
}

const REDIRECT: &str = "http://127.0.0.1:9001/callback";

/// The org tree and people of these tests: 総務部 (manager 部長) with 税務課 (owner of the tax
/// system, manager 税務課長, staff 税務職員) and 福祉課 (manager 福祉課長, staff 福祉職員).
struct Town {
    server: TestServer,
    secret: String,
    zeimu: String,
    fukushi: String,
    bucho: String,
    zeimu_kacho: String,
    fukushi_kacho: String,
    zeimu_staff: String,
    fukushi_staff: String,
    rp: TestRp,
}

async fn unit(server: &TestServer, code: &str, name: &str, level: &str, parent: Option<&str>) -> String {
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": code, "name": name, "level": level, "parent_id": parent})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn person(server: &TestServer, number: &str, login: &str, unit_id: &str) -> String {
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/people",
            Some(json!({
                "employee_number": number, "family_name": "試験", "given_name": "太郎",
                "family_name_kana": "シケン", "given_name_kana": "タロウ", "kind": "regular",
                "org_unit_id": unit_id, "email": format!("{login}@city.example.lg.jp"), "start_date": "2020-04-01"
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{id}/account"),
            Some(json!({"login_id": login, "password": password_of(login), "require_change": false})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    id
}

async fn set_manager(server: &TestServer, unit_id: &str, person_id: &str) {
    let (status, body) = server
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/org-units/{unit_id}/manager"),
            Some(json!({"person_id": person_id})),
        )
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
}

fn spec(label: &str, classification: Classification, incompatible: &[&str]) -> RoleSpec {
    RoleSpec {
        label: label.into(),
        label_en: None,
        classification,
        max_duration_days: None,
        review_interval_days: None,
        incompatible_with: incompatible.iter().map(|s| s.to_string()).collect(),
    }
}

impl Town {
    async fn build(db: Db) -> Town {
        let server = TestServer::start(db).await;
        let somu = unit(&server, "SOMU", "総務部", "department", None).await;
        let zeimu = unit(&server, "ZEIMU", "税務課", "section", Some(&somu)).await;
        let fukushi = unit(&server, "FUKUSHI", "福祉課", "section", Some(&somu)).await;
        let bucho = person(&server, "E0001", "bucho", &somu).await;
        let zeimu_kacho = person(&server, "E0002", "zeimu-kacho", &zeimu).await;
        let fukushi_kacho = person(&server, "E0003", "fukushi-kacho", &fukushi).await;
        let zeimu_staff = person(&server, "E0004", "zeimu-staff", &zeimu).await;
        let fukushi_staff = person(&server, "E0005", "fukushi-staff", &fukushi).await;
        set_manager(&server, &somu, &bucho).await;
        set_manager(&server, &zeimu, &zeimu_kacho).await;
        set_manager(&server, &fukushi, &fukushi_kacho).await;
        let rp = TestRp::start(vec![]).await;
        let (_, secret) = server
            .add_client(json!({
                "client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                "redirect_uris": [REDIRECT], "owner_org_unit_id": zeimu,
                "backchannel_logout_uri": rp.url,
            }))
            .await;
        let town = Town {
            server,
            secret: secret.unwrap(),
            zeimu,
            fukushi,
            bucho,
            zeimu_kacho,
            fukushi_kacho,
            zeimu_staff,
            fukushi_staff,
            rp,
        };
        town.declare("assessment_entry", spec("賦課入力", Classification::General, &[])).await;
        town.declare("assessment_approval", spec("賦課決裁", Classification::General, &["assessment_entry"])).await;
        town.declare("viewer", spec("照会", Classification::General, &[])).await;
        town
    }

    async fn declare(&self, name: &str, spec: RoleSpec) {
        let mut tx = self.server.app.store.begin().await.unwrap();
        catalog::declare_role(&mut tx, &Actor::Cli, self.now(), "zeimu", name, spec).await.unwrap();
        tx.commit().await.unwrap();
    }

    fn now(&self) -> i64 {
        self.server.app.clock.now()
    }

    async fn request(
        &self,
        person: &str,
        role: &str,
        end_date: Option<&str>,
    ) -> Result<requests::Request, AccessError> {
        let mut tx = self.server.app.store.begin().await.unwrap();
        let new = NewRequest {
            client_id: "zeimu".into(),
            role: role.into(),
            reason: "課税資料の照合のため".into(),
            end_date: end_date.map(str::to_owned),
        };
        let result = requests::submit(&mut tx, &self.server.app.config.access, self.now(), person, new).await;
        if result.is_ok() {
            tx.commit().await.unwrap();
        }
        result
    }

    async fn decide(&self, decider: &str, request: &str, approve: bool) -> Result<requests::Request, AccessError> {
        let mut tx = self.server.app.store.begin().await.unwrap();
        let result = requests::decide(&mut tx, self.now(), decider, request, approve, "確認しました").await;
        if result.is_ok() {
            tx.commit().await.unwrap();
        }
        result
    }

    async fn grant(
        &self,
        manager: &str,
        person: &str,
        role: &str,
        end_date: Option<&str>,
    ) -> Result<grants::Grant, AccessError> {
        let mut tx = self.server.app.store.begin().await.unwrap();
        let result =
            grants::grant_directly(&mut tx, self.now(), manager, person, "zeimu", role, end_date, "担当替えのため")
                .await;
        if result.is_ok() {
            tx.commit().await.unwrap();
        }
        result
    }

    async fn set_requires_role(&self, requires: bool) {
        let mut tx = self.server.app.store.begin().await.unwrap();
        catalog::set_requires_role(&mut tx, &Actor::Cli, self.now(), "zeimu", requires).await.unwrap();
        tx.commit().await.unwrap();
    }

    fn today_plus(&self, days: i64) -> String {
        let today = sekimori::directory::today_in_japan(self.now());
        sekimori::directory::types::format_date(today + time::Duration::days(days))
    }

    /// Moves the clock to `minutes` before the next midnight in Japan.
    fn to_before_midnight(&self, minutes: i64) {
        let now = self.now();
        let japan = now + 9 * 3600;
        let next_midnight = now - japan.rem_euclid(86_400) + 86_400;
        self.server.app.clock.advance(next_midnight - minutes * 60 - now);
    }
}

/// A login of `login` to the tax system in `browser`: Ok(tokens) or Err(the redirect's error).
async fn login_to_system(town: &Town, browser: &reqwest::Client, login: &str) -> Result<Value, String> {
    let (verifier, challenge) = pkce_pair();
    let url = authorize_url(
        &town.server,
        &[
            ("response_type", "code"),
            ("client_id", "zeimu"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    );
    // An existing session goes straight back to the system; otherwise through the login form.
    let first = browser.get(&url).send().await.unwrap();
    let response = if location(&first).starts_with(REDIRECT) {
        first
    } else {
        log_in(browser, &town.server, &url, login, &password_of(login)).await
    };
    assert_eq!(response.status(), 303);
    let query = query_of(&location(&response));
    if let Some(error) = query.get("error") {
        return Err(error.clone());
    }
    let (status, body, _) = token_request(
        &town.server,
        Some(("zeimu", &town.secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &query["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    Ok(body)
}

fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn introspection(town: &Town, token: &str) -> Value {
    town.server
        .http
        .post(format!("{}/introspect", town.server.public_url))
        .basic_auth("zeimu", Some(&town.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn userinfo(town: &Town, token: &str) -> (u16, Value) {
    let response =
        town.server.http.get(format!("{}/userinfo", town.server.public_url)).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The roles every token and answer says for `tokens`.
async fn roles_everywhere(town: &Town, tokens: &Value) -> [Value; 4] {
    let access = tokens["access_token"].as_str().unwrap();
    [
        claims(tokens["id_token"].as_str().unwrap())["roles"].clone(),
        claims(access)["roles"].clone(),
        userinfo(town, access).await.1["roles"].clone(),
        introspection(town, access).await["roles"].clone(),
    ]
}

async fn no_grant_no_role_and_a_system_that_needs_one_refuses(db: Db) {
    let town = Town::build(db).await;
    let tokens = login_to_system(&town, &browser(), "zeimu-staff").await.unwrap();
    assert_eq!(roles_everywhere(&town, &tokens).await, [json!([]), json!([]), json!([]), json!([])]);

    town.set_requires_role(true).await;
    let browser = browser();
    assert_eq!(login_to_system(&town, &browser, "zeimu-staff").await.unwrap_err(), "access_denied");
    // A direct grant by the owning manager opens the door, with the role in every token.
    let grant = town.grant(&town.zeimu_kacho, &town.zeimu_staff, "viewer", None).await.unwrap();
    assert_eq!(grant.origin, "direct");
    let tokens = login_to_system(&town, &browser, "zeimu-staff").await.unwrap();
    assert_eq!(
        roles_everywhere(&town, &tokens).await,
        [json!(["viewer"]), json!(["viewer"]), json!(["viewer"]), json!(["viewer"])]
    );
    town.server.stop().await;
}

async fn another_sections_employee_needs_both_managers(db: Db) {
    let town = Town::build(db).await;
    // From another section, access always ends: no end date, no request.
    let refused = town.request(&town.fukushi_staff, "viewer", None).await.unwrap_err();
    assert!(matches!(&refused, AccessError::Invalid(f) if f.field == "end_date"), "{refused:?}");
    let end = town.today_plus(30);
    let request = town.request(&town.fukushi_staff, "viewer", Some(&end)).await.unwrap();
    assert!(request.cross_section);
    assert_eq!(request.steps.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(), ["owner", "requester_manager"]);
    assert_eq!(request.steps[0].org_unit_id, town.zeimu);
    assert_eq!(request.steps[1].org_unit_id, town.fukushi);

    // Nobody decides their own request; a manager decides only their own step.
    let own = town.decide(&town.fukushi_staff, &request.id, true).await.unwrap_err();
    assert!(matches!(own, AccessError::Forbidden(_)), "{own:?}");
    let outsider = town.decide(&town.zeimu_staff, &request.id, true).await.unwrap_err();
    assert!(matches!(outsider, AccessError::Forbidden(_)), "{outsider:?}");
    let half = town.decide(&town.fukushi_kacho, &request.id, true).await.unwrap();
    assert_eq!(half.status, "pending", "one approval of two is not a grant");
    assert_eq!(half.steps[1].decision.as_deref(), Some("approved"));
    let again = town.decide(&town.fukushi_kacho, &request.id, true).await.unwrap_err();
    assert!(matches!(again, AccessError::Forbidden(_)), "the same manager cannot give the owner's approval: {again:?}");
    let tokens = login_to_system(&town, &browser(), "fukushi-staff").await.unwrap();
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["roles"], json!([]));

    let done = town.decide(&town.zeimu_kacho, &request.id, true).await.unwrap();
    assert_eq!(done.status, "approved");
    let grant_list = grants::list(
        town.server.app.store.pool(),
        &grants::GrantFilter { person_id: Some(town.fukushi_staff.clone()), ..Default::default() },
        10,
    )
    .await
    .unwrap();
    assert_eq!(grant_list.len(), 1);
    assert!(grant_list[0].cross_section);
    assert_eq!(grant_list[0].end_date.as_deref(), Some(end.as_str()));
    let tokens = login_to_system(&town, &browser(), "fukushi-staff").await.unwrap();
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["roles"], json!(["viewer"]));

    // The requester and both approvers were told (notices kept for their pages).
    for (who, kind) in [
        (&town.zeimu_kacho, "approval_waiting"),
        (&town.fukushi_kacho, "approval_waiting"),
        (&town.fukushi_staff, "request_approved"),
    ] {
        let notices = sekimori::notify::list_for_person(town.server.app.store.pool(), who, 10).await.unwrap();
        assert!(notices.iter().any(|n| n.kind == kind), "{kind} for {who}: {notices:?}");
    }

    // A manager's own request goes to the manager above them, and not to themselves.
    let own = town.request(&town.zeimu_kacho, "viewer", None).await.unwrap();
    assert_eq!(own.steps.len(), 1);
    assert_ne!(own.steps[0].org_unit_id, town.zeimu, "the 課長 does not approve their own request");
    assert!(matches!(town.decide(&town.zeimu_kacho, &own.id, true).await.unwrap_err(), AccessError::Forbidden(_)));
    assert_eq!(town.decide(&town.bucho, &own.id, true).await.unwrap().status, "approved");

    // A manager whose section does not own the system grants nothing on it directly.
    let refused = town.grant(&town.fukushi_kacho, &town.fukushi_staff, "assessment_entry", None).await.unwrap_err();
    assert!(matches!(refused, AccessError::Forbidden(_)), "{refused:?}");
    // Nor does the owning manager grant directly to another section's employee.
    let refused = town.grant(&town.zeimu_kacho, &town.fukushi_staff, "assessment_entry", Some(&end)).await.unwrap_err();
    assert!(matches!(refused, AccessError::Forbidden(_)), "{refused:?}");
    town.server.stop().await;
}

async fn a_deputy_acts_only_inside_their_dates(db: Db) {
    let town = Town::build(db).await;
    let deputy = town.zeimu_staff.clone();
    let mut tx = town.server.app.store.begin().await.unwrap();
    let designation = deputies::designate(
        &mut tx,
        &Actor::Person(town.zeimu_kacho.clone()),
        town.now(),
        Some(&town.zeimu_kacho),
        deputies::NewDeputy {
            org_unit_id: town.zeimu.clone(),
            deputy_person_id: deputy.clone(),
            valid_from: town.today_plus(1),
            valid_until: town.today_plus(2),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(designation.valid_from, town.today_plus(1));
    // Another section's manager cannot name a deputy for 税務課.
    let mut tx = town.server.app.store.begin().await.unwrap();
    let refused = deputies::designate(
        &mut tx,
        &Actor::Person(town.fukushi_kacho.clone()),
        town.now(),
        Some(&town.fukushi_kacho),
        deputies::NewDeputy {
            org_unit_id: town.zeimu.clone(),
            deputy_person_id: town.fukushi_staff.clone(),
            valid_from: town.today_plus(0),
            valid_until: town.today_plus(1),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, AccessError::Forbidden(_)), "{refused:?}");
    drop(tx);

    let first = town.request(&town.fukushi_staff, "viewer", Some(&town.today_plus(20))).await.unwrap();
    let early = town.decide(&deputy, &first.id, true).await.unwrap_err();
    assert!(matches!(early, AccessError::Forbidden(_)), "not yet a deputy: {early:?}");
    town.server.app.clock.advance(86_400);
    let decided = town.decide(&deputy, &first.id, true).await.unwrap();
    assert_eq!(decided.steps[0].acting_as.as_deref(), Some("deputy"));
    assert_eq!(decided.steps[0].decided_by.as_deref(), Some(deputy.as_str()));
    let second = town.request(&town.fukushi_kacho, "viewer", Some(&town.today_plus(20))).await.unwrap();
    town.server.app.clock.advance(2 * 86_400);
    let late = town.decide(&deputy, &second.id, true).await.unwrap_err();
    assert!(matches!(late, AccessError::Forbidden(_)), "no longer a deputy: {late:?}");
    town.server.stop().await;
}

async fn incompatible_roles_are_refused_with_the_reason(db: Db) {
    let town = Town::build(db).await;
    town.grant(&town.zeimu_kacho, &town.zeimu_staff, "assessment_entry", None).await.unwrap();
    let refused = town.request(&town.zeimu_staff, "assessment_approval", None).await.unwrap_err();
    let AccessError::Conflict(why) = refused else { panic!("{refused:?}") };
    assert!(why.contains("assessment_entry") && why.contains("separation of duties"), "{why}");
    let refused = town.grant(&town.zeimu_kacho, &town.zeimu_staff, "assessment_approval", None).await.unwrap_err();
    assert!(matches!(refused, AccessError::Conflict(_)), "{refused:?}");
    // Asking twice for what one holds is refused too.
    assert!(matches!(town.request(&town.zeimu_staff, "assessment_entry", None).await, Err(AccessError::Conflict(_))));
    town.server.stop().await;
}

/// The token held for the system is inactive at introspection and userinfo, its refresh token
/// no longer works, and the system got a back-channel logout notice for the session.
async fn assert_ended_everywhere(town: &Town, tokens: &Value, notices: usize) {
    assert!(notices >= 1);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(introspection(town, access).await["active"], json!(false));
    assert_eq!(userinfo(town, access).await.0, 401);
    let (status, body, _) = token_request(
        &town.server,
        Some(("zeimu", &town.secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // The system hears of it for the session the token came from. (Other notices may arrive
    // too: a new login in the same browser replaces an expired session, and that is told.)
    let sid = claims(tokens["id_token"].as_str().unwrap())["sid"].clone();
    let mut told = false;
    for _ in 0..150 {
        let received = town.rp.wait_for(notices).await;
        for token in &received[notices - 1..] {
            let notice = crate::lifecycle::verify_logout_token(&town.server, token, "zeimu").await;
            told |= notice["sid"] == sid;
        }
        if told {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(told, "no back-channel notice for the session {sid}");
}

async fn a_grant_ends_at_once_everywhere(db: Db) {
    let town = Town::build(db).await;
    let browser = browser();

    // 1. By its end date: last day today; just after midnight it is gone.
    town.to_before_midnight(2);
    let today = town.today_plus(0);
    town.grant(&town.zeimu_kacho, &town.zeimu_staff, "viewer", Some(&today)).await.unwrap();
    let tokens = login_to_system(&town, &browser, "zeimu-staff").await.unwrap();
    assert_eq!(claims(tokens["access_token"].as_str().unwrap())["roles"], json!(["viewer"]));
    assert_eq!(introspection(&town, tokens["access_token"].as_str().unwrap()).await["active"], json!(true));
    town.server.app.clock.advance(3 * 60);
    sekimori::jobs::run_access(&town.server.app).await.unwrap();
    assert_ended_everywhere(&town, &tokens, 1).await;
    // The session is the person's: a new login to the system goes through without a form.
    let again = login_to_system(&town, &browser, "zeimu-staff").await.unwrap();
    assert_eq!(claims(again["id_token"].as_str().unwrap())["roles"], json!([]));

    // 2. By a review nobody finished: deadline today; just after midnight the grant lapses.
    town.grant(&town.zeimu_kacho, &town.zeimu_staff, "assessment_entry", None).await.unwrap();
    town.to_before_midnight(2);
    let tokens = login_to_system(&town, &browser, "zeimu-staff").await.unwrap();
    assert_eq!(claims(tokens["access_token"].as_str().unwrap())["roles"], json!(["assessment_entry"]));
    let mut tx = town.server.app.store.begin().await.unwrap();
    let review = reviews::open(
        &mut tx,
        &Actor::Person(town.zeimu_kacho.clone()),
        &town.server.app.config.access,
        town.now(),
        Some(&town.zeimu_kacho),
        NewReview { client_id: Some("zeimu".into()), org_unit_id: None, deadline: Some(town.today_plus(0)) },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(review.items.len(), 1);
    // Another section's manager does not review 税務課's system; nobody reviews their own grant.
    let mut tx = town.server.app.store.begin().await.unwrap();
    let grant_id = review.items[0].grant.id.clone();
    let refused =
        reviews::decide(&mut tx, town.now(), &town.fukushi_kacho, &review.id, &grant_id, true, "").await.unwrap_err();
    assert!(matches!(refused, AccessError::Forbidden(_)), "{refused:?}");
    let refused =
        reviews::decide(&mut tx, town.now(), &town.zeimu_staff, &review.id, &grant_id, true, "").await.unwrap_err();
    assert!(matches!(refused, AccessError::Forbidden(_)), "{refused:?}");
    drop(tx);
    town.server.app.clock.advance(3 * 60);
    sekimori::jobs::run_access(&town.server.app).await.unwrap();
    assert_ended_everywhere(&town, &tokens, 2).await;
    let mut tx = town.server.app.store.begin().await.unwrap();
    let closed = reviews::get(&mut tx, &review.id).await.unwrap().unwrap();
    assert!(closed.closed_at.is_some());
    assert_eq!(closed.items[0].decision.as_deref(), Some("lapsed"));
    assert_eq!(closed.items[0].grant.end_reason.as_deref(), Some("review_lapsed"));
    drop(tx);

    // 3. By revocation.
    let grant = town.grant(&town.zeimu_kacho, &town.zeimu_staff, "viewer", None).await.unwrap();
    let tokens = login_to_system(&town, &browser, "zeimu-staff").await.unwrap();
    assert_eq!(introspection(&town, tokens["access_token"].as_str().unwrap()).await["roles"], json!(["viewer"]));
    let mut tx = town.server.app.store.begin().await.unwrap();
    assert!(grants::end(&mut tx, &Actor::Cli, town.now(), &grant.id, "revoked by the security manager").await.unwrap());
    tx.commit().await.unwrap();
    assert_ended_everywhere(&town, &tokens, 3).await;

    // 4. By a review that removes it.
    town.grant(&town.zeimu_kacho, &town.zeimu_staff, "viewer", None).await.unwrap();
    let tokens = login_to_system(&town, &browser, "zeimu-staff").await.unwrap();
    let mut tx = town.server.app.store.begin().await.unwrap();
    let review = reviews::open(
        &mut tx,
        &Actor::Cli,
        &town.server.app.config.access,
        town.now(),
        None,
        NewReview { client_id: Some("zeimu".into()), ..Default::default() },
    )
    .await
    .unwrap();
    let grant_id = review.items.iter().find(|i| i.grant.ended_at.is_none()).unwrap().grant.id.clone();
    let decided =
        reviews::decide(&mut tx, town.now(), &town.zeimu_kacho, &review.id, &grant_id, false, "異動予定のため")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert!(decided.items.iter().any(|i| i.decision.as_deref() == Some("removed")));
    assert_ended_everywhere(&town, &tokens, 4).await;
    let notices = sekimori::notify::list_for_person(town.server.app.store.pool(), &town.zeimu_staff, 20).await.unwrap();
    assert!(notices.iter().filter(|n| n.kind == "grant_ended").count() >= 4, "{notices:?}");
    town.server.stop().await;
}

async fn a_transfer_ends_the_grants_of_the_section_left(db: Db) {
    let town = Town::build(db).await;
    let browser = browser();
    town.grant(&town.zeimu_kacho, &town.zeimu_staff, "viewer", None).await.unwrap();
    let tokens = login_to_system(&town, &browser, "zeimu-staff").await.unwrap();
    // HR moves the employee to 福祉課 today.
    let change = sekimori::hr::changes::Change {
        employee_number: sekimori::directory::EmployeeNumber::parse("E0004").unwrap(),
        effective_date: sekimori::directory::today_in_japan(town.now()),
        source: "test:hr".into(),
        action: sekimori::hr::changes::Action::Move { org_unit_code: "FUKUSHI".into() },
    };
    let mut tx = town.server.app.store.begin().await.unwrap();
    sekimori::hr::changes::record(&mut tx, &Actor::Cli, town.now(), &town.server.app.config.hr, &change).await.unwrap();
    tx.commit().await.unwrap();
    sekimori::hr::changes::apply_due(&town.server.app.store, town.now()).await.unwrap();
    let left = grants::list(
        town.server.app.store.pool(),
        &grants::GrantFilter { person_id: Some(town.zeimu_staff.clone()), include_ended: true, ..Default::default() },
        10,
    )
    .await
    .unwrap();
    assert_eq!(left[0].end_reason.as_deref(), Some("transfer"), "{left:?}");
    assert_ended_everywhere(&town, &tokens, 1).await;
    town.server.stop().await;
}

async fn a_request_nobody_decides_lapses(db: Db) {
    let town = Town::build(db).await;
    let request = town.request(&town.zeimu_staff, "viewer", None).await.unwrap();
    let days = town.server.app.config.access.request_lapse_days;
    town.server.app.clock.advance((days - 1) * 86_400);
    sekimori::jobs::run_access(&town.server.app).await.unwrap();
    let mut tx = town.server.app.store.begin().await.unwrap();
    assert_eq!(requests::get(&mut tx, &request.id).await.unwrap().unwrap().status, "pending");
    drop(tx);
    town.server.app.clock.advance(86_400);
    sekimori::jobs::run_access(&town.server.app).await.unwrap();
    let mut tx = town.server.app.store.begin().await.unwrap();
    assert_eq!(requests::get(&mut tx, &request.id).await.unwrap().unwrap().status, "lapsed");
    drop(tx);
    let late = town.decide(&town.zeimu_kacho, &request.id, true).await.unwrap_err();
    assert!(matches!(late, AccessError::Conflict(_)), "{late:?}");
    let notices = sekimori::notify::list_for_person(town.server.app.store.pool(), &town.zeimu_staff, 10).await.unwrap();
    assert!(notices.iter().any(|n| n.kind == "request_lapsed"), "{notices:?}");
    // Asking again is possible once the old request lapsed; a rejection needs a reason.
    let again = town.request(&town.zeimu_staff, "viewer", None).await.unwrap();
    let mut tx = town.server.app.store.begin().await.unwrap();
    let refused = requests::decide(&mut tx, town.now(), &town.zeimu_kacho, &again.id, false, " ").await.unwrap_err();
    assert!(matches!(&refused, AccessError::Invalid(f) if f.field == "reason"), "{refused:?}");
    let rejected =
        requests::decide(&mut tx, town.now(), &town.zeimu_kacho, &again.id, false, "業務上の必要がない").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rejected.status, "rejected");
    assert_eq!(rejected.steps[0].reason.as_deref(), Some("業務上の必要がない"));
    town.server.stop().await;
}

/// What a node keeps of the state behind a person's token (`oidc::token_cache`) follows every
/// change: a role granted shows in the next answer, and a token whose row is revoked behind the
/// node's back — by another node whose notice was lost, by another process — is refused at the
/// next call, though its state is kept. Judged with one fixed stamp (the same second), so that
/// nothing here passes because the clock moved on.
async fn a_token_kept_by_the_node_follows_every_change(db: Db) {
    let town = Town::build(db).await;
    let app = &town.server.app;
    let tokens = login_to_system(&town, &browser(), "zeimu-staff").await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let jti = claims(access)["jti"].as_str().unwrap().to_owned();
    let read = app.stamp();
    let kept = app.tokens.get(read, &jti).await.unwrap().expect("an active token");
    assert!(kept.live() && kept.held.is_empty(), "{kept:?}");

    // A role granted is announced in its transaction: what was kept before it is not used.
    town.grant(&town.zeimu_kacho, &town.zeimu_staff, "viewer", None).await.unwrap();
    let after_grant = app.stamp();
    assert!(after_grant.changes > read.changes, "the grant was counted on this node");
    let same_second = sekimori::store::changes::Stamp { changes: after_grant.changes, second: read.second };
    let fresh = app.tokens.get(same_second, &jti).await.unwrap().expect("still active");
    assert_eq!(fresh.held.iter().map(|held| held.name.as_str()).collect::<Vec<_>>(), ["viewer"]);
    assert_eq!(introspection(&town, access).await["roles"], json!(["viewer"]));

    // The row marked revoked with no announcement: the kept state does not keep the token alive.
    assert!(app.tokens.get(same_second, &jti).await.unwrap().is_some(), "kept and live");
    sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE jti = $2")
        .bind(town.now())
        .bind(&jti)
        .execute(app.store.pool())
        .await
        .unwrap();
    // Asked under the stamp the state was kept with (a change counted since, such as the
    // grant's own notice coming back on PostgreSQL, is not what is tested here).
    assert!(app.tokens.get(same_second, &jti).await.unwrap().is_none(), "refused at once");
    assert_eq!(introspection(&town, access).await, json!({"active": false}));
    assert_eq!(userinfo(&town, access).await.0, 401);
    town.server.stop().await;
}

/// Tokens asked about at the same moment are read together (`oidc::token_cache`), whether the
/// node keeps their state or not: each call still gets its own token's answer. Two people's
/// tokens (one holding a role, one not), one of each revoked, each asked about five times at
/// once — first with nothing kept, then kept.
async fn tokens_asked_about_together_get_their_own_answers(db: Db) {
    let town = Town::build(db).await;
    town.grant(&town.zeimu_kacho, &town.zeimu_staff, "viewer", None).await.unwrap();
    let mut tokens = Vec::new();
    for (login, person, roles) in
        [("zeimu-staff", &town.zeimu_staff, json!(["viewer"])), ("fukushi-staff", &town.fukushi_staff, json!([]))]
    {
        for _ in 0..3 {
            let issued = login_to_system(&town, &browser(), login).await.unwrap();
            tokens.push((issued["access_token"].as_str().unwrap().to_owned(), person.clone(), roles.clone()));
        }
    }
    for revoked in [0, 3] {
        let response = town
            .server
            .http
            .post(format!("{}/revoke", town.server.public_url))
            .basic_auth("zeimu", Some(&town.secret))
            .form(&[("token", tokens[revoked].0.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for round in ["nothing kept", "kept"] {
        let asked: Vec<_> = (0..5).flat_map(|_| tokens.iter().enumerate()).collect();
        let answers =
            futures_util::future::join_all(asked.iter().map(|(_, (token, _, _))| introspection(&town, token))).await;
        for ((index, (_, person, roles)), answer) in asked.iter().zip(answers) {
            if *index == 0 || *index == 3 {
                assert_eq!(answer, json!({"active": false}), "{round}: token {index}");
            } else {
                assert_eq!(answer["active"], json!(true), "{round}: token {index}: {answer}");
                assert_eq!(answer["sub"].as_str(), Some(person.as_str()), "{round}: token {index}");
                assert_eq!(answer["roles"], *roles, "{round}: token {index}");
            }
        }
    }
    town.server.stop().await;
}

on_both_databases!(
    no_grant_no_role_and_a_system_that_needs_one_refuses,
    another_sections_employee_needs_both_managers,
    a_deputy_acts_only_inside_their_dates,
    incompatible_roles_are_refused_with_the_reason,
    a_grant_ends_at_once_everywhere,
    a_transfer_ends_the_grants_of_the_section_left,
    a_request_nobody_decides_lapses,
    a_token_kept_by_the_node_follows_every_change,
    tokens_asked_about_together_get_their_own_answers,
);
