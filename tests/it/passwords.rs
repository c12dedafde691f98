//! The password policy as people meet it: expiry forcing a change before any code, the warning
//! period, no shared or reused passwords, other sessions ending on change, lockout with
//! backoff, throttling per source, and the help desk's reset, compromise and unlock.

use serde_json::json;

use crate::common::{authorize_url, browser, hidden_input, location, log_in, query_of, Db, TestServer};

const REDIRECT: &str = "http://127.0.0.1:9001/callback";
const DAY: i64 = 86_400;

async fn setup(db: Db) -> (TestServer, String) {
    let server = TestServer::start(db).await;
    let person = server.add_person("E7001", "nakamura", "umibe-no-kaze-fuyu-no-sora").await;
    server
        .add_client(
            json!({"client_id": "zeimu", "name": "税務", "client_type": "confidential", "redirect_uris": [REDIRECT]}),
        )
        .await;
    (server, person)
}

fn auth_url(server: &TestServer) -> String {
    authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", "zeimu"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "st"),
        ],
    )
}

/// Posts a form to a page of the public listener from `browser`.
async fn post(browser: &reqwest::Client, server: &TestServer, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser.post(format!("{}{path}", server.public_url)).form(form).send().await.unwrap()
}

fn is_code_redirect(response: &reqwest::Response) -> bool {
    response.status() == 303
        && location(response).starts_with(REDIRECT)
        && query_of(&location(response)).contains_key("code")
}

async fn expired_password_forces_a_change_before_any_code(db: Db) {
    let (server, _) = setup(db).await;
    server.app.clock.advance(91 * DAY);
    let b = browser();
    let page = log_in(&b, &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await;
    assert_eq!(page.status(), 200, "the change form, not a redirect");
    let html = page.text().await.unwrap();
    assert!(html.contains("有効期限"), "{html}");
    assert_eq!(server.count("auth_codes").await, 0, "no code before the change");
    assert_eq!(server.count("sessions").await, 0, "no session before the change");
    let ticket = hidden_input(&html, "ticket");
    let csrf = hidden_input(&html, "csrf_token");
    // The new password is held to the policy: here it contains the person's birth date.
    let weak = post(
        &b,
        &server,
        "/password/reset",
        &[
            ("csrf_token", &csrf),
            ("ticket", &ticket),
            ("new_password", "kaze-19900512-sora"),
            ("confirm_password", "kaze-19900512-sora"),
        ],
    )
    .await;
    assert_eq!(weak.status(), 422);
    let body = weak.text().await.unwrap();
    assert!(body.contains("role=\"alert\""));
    assert!(body.contains("生年月日") || body.contains("誕生日"), "{body}");
    assert_eq!(server.count("auth_codes").await, 0);
    // The same password again is not a change.
    let same = post(
        &b,
        &server,
        "/password/reset",
        &[
            ("csrf_token", &csrf),
            ("ticket", &ticket),
            ("new_password", "umibe-no-kaze-fuyu-no-sora"),
            ("confirm_password", "umibe-no-kaze-fuyu-no-sora"),
        ],
    )
    .await;
    assert_eq!(same.status(), 422);
    let done = post(
        &b,
        &server,
        "/password/reset",
        &[
            ("csrf_token", &csrf),
            ("ticket", &ticket),
            ("new_password", "yuugure-no-hashi-wo-wataru"),
            ("confirm_password", "yuugure-no-hashi-wo-wataru"),
        ],
    )
    .await;
    assert!(is_code_redirect(&done), "the interrupted login completes: {}", done.status());
    assert_eq!(query_of(&location(&done))["state"], "st");
    // The ticket is spent, the old password is gone, the new one works.
    // (The login rotated the CSRF secret: the page's token is spent too; a fresh one from this
    // browser shows the ticket itself is.)
    let stale = post(
        &b,
        &server,
        "/password/reset",
        &[
            ("csrf_token", &csrf),
            ("ticket", &ticket),
            ("new_password", "another-long-passphrase-x"),
            ("confirm_password", "another-long-passphrase-x"),
        ],
    )
    .await;
    assert_eq!(stale.status(), 403);
    let fresh = b.get(format!("{}/password", server.public_url)).send().await.unwrap().text().await.unwrap();
    let reused = post(
        &b,
        &server,
        "/password/reset",
        &[
            ("csrf_token", &hidden_input(&fresh, "csrf_token")),
            ("ticket", &ticket),
            ("new_password", "another-long-passphrase-x"),
            ("confirm_password", "another-long-passphrase-x"),
        ],
    )
    .await;
    assert_eq!(reused.status(), 400);
    let old = log_in(&browser(), &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await;
    assert_eq!(old.status(), 401);
    let new = log_in(&browser(), &server, &auth_url(&server), "nakamura", "yuugure-no-hashi-wo-wataru").await;
    assert!(is_code_redirect(&new));
    server.stop().await;
}

async fn expiry_is_announced_during_the_warning_period(db: Db) {
    let (server, _) = setup(db).await;
    server.app.clock.advance(80 * DAY);
    let b = browser();
    let page = log_in(&b, &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("あと10日"), "{html}");
    let continued = post(
        &b,
        &server,
        "/login/continue",
        &[("csrf_token", &hidden_input(&html, "csrf_token")), ("request", &hidden_input(&html, "request"))],
    )
    .await;
    assert!(is_code_redirect(&continued));
    server.stop().await;
}

async fn change_password(b: &reqwest::Client, server: &TestServer, current: &str, new: &str) -> reqwest::Response {
    let form = b.get(format!("{}/password", server.public_url)).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    post(
        b,
        server,
        "/password",
        &[
            ("csrf_token", &hidden_input(&html, "csrf_token")),
            ("current_password", current),
            ("new_password", new),
            ("confirm_password", new),
        ],
    )
    .await
}

async fn shared_and_recent_passwords_are_refused(db: Db) {
    let (server, _) = setup(db).await;
    server.add_person("E7002", "kimura", "tsuki-no-hikari-umi-no-oto").await;
    let b = browser();
    assert!(is_code_redirect(&log_in(&b, &server, &auth_url(&server), "kimura", "tsuki-no-hikari-umi-no-oto").await));
    // nakamura's password is taken.
    let shared = change_password(&b, &server, "tsuki-no-hikari-umi-no-oto", "umibe-no-kaze-fuyu-no-sora").await;
    assert_eq!(shared.status(), 422);
    let body = shared.text().await.unwrap();
    assert!(body.contains("ほかの人と同じパスワードは使えない"), "{body}");
    assert!(!body.contains("nakamura"), "whose password it is stays unsaid");
    // A fresh one is fine; the previous one cannot come back.
    let changed = change_password(&b, &server, "tsuki-no-hikari-umi-no-oto", "aki-no-yuuhi-to-kaede-no-ha").await;
    assert_eq!(changed.status(), 200);
    let back = change_password(&b, &server, "aki-no-yuuhi-to-kaede-no-ha", "tsuki-no-hikari-umi-no-oto").await;
    assert_eq!(back.status(), 422);
    assert!(back.text().await.unwrap().contains("直近5回"));
    // The wrong current password changes nothing.
    let wrong = change_password(&b, &server, "not-my-password", "haru-no-ame-sakura-chiru").await;
    assert_eq!(wrong.status(), 422);
    // The refusals are audited.
    use sqlx::Row;
    let refusals: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'password.change' AND outcome = 'failure'")
            .fetch_one(server.app.store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(refusals, 3);
    server.stop().await;
}

async fn a_password_change_ends_the_other_sessions(db: Db) {
    let (server, _) = setup(db).await;
    let here = browser();
    let elsewhere = browser();
    assert!(is_code_redirect(
        &log_in(&here, &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await
    ));
    assert!(is_code_redirect(
        &log_in(&elsewhere, &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await
    ));
    let changed = change_password(&here, &server, "umibe-no-kaze-fuyu-no-sora", "yuki-no-yoru-no-shizukesa").await;
    assert_eq!(changed.status(), 200);
    // This browser stays logged in: SSO still answers with a code.
    assert!(is_code_redirect(&here.get(auth_url(&server)).send().await.unwrap()));
    // The other one is sent back to the login page.
    let other = elsewhere.get(auth_url(&server)).send().await.unwrap();
    assert_eq!(other.status(), 303);
    assert!(location(&other).starts_with("/login?"), "{}", location(&other));
    server.stop().await;
}

async fn repeated_failures_lock_the_account_with_backoff(db: Db) {
    let (server, _) = setup(db).await;
    let attempt = |password: &'static str| {
        let server = &server;
        async move { log_in(&browser(), server, &auth_url(server), "nakamura", password).await }
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong-password-guess").await.status(), 401);
    }
    // Locked: even the right password is refused, with the same page as a wrong one.
    let locked = attempt("umibe-no-kaze-fuyu-no-sora").await;
    assert_eq!(locked.status(), 401);
    let locked_body = locked.text().await.unwrap();
    let wrong_body = attempt("wrong-password-guess").await.text().await.unwrap();
    let normalise = |b: &str| b.replace(&hidden_input(b, "request"), "R").replace(&hidden_input(b, "csrf_token"), "C");
    assert_eq!(normalise(&locked_body), normalise(&wrong_body));
    // 30 s lock from the fifth failure; no attempt counts while locked.
    server.app.clock.advance(31);
    assert!(is_code_redirect(&attempt("umibe-no-kaze-fuyu-no-sora").await), "the lock ends after 30 s");
    // Success reset the count; five more failures lock again, a sixth (after the lock) doubles it.
    for _ in 0..5 {
        attempt("wrong-password-guess").await;
    }
    server.app.clock.advance(31);
    attempt("wrong-password-guess").await;
    server.app.clock.advance(31);
    assert_eq!(attempt("umibe-no-kaze-fuyu-no-sora").await.status(), 401, "the second lock lasts 60 s");
    server.app.clock.advance(30);
    assert!(is_code_redirect(&attempt("umibe-no-kaze-fuyu-no-sora").await));
    server.stop().await;
}

async fn one_source_address_is_throttled(db: Db) {
    let (server, _) = setup(db).await;
    let max = server.app.config.password.source_max_failures;
    for i in 0..max {
        let r = log_in(&browser(), &server, &auth_url(&server), &format!("nobody{i}"), "wrong-password-guess").await;
        assert_eq!(r.status(), 401);
    }
    let blocked = log_in(&browser(), &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await;
    assert_eq!(blocked.status(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    server.app.clock.advance(server.app.config.password.source_window_seconds + 1);
    assert!(is_code_redirect(
        &log_in(&browser(), &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await
    ));
    server.stop().await;
}

async fn help_desk_resets_unlocks_and_handles_compromise(db: Db) {
    let (server, person) = setup(db).await;
    let scoped = |scopes: serde_json::Value| {
        let server = &server;
        async move {
            let (status, body) = server
                .admin(reqwest::Method::POST, "/api/v1/api-tokens", Some(json!({"name": "窓口", "scopes": scopes})))
                .await;
            assert_eq!(status, 201);
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let helpdesk = scoped(json!(["passwords:reset"])).await;
    let reader = scoped(json!(["directory:read"])).await;
    let call = |token: String, path: String| {
        let http = server.http.clone();
        let url = format!("{}{path}", server.admin_url);
        async move {
            let r = http.post(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    assert_eq!(call(reader.clone(), format!("/api/v1/people/{person}/password-reset")).await.0, 403);

    // Compromise: the password stops working and every session ends.
    let b = browser();
    assert!(is_code_redirect(&log_in(&b, &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await));
    let (status, report) = call(helpdesk.clone(), format!("/api/v1/people/{person}/password-compromised")).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["sessions_revoked"], 1);
    assert_eq!(
        log_in(&browser(), &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await.status(),
        401
    );
    assert_eq!(b.get(auth_url(&server)).send().await.unwrap().status(), 303);
    assert!(location(&b.get(auth_url(&server)).send().await.unwrap()).starts_with("/login?"));

    // The reset link sets a new password once.
    let link = report["reset_url"].as_str().unwrap().to_owned();
    let path = link.trim_start_matches(&server.public_url).to_owned();
    let page = b.get(format!("{}{path}", server.public_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let (csrf, ticket) = (hidden_input(&html, "csrf_token"), hidden_input(&html, "ticket"));
    let set = post(
        &b,
        &server,
        "/password/reset",
        &[
            ("csrf_token", &csrf),
            ("ticket", &ticket),
            ("new_password", "hoshi-zora-no-shita-de-nemuru"),
            ("confirm_password", "hoshi-zora-no-shita-de-nemuru"),
        ],
    )
    .await;
    assert_eq!(set.status(), 200);
    assert_eq!(b.get(format!("{}{path}", server.public_url)).send().await.unwrap().status(), 400, "single use");
    assert!(is_code_redirect(
        &log_in(&browser(), &server, &auth_url(&server), "nakamura", "hoshi-zora-no-shita-de-nemuru").await
    ));

    // Unlock lifts a lockout at once.
    for _ in 0..5 {
        log_in(&browser(), &server, &auth_url(&server), "nakamura", "wrong-password-guess").await;
    }
    assert_eq!(
        log_in(&browser(), &server, &auth_url(&server), "nakamura", "hoshi-zora-no-shita-de-nemuru").await.status(),
        401
    );
    let (status, _) = call(helpdesk.clone(), format!("/api/v1/people/{person}/unlock")).await;
    assert_eq!(status, 204);
    assert!(is_code_redirect(
        &log_in(&browser(), &server, &auth_url(&server), "nakamura", "hoshi-zora-no-shita-de-nemuru").await
    ));

    // A reset link can also be issued without a compromise; nobody ever sees a password.
    let (status, link) = call(helpdesk, format!("/api/v1/people/{person}/password-reset")).await;
    assert_eq!(status, 201);
    assert!(link["reset_url"].as_str().unwrap().contains("/password/reset?ticket="));
    assert!(link.get("password").is_none());
    server.stop().await;
}

async fn admin_set_first_password_must_be_changed(db: Db) {
    let (server, _) = setup(db).await;
    let (_, person) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/people",
            Some(json!({"employee_number": "E7100", "family_name": "新人", "given_name": "一", "family_name_kana": "シンジン",
                        "given_name_kana": "ハジメ", "kind": "regular", "start_date": "2020-04-01"})),
        )
        .await;
    let (status, _) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{}/account", person["id"].as_str().unwrap()),
            Some(json!({"login_id": "shinjin", "password": "kari-no-pasuwaado-desu"})),
        )
        .await;
    assert_eq!(status, 201);
    let page = log_in(&browser(), &server, &auth_url(&server), "shinjin", "kari-no-pasuwaado-desu").await;
    assert_eq!(page.status(), 200, "the change form first");
    assert!(page.text().await.unwrap().contains("name=\"ticket\""));
    assert_eq!(server.count("auth_codes").await, 0);
    server.stop().await;
}

on_both_databases!(
    expired_password_forces_a_change_before_any_code,
    expiry_is_announced_during_the_warning_period,
    shared_and_recent_passwords_are_refused,
    a_password_change_ends_the_other_sessions,
    repeated_failures_lock_the_account_with_backoff,
    one_source_address_is_throttled,
    help_desk_resets_unlocks_and_handles_compromise,
    admin_set_first_password_must_be_changed,
    sessions_end_when_idle_or_too_old,
    a_reset_link_sets_one_password_even_when_sent_twice_at_once,
    a_hash_made_with_older_parameters_is_replaced_at_the_next_login,
);

/// The person's stored password hash and when their password was last changed.
async fn stored_hash(server: &TestServer, person: &str) -> (String, Option<i64>) {
    use sqlx::Row;
    let row = sqlx::query("SELECT password_hash, password_changed_at FROM accounts WHERE person_id = $1")
        .bind(person)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap();
    (row.try_get("password_hash").unwrap(), row.try_get("password_changed_at").unwrap())
}

/// R12: when an operator raises the argon2 cost, a hash made with the old parameters is made
/// again with the new ones at the person's next successful login, while the password is at
/// hand. A wrong password replaces nothing; the new hash is kept, not made again at every
/// login; and making it again is not a password change (the expiry clock of R10 keeps running).
async fn a_hash_made_with_older_parameters_is_replaced_at_the_next_login(db: Db) {
    let (server, person) = setup(db).await;
    let (before, changed_at) = stored_hash(&server, &person).await;
    assert!(before.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "made with the test parameters: {before}");
    let server = server
        .restart_configured(|config| {
            config.password.argon2_memory_kib = 2048;
            config.password.argon2_iterations = 2;
        })
        .await;

    let wrong = log_in(&browser(), &server, &auth_url(&server), "nakamura", "machigai-no-pasuwaado-yoru").await;
    assert!(!is_code_redirect(&wrong), "a wrong password is refused");
    assert_eq!(stored_hash(&server, &person).await, (before.clone(), changed_at), "a refusal replaces nothing");

    let right = log_in(&browser(), &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await;
    assert!(is_code_redirect(&right), "the password still opens the account: {}", right.status());
    let (after, changed_after) = stored_hash(&server, &person).await;
    assert!(after.starts_with("$argon2id$v=19$m=2048,t=2,p=1$"), "made again with the new parameters: {after}");
    assert_ne!(after, before);
    assert_eq!(changed_after, changed_at, "a hash made again is not a password change");

    let again = log_in(&browser(), &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await;
    assert!(is_code_redirect(&again), "the new hash opens the account");
    assert_eq!(stored_hash(&server, &person).await.0, after, "a hash with the current parameters is kept");
    server.stop().await;
}

async fn sessions_end_when_idle_or_too_old(db: Db) {
    let (server, _) = setup(db).await;
    let b = browser();
    assert!(is_code_redirect(&log_in(&b, &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await));
    let session = server.app.config.session.clone();
    // Used within the idle timeout, the session lives on (each use resets the idle clock)...
    for _ in 0..3 {
        server.app.clock.advance(session.idle_timeout - 60);
        assert!(is_code_redirect(&b.get(auth_url(&server)).send().await.unwrap()), "still logged in");
    }
    // ...but left idle past it, it ends.
    server.app.clock.advance(session.idle_timeout + 1);
    let idle = b.get(auth_url(&server)).send().await.unwrap();
    assert!(location(&idle).starts_with("/login?"), "idle session ended");
    // However busy, a session ends at its absolute timeout.
    let b = browser();
    assert!(is_code_redirect(&log_in(&b, &server, &auth_url(&server), "nakamura", "umibe-no-kaze-fuyu-no-sora").await));
    let mut elapsed = 0;
    while elapsed + session.idle_timeout / 2 < session.absolute_timeout {
        server.app.clock.advance(session.idle_timeout / 2);
        elapsed += session.idle_timeout / 2;
        assert!(is_code_redirect(&b.get(auth_url(&server)).send().await.unwrap()));
    }
    server.app.clock.advance(session.absolute_timeout - elapsed + 1);
    let old = b.get(auth_url(&server)).send().await.unwrap();
    assert!(location(&old).starts_with("/login?"), "absolute timeout");
    server.stop().await;
}

/// A reset link sent twice at once (a double click, or someone racing the person) sets one
/// password, not two: the ticket is used up in the same transaction as the change.
async fn a_reset_link_sets_one_password_even_when_sent_twice_at_once(db: Db) {
    let (server, person) = setup(db).await;
    let (status, link) =
        server.admin(reqwest::Method::POST, &format!("/api/v1/people/{person}/password-reset"), None).await;
    assert_eq!(status, 201, "{link}");
    let b = browser();
    let page = b.get(link["reset_url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    let (csrf, ticket) = (hidden_input(&page, "csrf_token"), hidden_input(&page, "ticket"));
    let submit = |password: &'static str| {
        let (b, url, csrf, ticket) =
            (b.clone(), format!("{}/password/reset", server.public_url), csrf.clone(), ticket.clone());
        async move {
            let form = [
                ("csrf_token", csrf.as_str()),
                ("ticket", ticket.as_str()),
                ("new_password", password),
                ("confirm_password", password),
            ];
            b.post(url).form(&form).send().await.unwrap().status().as_u16()
        }
    };
    let first = "nagai-yoru-no-hoshizora-miru";
    let second = "fuyu-no-asa-no-shimobashira";
    let (a, c) = tokio::join!(submit(first), submit(second));
    let mut statuses = [a, c];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "one change counts, the other finds the link used");
    let server_ref = &server;
    let works = |password: &'static str| async move {
        is_code_redirect(&log_in(&browser(), server_ref, &auth_url(server_ref), "nakamura", password).await)
    };
    assert!(works(first).await ^ works(second).await, "exactly one of the two passwords was set");
    server.stop().await;
}
