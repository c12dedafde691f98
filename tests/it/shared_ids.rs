//! R1: a shared ID exists only as an exception record (section, person responsible, written
//! justification, an approver who is not that person, expiry) and stops at its expiry: the
//! account is disabled, its sessions and tokens end, and nobody else's account is touched.

use reqwest::Method;
use serde_json::json;

use crate::common::{browser, log_in, Db, TestServer};
use crate::systems_admin::{active, authorize, redeem};

const PASSWORD: &str = "correct-horse-battery";
const OWNER_PASSWORD: &str = "umibe-no-kaze-fuyu-no-sora";
const APPROVER_PASSWORD: &str = "yoru-no-tosho-kan-2026#";
const ZEIMU_CB: &str = "http://127.0.0.1:9101/callback";
const SHARED: &str = "/api/v1/shared-ids";

async fn a_shared_id_is_an_exception_that_stops_at_its_expiry(db: Db) {
    let server = TestServer::start(db).await;
    let (status, unit) = server
        .admin(
            Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": "SHIMIN", "name": "市民課", "level": "department"})),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let shared_entry = server.add_person("E7201", "shimin.madoguchi", PASSWORD).await;
    let owner = server.add_person("E7202", "kobayashi", OWNER_PASSWORD).await;
    let approver = server.add_person("E7203", "watanabe", APPROVER_PASSWORD).await;
    let (_, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [ZEIMU_CB]}))
        .await;
    let zeimu = ("zeimu", secret.as_deref().unwrap());
    let today = sekimori::directory::today_in_japan(server.app.clock.now());
    let record = json!({"login_id": "shimin.madoguchi", "org_unit_id": unit["id"], "owner_person_id": owner,
                        "justification": "窓口の共用端末で、交代勤務の職員が使う", "approver_person_id": approver,
                        "expires_on": sekimori::directory::types::format_date(today)});

    // Each rule refuses on its own, naming the member.
    for (change, field) in [
        (json!({"approver_person_id": owner}), "approver_person_id"),
        (json!({"login_id": "kobayashi"}), "login_id"),
        (json!({"login_id": "nobody"}), "login_id"),
        (json!({"justification": " "}), "justification"),
        (json!({"expires_on": "2000-01-01"}), "expires_on"),
        (json!({"owner_person_id": "no-such-person"}), "owner_person_id"),
    ] {
        let mut bad = record.clone();
        for (key, value) in change.as_object().unwrap() {
            bad[key] = value.clone();
        }
        let (status, problem) = server.admin(Method::POST, SHARED, Some(bad)).await;
        assert_eq!((status, problem["field"].as_str()), (422, Some(field)), "{change}: {problem}");
    }
    let (status, made) = server.admin(Method::POST, SHARED, Some(record.clone())).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["person_id"], shared_entry.as_str());
    let (status, _) = server.admin(Method::POST, SHARED, Some(record)).await;
    assert_eq!(status, 409, "one record in force per login ID");

    // Used until its last day ends.
    let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "shimin.madoguchi", PASSWORD).await;
    let access = redeem(&server, zeimu, ZEIMU_CB, login).await["access_token"].as_str().unwrap().to_owned();
    sekimori::jobs::run_access(&server.app).await.unwrap();
    assert!(active(&server, zeimu, &access).await, "still its last day");
    // To the next midnight in Japan (within the test administrator's token's day).
    let into_the_day = (server.app.clock.now() + 9 * 3600).rem_euclid(86_400);
    server.app.clock.advance(86_400 - into_the_day + 1);
    sekimori::jobs::run_access(&server.app).await.unwrap();
    assert!(!active(&server, zeimu, &access).await, "its tokens end at expiry");
    let refused =
        log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), "shimin.madoguchi", PASSWORD).await;
    assert_eq!(refused.status(), 401);
    let (_, listed) = server.admin(Method::GET, SHARED, None).await;
    assert_eq!(listed["items"][0]["end_reason"], "expired", "{listed}");
    // The owner's and the approver's own accounts are untouched.
    for (login_id, password) in [("kobayashi", OWNER_PASSWORD), ("watanabe", APPROVER_PASSWORD)] {
        let login = log_in(&browser(), &server, &authorize(&server, "zeimu", ZEIMU_CB), login_id, password).await;
        assert_eq!(login.status(), 303);
    }
    let (status, _) = server
        .admin(Method::POST, &format!("{SHARED}/{}/end", made["id"].as_str().unwrap()), Some(json!({"reason": "x"})))
        .await;
    assert_eq!(status, 409, "already ended");
    server.stop().await;
}

on_both_databases!(a_shared_id_is_an_exception_that_stops_at_its_expiry);
