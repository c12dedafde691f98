//! The access pages over HTTP: logged out they lead to the login; a request is filed through the
//! form; a refused form comes back with its error beside the field; what is not the person's
//! to do is refused (another's request, a decision that is not theirs, a form without its
//! CSRF token); the managers' pages are in the menu only of those who decide for a unit.

use serde_json::json;

use crate::common::{browser, hidden_input, location, Db, TestServer};
use sekimori::access::catalog::{self, RoleSpec};
use sekimori::access::requests::{self, RequestFilter};
use sekimori::access::Classification;
use sekimori::audit::Actor;
use sekimori::directory::today_in_japan;
use sekimori::directory::types::format_date;

/// Each person's own password (a password two people share is refused).
fn password_of(login_id: &str) -> String {
    let phrase = match login_id {
        "owner.manager" => "yuugure-no-sakamichi",
        "home.manager" => "asagiri-no-minatomachi",
        "requester" => "hoshizora-no-tenboudai",
        _ => "kogarashi-no-namikimichi",
    };
    format!("{phrase}-2026")
}

async fn unit(server: &TestServer, code: &str, name: &str) -> String {
    let (status, unit) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": code, "name": name, "level": "department"})),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    unit["id"].as_str().unwrap().to_owned()
}

/// A person of `unit_id` with an account; returns the person id.
async fn person(server: &TestServer, number: &str, login_id: &str, unit_id: &str) -> String {
    let (status, person) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/people",
            Some(json!({
                "employee_number": number, "family_name": "試験", "given_name": login_id,
                "family_name_kana": "シケン", "given_name_kana": "タロウ", "birth_date": "1990-05-12",
                "kind": "regular", "org_unit_id": unit_id, "start_date": "2020-04-01"
            })),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    let id = person["id"].as_str().unwrap().to_owned();
    let (status, account) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{id}/account"),
            Some(json!({"login_id": login_id, "password": password_of(login_id), "require_change": false})),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    id
}

async fn manage(server: &TestServer, unit_id: &str, person_id: &str) {
    let path = format!("/api/v1/org-units/{unit_id}/manager");
    let (status, body) = server.admin(reqwest::Method::PUT, &path, Some(json!({"person_id": person_id}))).await;
    assert_eq!(status, 204, "{body}");
}

/// A browser logged in directly as `login_id`, then at `path`: (the browser, the page's HTML).
async fn logged_in(server: &TestServer, login_id: &str, path: &str) -> (reqwest::Client, String) {
    let browser = browser();
    let first = browser.get(format!("{}{path}", server.public_url)).send().await.unwrap();
    assert_eq!(first.status(), 303);
    assert_eq!(location(&first), format!("/login?next={path}"), "logged out, {path} leads to the login");
    let html = browser.get(format!("{}/login?next={path}", server.public_url)).send().await.unwrap();
    let html = html.text().await.unwrap();
    let done = browser
        .post(format!("{}/login", server.public_url))
        .form(&[
            ("csrf_token", hidden_input(&html, "csrf_token").as_str()),
            ("request", hidden_input(&html, "request").as_str()),
            ("login_id", login_id),
            ("password", password_of(login_id).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), path, "the login returns to {path}");
    let page = browser.get(format!("{}{path}", server.public_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    (browser, html)
}

async fn post(
    browser: &reqwest::Client,
    server: &TestServer,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String, Option<String>) {
    let response = browser.post(format!("{}{path}", server.public_url)).form(form).send().await.unwrap();
    let status = response.status().as_u16();
    let to = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), to)
}

async fn the_access_pages_do_only_what_is_the_persons_to_do(db: Db) {
    let server = TestServer::start(db).await;
    let owner = unit(&server, "KAZEI", "課税課").await;
    let home = unit(&server, "FUKUSHI", "福祉課").await;
    let owner_manager = person(&server, "20001", "owner.manager", &owner).await;
    let home_manager = person(&server, "20002", "home.manager", &home).await;
    person(&server, "20003", "requester", &home).await;
    person(&server, "20004", "colleague", &home).await;
    manage(&server, &owner, &owner_manager).await;
    manage(&server, &home, &home_manager).await;
    server
        .add_client(json!({
            "client_id": "kazei", "name": "課税照会システム", "client_type": "confidential",
            "redirect_uris": ["https://kazei.city.example.lg.jp/callback"], "owner_org_unit_id": owner
        }))
        .await;
    let now = server.app.clock.now();
    let mut tx = server.app.store.begin().await.unwrap();
    let spec = RoleSpec {
        label: "課税状況の照会".into(),
        label_en: Some("Look up tax status".into()),
        classification: Classification::General,
        max_duration_days: None,
        review_interval_days: None,
        incompatible_with: vec![],
    };
    let role = catalog::declare_role(&mut tx, &Actor::Cli, now, "kazei", "inquiry", spec).await.unwrap();
    tx.commit().await.unwrap();

    // The requester: no managers' pages in the menu; the form offers the role.
    let (requester, html) = logged_in(&server, "requester", "/my/access").await;
    assert!(!html.contains("/my/approvals"), "no Approvals for a person who decides for no unit");
    assert!(html.contains(&format!("<option value=\"{}\"", role.id)), "the role is offered:\n{html}");
    let csrf = hidden_input(&html, "csrf_token");

    // Without the token, nothing is filed.
    let form = [("role", role.id.as_str()), ("reason", "照会のため"), ("end_date", "")];
    let (status, _, _) = post(&requester, &server, "/my/access/requests", &form).await;
    assert_eq!(status, 403);

    // Another section's system needs the last day: the error is beside the field.
    let with_token =
        [("csrf_token", csrf.as_str()), ("role", role.id.as_str()), ("reason", "照会のため"), ("end_date", "")];
    let (status, html, _) = post(&requester, &server, "/my/access/requests", &with_token).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("id=\"end_date-error\""), "{html}");
    assert!(html.contains("aria-describedby=\"end-date-hint end_date-error\" aria-invalid=\"true\""), "{html}");
    assert!(html.contains("autofocus"), "the error summary takes the focus");
    assert!(html.contains("照会のため"), "what was typed is kept");
    let mut tx = server.app.store.begin().await.unwrap();
    assert!(requests::list(&mut tx, &RequestFilter::default(), 10).await.unwrap().is_empty());
    drop(tx);

    let end = format_date(today_in_japan(server.app.clock.now()) + time::Duration::days(30));
    let filed =
        [("csrf_token", csrf.as_str()), ("role", role.id.as_str()), ("reason", "照会のため"), ("end_date", &end)];
    let (status, _, to) = post(&requester, &server, "/my/access/requests", &filed).await;
    assert_eq!((status, to.as_deref()), (303, Some("/my/access?done=requested")));
    let mut tx = server.app.store.begin().await.unwrap();
    let filed = requests::list(&mut tx, &RequestFilter::default(), 10).await.unwrap();
    drop(tx);
    assert_eq!(filed.len(), 1);
    let (id, status_now) = (filed[0].id.clone(), filed[0].status.clone());
    assert_eq!(status_now, "pending");
    assert!(filed[0].cross_section);

    // A colleague can neither decide it nor withdraw it.
    let (colleague, html) = logged_in(&server, "colleague", "/my/access").await;
    let csrf = hidden_input(&html, "csrf_token");
    let approve = [("csrf_token", csrf.as_str()), ("decision", "approve"), ("reason", "")];
    let (status, _, _) = post(&colleague, &server, &format!("/my/approvals/{id}"), &approve).await;
    assert_eq!(status, 403);
    let (status, _, _) =
        post(&colleague, &server, &format!("/my/access/requests/{id}/withdraw"), &[("csrf_token", csrf.as_str())])
            .await;
    assert_eq!(status, 404, "another's request is not found");

    // The requester's manager: Approvals in the menu, a rejection needs a reason.
    let (manager, html) = logged_in(&server, "home.manager", "/my/approvals").await;
    assert!(html.contains("href=\"/my/approvals\" aria-current=\"page\""), "{html}");
    assert!(html.contains("照会のため") && html.contains("課税照会システム"), "{html}");
    let csrf = hidden_input(&html, "csrf_token");
    let reject = [("csrf_token", csrf.as_str()), ("decision", "reject"), ("reason", " ")];
    let (status, html, _) = post(&manager, &server, &format!("/my/approvals/{id}"), &reject).await;
    assert_eq!(status, 422);
    assert!(html.contains(&format!("id=\"reason-{id}-error\"")), "{html}");
    let approve = [("csrf_token", csrf.as_str()), ("decision", "approve"), ("reason", "")];
    let (status, _, to) = post(&manager, &server, &format!("/my/approvals/{id}"), &approve).await;
    assert_eq!((status, to.as_deref()), (303, Some("/my/approvals?done=approved")));
    // Deciding twice is refused with its own page.
    let (status, _, _) = post(&manager, &server, &format!("/my/approvals/{id}"), &approve).await;
    assert_eq!(status, 403, "one person does not give two approvals");

    // The owning manager's approval grants the role; the requester sees it and was told.
    let (owner_browser, html) = logged_in(&server, "owner.manager", "/my/approvals").await;
    let csrf = hidden_input(&html, "csrf_token");
    let approve = [("csrf_token", csrf.as_str()), ("decision", "approve"), ("reason", "")];
    let (status, _, _) = post(&owner_browser, &server, &format!("/my/approvals/{id}"), &approve).await;
    assert_eq!(status, 303);
    let html = requester.get(format!("{}/my/access", server.public_url)).send().await.unwrap().text().await.unwrap();
    let held = html.split("id=\"requests-heading\"").next().unwrap();
    assert!(held.contains("課税状況の照会") && held.contains(&end), "{held}");
    let notices = requester.get(format!("{}/my/notices", server.public_url)).send().await.unwrap();
    assert!(notices.text().await.unwrap().contains("利用申請が承認されました"));
    // A language switch: the role's English label.
    let en = requester.get(format!("{}/my/access?lang=en", server.public_url)).send().await.unwrap();
    assert!(en.text().await.unwrap().contains("Look up tax status"));
    server.stop().await;
}

on_both_databases!(the_access_pages_do_only_what_is_the_persons_to_do);
