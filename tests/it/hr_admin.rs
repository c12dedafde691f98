//! The administrator's side of the HR feed through the admin API (right `hr:admin`): held
//! batches listed, confirmed and discarded; recorded changes listed and a failed one retried
//! once its cause is fixed (also from the CLI); a section manager's preview as JSON.

use reqwest::Method;
use sekimori::config::HrConfig;
use sekimori::directory::types::format_date;
use sekimori::hr::{changes, csv_import};
use serde_json::{json, Value};
use sqlx::Row;

use crate::common::{Db, TestServer};
use crate::hr::{audited, person_field, section, sekimori_hr, today};

/// Imports `csv` as jinji.csv with `max_share_percent`; returns the held batch's id, if held.
async fn import(server: &TestServer, csv: &str, max_share_percent: u8) -> Option<String> {
    let config = HrConfig { max_share_percent, ..HrConfig::default() };
    let parsed = csv_import::parse(csv, "jinji.csv", None).unwrap();
    let summary = csv_import::import(&server.app.store, &config, server.app.clock.now(), "jinji.csv", &parsed, false)
        .await
        .unwrap();
    summary.held.and_then(|held| held.batch_id)
}

/// A call to the admin API with `token`.
async fn call(server: &TestServer, token: &str, method: Method, path: &str) -> (u16, Value) {
    let response =
        server.http.request(method, format!("{}{path}", server.admin_url)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    server.admin(Method::GET, path, None).await
}

async fn post(server: &TestServer, path: &str) -> (u16, Value) {
    server.admin(Method::POST, path, None).await
}

fn days_from_today(server: &TestServer, days: i64) -> String {
    format_date(today(server).checked_add(time::Duration::days(days)).unwrap())
}

async fn held_batches_are_listed_confirmed_and_discarded_through_the_api(db: Db) {
    let server = TestServer::start(db).await;
    for (i, number) in ["A10", "A11", "A12"].iter().enumerate() {
        server.add_person(number, &format!("a-person-{i}"), &format!("correct-horse-battery-{i}")).await;
    }
    let yesterday = days_from_today(&server, -1);
    let tomorrow = days_from_today(&server, 1);
    // One leaver of three active people (33 %) is over 10 %: held.
    let id = import(&server, &format!("職員番号,異動区分,発令日\nA10,退職,{yesterday}\n"), 10).await.expect("held");

    // Without the right: 403, whatever the operation.
    let (status, token) = server
        .admin(Method::POST, "/api/v1/api-tokens", Some(json!({"name": "人事以外", "scopes": ["directory:read"]})))
        .await;
    assert_eq!(status, 201, "{token}");
    let reader = token["token"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/api/v1/hr/batches".to_owned()),
        (Method::GET, format!("/api/v1/hr/batches/{id}")),
        (Method::POST, format!("/api/v1/hr/batches/{id}/confirm")),
        (Method::POST, format!("/api/v1/hr/batches/{id}/discard")),
        (Method::GET, "/api/v1/hr/changes".to_owned()),
        (Method::POST, format!("/api/v1/hr/changes/{id}/retry")),
        (Method::GET, "/api/v1/hr/preview?section=X".to_owned()),
    ] {
        let (status, problem) = call(&server, reader, method.clone(), &path).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("hr:admin"), "{problem}");
    }

    // The held batch, with the valve's verdict, its source and its counts.
    let (status, list) = get(&server, "/api/v1/hr/batches").await;
    assert_eq!(status, 200, "{list}");
    let batch = &list["items"][0];
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (batch["id"].as_str(), batch["status"].as_str(), batch["source"].as_str()),
        (Some(id.as_str()), Some("held"), Some("csv:jinji.csv"))
    );
    assert_eq!(
        (batch["affected"].as_u64(), batch["active"].as_u64(), batch["change_count"].as_u64()),
        (Some(1), Some(3), Some(1))
    );
    assert_eq!(batch["limit"], "10 % of active people (hr.max_share_percent)");
    assert_eq!(batch["summary"], json!([{"section": "-", "kind": "leave", "count": 1}]));
    assert_eq!(batch["decided_at"], Value::Null);
    let (status, detail) = get(&server, &format!("/api/v1/hr/batches/{id}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(
        detail["changes"],
        json!([{"employee_number": "A10", "kind": "leave", "effective_date": yesterday,
                "source": "csv:jinji.csv:2", "section": null}])
    );
    let (status, problem) = get(&server, "/api/v1/hr/batches?status=pending").await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("status")), "{problem}");
    let (status, list) = get(&server, "/api/v1/hr/batches?status=confirmed").await;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 0));

    // Unknown batches: 404 for every operation.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (method, path) in [
        (Method::GET, format!("/api/v1/hr/batches/{unknown}")),
        (Method::POST, format!("/api/v1/hr/batches/{unknown}/confirm")),
        (Method::POST, format!("/api/v1/hr/batches/{unknown}/discard")),
    ] {
        let (status, problem) = server.admin(method.clone(), &path, None).await;
        assert_eq!(status, 404, "{method} {path}: {problem}");
    }

    // Confirmed: recorded, and the leave, being due, applied at once.
    let (status, confirmed) = post(&server, &format!("/api/v1/hr/batches/{id}/confirm")).await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["batch"]["status"], "confirmed");
    assert!(confirmed["batch"]["decided_at"].is_i64(), "{confirmed}");
    assert_eq!(confirmed["applied_now"]["failed"], 0, "{confirmed}");
    let status: String = sqlx::query("SELECT status FROM people WHERE employee_number = 'A10'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("status")
        .unwrap();
    assert_eq!(status, "retired");
    let events = audited(&server, "hr_batch.confirm", &format!("hr_batch:{id}")).await;
    assert_eq!(events.len(), 1, "audited once: {events:?}");
    let actor: String = sqlx::query("SELECT actor FROM audit_events WHERE action = 'hr_batch.confirm'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("actor")
        .unwrap();
    assert!(actor.starts_with("api_token:"), "the token that confirmed it: {actor}");

    // Decided once: a second decision is a conflict, and changes nothing.
    for decision in ["confirm", "discard"] {
        let (status, problem) = post(&server, &format!("/api/v1/hr/batches/{id}/{decision}")).await;
        assert_eq!(status, 409, "{decision}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("confirmed already"), "{problem}");
    }
    assert_eq!(audited(&server, "hr_batch.discard", &format!("hr_batch:{id}")).await.len(), 0);
    let (_, list) = get(&server, "/api/v1/hr/batches").await;
    assert_eq!(list["items"], json!([]), "no longer held");
    let (_, list) = get(&server, "/api/v1/hr/batches?status=confirmed").await;
    assert_eq!(list["items"][0]["id"], id.as_str());

    // Discarded: kept, and none of it ever recorded or applied.
    let other =
        import(&server, &format!("employee_number,change,effective_date\nA11,suspend,{tomorrow}\n"), 10).await.unwrap();
    let (status, discarded) = post(&server, &format!("/api/v1/hr/batches/{other}/discard")).await;
    assert_eq!((status, discarded["status"].as_str()), (200, Some("discarded")), "{discarded}");
    assert_eq!(audited(&server, "hr_batch.discard", &format!("hr_batch:{other}")).await.len(), 1);
    let (status, problem) = post(&server, &format!("/api/v1/hr/batches/{other}/confirm")).await;
    assert_eq!(status, 409, "{problem}");
    let (_, list) = get(&server, "/api/v1/hr/batches?status=discarded").await;
    assert_eq!(list["items"][0]["id"], other.as_str());
    let suspends: i64 = sqlx::query("SELECT COUNT(*) AS n FROM person_changes WHERE employee_number = 'A11'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(suspends, 0);
    server.stop().await;
}

async fn a_failed_change_is_listed_and_retried_once_its_cause_is_fixed(db: Db) {
    let server = TestServer::start(db).await;
    let mover = server.add_person("F1", "f-mover", "correct-horse-battery-1").await;
    server.add_person("F2", "f-second", "correct-horse-battery-2").await;
    section(&server, "SEC-F").await;
    let yesterday = days_from_today(&server, -1);
    let tomorrow = days_from_today(&server, 1);
    // A move to a unit HR has created in its own system but not yet here: recorded (the code is
    // well formed), and it fails when due.
    let file = format!("職員番号,異動区分,発令日,所属コード\nF1,異動,{yesterday},NEWSEC\nF2,異動,{tomorrow},SEC-F\n");
    assert_eq!(import(&server, &file, 100).await, None, "under the limit");
    changes::apply_due(&server.app.store, server.app.clock.now()).await.unwrap();

    let (status, page) = get(&server, "/api/v1/hr/changes?status=failed").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let failed = &items[0];
    assert_eq!(
        (failed["employee_number"].as_str(), failed["kind"].as_str(), failed["org_unit_code"].as_str()),
        (Some("F1"), Some("move"), Some("NEWSEC"))
    );
    assert_eq!(
        (failed["effective_date"].as_str(), failed["source"].as_str()),
        (Some(yesterday.as_str()), Some("csv:jinji.csv:2"))
    );
    assert!(failed["error"].as_str().unwrap().contains("no org unit has code NEWSEC"), "{failed}");
    assert!(failed["effective_at"].is_i64());
    let change_id = failed["id"].as_str().unwrap().to_owned();

    // Everything, newest first, paged by cursor; and by person.
    let (_, all) = get(&server, "/api/v1/hr/changes").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all["next_cursor"], Value::Null);
    let (_, first) = get(&server, "/api/v1/hr/changes?limit=1").await;
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    assert_eq!(first["items"][0]["id"], all["items"][0]["id"]);
    let (_, second) = get(&server, &format!("/api/v1/hr/changes?limit=1&cursor={cursor}")).await;
    assert_eq!(second["items"][0]["id"], all["items"][1]["id"], "{second}");
    assert_eq!(second["next_cursor"], Value::Null);
    let (_, by_person) = get(&server, "/api/v1/hr/changes?employee_number=F2&status=pending").await;
    assert_eq!(by_person["items"].as_array().unwrap().len(), 1, "{by_person}");
    assert_eq!(by_person["items"][0]["org_unit_code"], "SEC-F");
    for (bad, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("status=done", "status"),
        ("employee_number=F%201", "employee_number"),
        ("employee_number=", "employee_number"),
        // 65 characters: one over the directory's rule.
        (&*format!("employee_number={}", "E".repeat(65)), "employee_number"),
        ("cursor=page-2", "cursor"),
        ("cursor=00000000-0000-4000-8000-000000000000", "cursor"),
    ] {
        let (status, problem) = get(&server, &format!("/api/v1/hr/changes?{bad}")).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{bad}: {problem}");
    }
    // An HR system's own key (a UUID, 36 characters) is an employee number like any other.
    let uuid_key = "0c9a1b2e-5d4f-4e6a-9b7c-1d2e3f4a5b6c";
    let (status, none) = get(&server, &format!("/api/v1/hr/changes?employee_number={uuid_key}")).await;
    assert_eq!((status, none["items"].as_array().map(Vec::len)), (200, Some(0)), "{none}");
    let (status, _) = get(&server, "/api/v1/hr/changes?page=2").await;
    assert_eq!(status, 400);

    // Retried before the cause is fixed: it fails again, with its error.
    let retry = format!("/api/v1/hr/changes/{change_id}/retry");
    let (status, retried) = post(&server, &retry).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["change"]["status"], "failed", "{retried}");
    assert!(retried["previous_error"].as_str().unwrap().contains("NEWSEC"), "{retried}");

    // The CLI lists it with why it failed.
    let dir = crate::cli::temp_dir();
    let (code, stdout, stderr) = sekimori_hr(&server, &dir, &["changes", "--status", "failed"], "");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&change_id) && stdout.contains("失敗 (failed)"), "{stdout}");
    assert!(stdout.contains("エラー (error)") && stdout.contains("no org unit has code NEWSEC"), "{stdout}");
    let (code, _, stderr) = sekimori_hr(&server, &dir, &["changes", "--status", "lost"], "");
    assert_eq!(code, Some(2), "{stderr}");

    // The unit is created; the retry (from the CLI) applies the move.
    let unit = section(&server, "NEWSEC").await;
    let (code, stdout, stderr) = sekimori_hr(&server, &dir, &["retry", &change_id], "");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("前回のエラー") && stdout.contains("適用済 (applied)"), "{stdout}");
    assert_eq!(person_field(&server, &mover, "org_unit_id").await, Some(unit));
    let events = audited(&server, "person_change.retry", &format!("person_change:{change_id}")).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0]["previous_error"].as_str().unwrap().contains("NEWSEC"), "{events:?}");
    let actors: Vec<String> =
        sqlx::query("SELECT actor FROM audit_events WHERE action = 'person_change.retry' ORDER BY seq")
            .fetch_all(server.app.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get("actor").unwrap())
            .collect();
    assert!(actors[0].starts_with("api_token:") && actors[1] == "cli", "{actors:?}");

    // Only a failed change is retried; an unknown one is 404.
    let (status, problem) = post(&server, &retry).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("applied"), "{problem}");
    let (status, _) = post(&server, "/api/v1/hr/changes/00000000-0000-4000-8000-000000000000/retry").await;
    assert_eq!(status, 404);
    let (code, _, stderr) = sekimori_hr(&server, &dir, &["retry", &change_id], "");
    assert_eq!(code, Some(1), "{stderr}");
    let (_, page) = get(&server, "/api/v1/hr/changes?status=failed").await;
    assert_eq!(page["items"], json!([]));
    server.stop().await;
}

async fn a_section_managers_preview_answers_in_json(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("P1", "p-first", "correct-horse-battery-1").await;
    server.add_person("P2", "p-second", "correct-horse-battery-2").await;
    section(&server, "SEC-P").await;
    let tomorrow = days_from_today(&server, 1);
    let next_week = days_from_today(&server, 7);
    // One arrival recorded; another in a held batch.
    let file = |number: &str, date: &str| format!("職員番号,異動区分,発令日,所属コード\n{number},異動,{date},SEC-P\n");
    assert_eq!(import(&server, &file("P1", &tomorrow), 100).await, None);
    let held = import(&server, &file("P2", &next_week), 10).await.expect("held");

    let (status, preview) = get(&server, &format!("/api/v1/hr/preview?section=SEC-P&date={next_week}")).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!((preview["section"].as_str(), preview["date"].as_str()), (Some("SEC-P"), Some(next_week.as_str())));
    assert_eq!(
        preview["entries"],
        json!([
            {"effective_date": tomorrow, "effect": "arrival", "label": "着任 (arrival)", "employee_number": "P1",
             "name": "試験 太郎", "other_section": null, "held_in": null},
            {"effective_date": next_week, "effect": "arrival", "label": "着任 (arrival)", "employee_number": "P2",
             "name": "試験 太郎", "other_section": null, "held_in": held},
        ])
    );
    // Today by default: nothing yet.
    let (status, preview) = get(&server, "/api/v1/hr/preview?section=SEC-P").await;
    assert_eq!((status, preview["entries"].clone()), (200, json!([])), "{preview}");
    assert_eq!(preview["date"], format_date(today(&server)));

    let (status, problem) = get(&server, "/api/v1/hr/preview?section=NOWHERE").await;
    assert_eq!(status, 404, "{problem}");
    for (bad, field) in [
        ("date=2027-04-01", "section"),
        ("section=SEC%20P", "section"),
        ("section=SEC-P&date=2027-02-30", "date"),
        ("section=SEC-P&date=2027/04/01", "date"),
        ("section=SEC-P&date=%202027-04-01", "date"),
    ] {
        let (status, problem) = get(&server, &format!("/api/v1/hr/preview?{bad}")).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "{bad}: {problem}");
    }
    server.stop().await;
}

on_both_databases!(
    held_batches_are_listed_confirmed_and_discarded_through_the_api,
    a_failed_change_is_listed_and_retried_once_its_cause_is_fixed,
    a_section_managers_preview_answers_in_json,
);
