//! The directory's rules, held by the database itself where the regulations demand it.

use serde_json::json;

use crate::common::{Db, TestServer};

async fn one_account_per_person_is_enforced_by_the_database(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E4001", "kobayashi", "correct-horse-battery").await;
    // Through the API: a clear conflict.
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{person_id}/account"),
            Some(json!({"login_id": "kobayashi2"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["title"], "Conflict");
    // Straight into the database, past every line of application code: the constraint holds.
    let result = sqlx::query(
        "INSERT INTO accounts (id, person_id, login_id, password_hash, password_changed_at, status, created_at)
         VALUES ('x', $1, 'shared-id', NULL, NULL, 'active', 0)",
    )
    .bind(&person_id)
    .execute(server.app.store.pool())
    .await;
    let err = result.expect_err("a second account for the same person must be refused");
    assert!(sekimori::store::is_unique_violation(&err), "{err}");
    // And one login ID cannot belong to two people.
    let other = server.add_person("E4002", "kobayashi.b", "another-horse-battery").await;
    let (status, _) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{other}/account"),
            Some(json!({"login_id": "KOBAYASHI"})),
        )
        .await;
    assert_eq!(status, 409, "login IDs are case-insensitive and unique");
    server.stop().await;
}

async fn fixed_term_staff_need_an_end_date(db: Db) {
    let server = TestServer::start(db).await;
    let person = json!({
        "employee_number": "H0001", "family_name": "派遣", "given_name": "花子",
        "family_name_kana": "ハケン", "given_name_kana": "ハナコ", "kind": "dispatched", "start_date": "2026-04-01"
    });
    let (status, body) = server.admin(reqwest::Method::POST, "/api/v1/people", Some(person.clone())).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "end_date");
    // The database refuses it too.
    let err = sqlx::query(
        "INSERT INTO people (id, employee_number, family_name, given_name, family_name_kana, given_name_kana, kind, status, start_date, created_at, updated_at)
         VALUES ('p', 'H0002', 'a', 'b', 'ア', 'イ', 'dispatched', 'active', '2026-04-01', 0, 0)",
    )
    .execute(server.app.store.pool())
    .await
    .expect_err("a fixed-term person without an end date is refused by the database");
    let refused = err.as_database_error().expect("a database error, not a connection failure");
    assert_eq!(refused.kind(), sqlx::error::ErrorKind::CheckViolation, "{refused}");
    assert!(
        refused.message().contains("people_fixed_term_has_end_date")
            || refused.constraint() == Some("people_fixed_term_has_end_date"),
        "the fixed-term rule refused it, not another: {refused}"
    );
    let mut with_end = person.clone();
    with_end["end_date"] = json!(sekimori::clock::japan_date(server.app.clock.now() + 300 * 86_400));
    let (status, body) = server.admin(reqwest::Method::POST, "/api/v1/people", Some(with_end)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "dispatched");
    server.stop().await;
}

async fn org_units_form_a_hierarchy_with_managers(db: Db) {
    let server = TestServer::start(db).await;
    let post = |body| server.admin(reqwest::Method::POST, "/api/v1/org-units", Some(body));
    let (s, dept) = post(json!({"code": "ZAIMU", "name": "財務部", "level": "department"})).await;
    assert_eq!(s, 201, "{dept}");
    let (s, body) = post(json!({"code": "X", "name": "課", "level": "section"})).await;
    assert_eq!(s, 422, "a section needs a parent: {body}");
    let (s, body) =
        post(json!({"code": "ZEIMU-K", "name": "市民税係", "level": "unit", "parent_id": dept["id"]})).await;
    assert_eq!(s, 422, "a unit's parent is a section: {body}");
    let (s, section) =
        post(json!({"code": "ZEIMU", "name": "税務課", "level": "section", "parent_id": dept["id"]})).await;
    assert_eq!(s, 201);
    let (s, _) = post(json!({"code": "ZEIMU", "name": "重複", "level": "department"})).await;
    assert_eq!(s, 409);
    let manager = server.add_person("E5001", "kacho", "correct-horse-battery").await;
    let (s, _) = server
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/org-units/{}/manager", section["id"].as_str().unwrap()),
            Some(json!({"person_id": manager})),
        )
        .await;
    assert_eq!(s, 204);
    let (_, list) = server.admin(reqwest::Method::GET, "/api/v1/org-units", None).await;
    let zeimu = list["items"].as_array().unwrap().iter().find(|u| u["code"] == "ZEIMU").unwrap().clone();
    assert_eq!(zeimu["manager_person_id"], manager);
    server.stop().await;
}

on_both_databases!(
    one_account_per_person_is_enforced_by_the_database,
    fixed_term_staff_need_an_end_date,
    org_units_form_a_hierarchy_with_managers,
);
