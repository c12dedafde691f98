//! What attack probes from outside found, each as the behaviour that now holds: CSRF tokens a
//! planted cookie cannot buy, password guessing from a live session counted toward the lockout,
//! a new login that ends the browser's earlier session, slow clients cut off, the admin API
//! authorising before it reads a body, API tokens that cannot outlive their parent, and the
//! password policy seeing through leetspeak, reversal, romaji section names and half-width kana.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::{CookieStore, Jar};
use serde_json::{json, Value};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{authorize_url, browser, hidden_input, location, log_in, query_of, Db, TestServer};

const PASSWORD: &str = "shinkansen-no-kippu-2026";
const REDIRECT: &str = "http://127.0.0.1:9001/callback";

async fn setup(db: Db) -> TestServer {
    let server = TestServer::start(db).await;
    server.add_person("E9001", "kimura", PASSWORD).await;
    server
        .add_client(
            json!({"client_id": "zeimu", "name": "税務", "client_type": "confidential", "redirect_uris": [REDIRECT]}),
        )
        .await;
    server
}

fn auth_url(server: &TestServer, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "zeimu"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "st"),
    ];
    params.extend_from_slice(extra);
    authorize_url(server, &params)
}

/// A browser whose cookies the test can read and plant.
fn browser_with_jar() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client =
        crate::common::client().cookie_provider(jar.clone()).redirect(reqwest::redirect::Policy::none()).build();
    (client.unwrap(), jar)
}

fn cookie_value(jar: &Jar, server: &TestServer, name: &str) -> Option<String> {
    let header = jar.cookies(&server.public_url.parse().unwrap())?;
    header.to_str().unwrap().split("; ").find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// The URL of the login page for a fresh authorization request.
async fn login_page_url(server: &TestServer) -> String {
    let response = server.http.get(auth_url(server, &[])).send().await.unwrap();
    assert_eq!(response.status(), 303);
    format!("{}{}", server.public_url, location(&response))
}

async fn gets_a_code(client: &reqwest::Client, server: &TestServer) -> bool {
    let response = client.get(auth_url(server, &[("prompt", "none")])).send().await.unwrap();
    response.status() == 303 && query_of(&location(&response)).contains_key("code")
}

async fn a_csrf_cookie_the_server_did_not_issue_is_replaced(db: Db) {
    let server = setup(db).await;
    let planted = "A".repeat(40);
    let response = server
        .http
        .get(login_page_url(&server).await)
        .header("cookie", format!("sekimori_csrf={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let replaced = set_cookies(&response);
    assert!(
        replaced.iter().any(|c| c.starts_with("sekimori_csrf=") && !c.starts_with(&format!("sekimori_csrf={planted}"))),
        "the planted value is replaced by one the server issues: {replaced:?}"
    );
    // The page's token does not belong to the planted value.
    let token = hidden_input(&response.text().await.unwrap(), "csrf_token");
    let forged = server
        .http
        .post(format!("{}/logout", server.public_url))
        .header("cookie", format!("sekimori_csrf={planted}"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    server.stop().await;
}

async fn a_form_token_from_another_browser_cannot_end_my_session(db: Db) {
    let server = setup(db).await;
    let (victim, jar) = browser_with_jar();
    let url = auth_url(&server, &[]);
    let login_page = victim.get(&url).send().await.unwrap();
    let login_page = victim.get(format!("{}{}", server.public_url, location(&login_page))).send().await.unwrap();
    drop(login_page.text().await.unwrap());
    let before_login = cookie_value(&jar, &server, "sekimori_csrf").expect("a CSRF cookie on the login page");
    assert_eq!(log_in(&victim, &server, &url, "kimura", PASSWORD).await.status(), 303);
    let after_login = cookie_value(&jar, &server, "sekimori_csrf").expect("a CSRF cookie after login");
    assert_ne!(before_login, after_login, "the CSRF secret is rotated at login");
    assert!(gets_a_code(&victim, &server).await);

    // The attacker visits the login page themselves: a genuine cookie and its form token.
    let attacker = browser();
    let page = attacker.get(login_page_url(&server).await).send().await.unwrap();
    let attacker_cookie = set_cookies(&page)
        .iter()
        .find_map(|c| c.strip_prefix("sekimori_csrf=").map(|rest| rest.split(';').next().unwrap().to_owned()))
        .expect("the attacker gets a cookie");
    let attacker_token = hidden_input(&page.text().await.unwrap(), "csrf_token");
    // … plants that cookie in the victim's browser (from a sibling subdomain) and makes it post.
    jar.add_cookie_str(&format!("sekimori_csrf={attacker_cookie}; Path=/"), &server.public_url.parse().unwrap());
    let forced = victim
        .post(format!("{}/logout", server.public_url))
        .form(&[("csrf_token", attacker_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 403, "a token not bound to my session is refused");
    assert!(gets_a_code(&victim, &server).await, "my session is still live");
    // Even my own page's token does not let a sibling subdomain or another site post for me.
    let home = victim.get(format!("{}/my", server.public_url)).send().await.unwrap().text().await.unwrap();
    let mine = hidden_input(&home, "csrf_token");
    for site in ["same-site", "cross-site"] {
        let posted = victim
            .post(format!("{}/logout", server.public_url))
            .header("sec-fetch-site", site)
            .form(&[("csrf_token", mine.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 403, "Sec-Fetch-Site: {site}");
    }
    assert!(gets_a_code(&victim, &server).await, "my session is still live");
    let own = victim.post(format!("{}/logout", server.public_url)).form(&[("csrf_token", mine.as_str())]).send().await;
    assert_eq!(own.unwrap().status(), 200, "from my own page, the same token logs me out");
    assert!(!gets_a_code(&victim, &server).await);
    server.stop().await;
}

/// Behind TLS the CSRF cookie carries the `__Host-` prefix, which only this origin over https
/// can set: no sibling subdomain, no plain-http page.
async fn behind_tls_the_csrf_cookie_is_host_only(db: Db) {
    let server = TestServer::start_configured(db, |config| config.secure_cookies = Some(true)).await;
    server
        .add_client(
            json!({"client_id": "zeimu", "name": "税務", "client_type": "confidential", "redirect_uris": [REDIRECT]}),
        )
        .await;
    let page = server.http.get(login_page_url(&server).await).send().await.unwrap();
    let cookie = set_cookies(&page).into_iter().find(|c| c.contains("csrf")).expect("a CSRF cookie");
    assert!(cookie.starts_with("__Host-sekimori_csrf="), "{cookie}");
    for part in ["Secure", "HttpOnly", "Path=/", "SameSite=Strict"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(!cookie.to_lowercase().contains("domain="), "{cookie}");
    server.stop().await;
}

/// A request whose body never finishes is answered 408 when its time is up.
async fn a_request_that_takes_too_long_is_answered_408(db: Db) {
    let server = TestServer::start_configured(db, |config| config.limits.request_timeout_seconds = 1).await;
    let target: std::net::SocketAddr = server.public_url.trim_start_matches("http://").parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
    stream
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: sekimori\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server answered within 5 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    server.stop().await;
}

async fn wrong_current_passwords_on_the_change_form_count_toward_the_lockout(db: Db) {
    let server = setup(db).await;
    let b = browser();
    assert_eq!(log_in(&b, &server, &auth_url(&server, &[]), "kimura", PASSWORD).await.status(), 303);
    let page = b.get(format!("{}/password", server.public_url)).send().await.unwrap().text().await.unwrap();
    let csrf = hidden_input(&page, "csrf_token");
    let change = |current: String| {
        let (b, url, csrf) = (b.clone(), format!("{}/password", server.public_url), csrf.clone());
        async move {
            b.post(url)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("current_password", current.as_str()),
                    ("new_password", "yuugure-no-hashi-wo-wataru"),
                    ("confirm_password", "yuugure-no-hashi-wo-wataru"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let guesses = futures_util::future::join_all((0..25).map(|i| change(format!("guess-number-{i}-of-many")))).await;
    assert!(guesses.iter().all(|s| *s == 422 || *s == 429), "every guess is refused: {guesses:?}");
    let row = sqlx::query("SELECT failed_logins, locked_until FROM accounts WHERE login_id = 'kimura'")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap();
    let failures: i64 = row.try_get("failed_logins").unwrap();
    let locked_until: Option<i64> = row.try_get("locked_until").unwrap();
    assert!(failures >= 5, "the guesses were counted: {failures}");
    assert!(locked_until.is_some(), "and locked the account");
    // While locked, even the right current password changes nothing.
    assert_ne!(change(PASSWORD.to_owned()).await, 200, "no change while the account is locked");
    let login = log_in(&browser(), &server, &auth_url(&server, &[]), "kimura", PASSWORD).await;
    assert_eq!(login.status(), 401, "and no login either");
    // Each verification is an access record.
    let (_, events) = server.admin(reqwest::Method::GET, "/api/v1/audit/events?limit=1000", None).await;
    let refused = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "password.change" && e["outcome"] == "failure")
        .count();
    assert!(refused >= 26, "every refused verification is audited: {refused}");
    // Once the lock has passed, the right password works again.
    server.app.clock.advance(7200);
    assert_eq!(change(PASSWORD.to_owned()).await, 401, "the session has idled out meanwhile");
    let login = log_in(&browser(), &server, &auth_url(&server, &[]), "kimura", PASSWORD).await;
    assert_eq!(login.status(), 303);
    server.stop().await;
}

async fn a_new_login_ends_the_earlier_session_of_the_browser(db: Db) {
    let server = setup(db).await;
    let (b, jar) = browser_with_jar();
    assert_eq!(log_in(&b, &server, &auth_url(&server, &[]), "kimura", PASSWORD).await.status(), 303);
    let first = cookie_value(&jar, &server, "sekimori_session").expect("a session cookie");
    // The consuming system asks for a fresh login (prompt=login): the browser logs in again.
    let again = log_in(&b, &server, &auth_url(&server, &[("prompt", "login")]), "kimura", PASSWORD).await;
    assert_eq!(again.status(), 303);
    let second = cookie_value(&jar, &server, "sekimori_session").expect("a session cookie");
    assert_ne!(first, second);
    // The earlier session's cookie obtains nothing any more.
    let old = crate::common::client().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = old
        .get(auth_url(&server, &[("prompt", "none")]))
        .header("cookie", format!("sekimori_session={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(query_of(&location(&response)).get("error").map(String::as_str), Some("login_required"));
    assert!(gets_a_code(&b, &server).await, "the new session works");
    let live = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE revoked_at IS NULL")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap();
    assert_eq!(live, 1, "one browser, one session");
    server.stop().await;
}

/// Opens a connection from `source` and sends the start of a request that never ends.
async fn slow_connection(server: &TestServer, source: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let target = server.public_url.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: sekimori\r\nX-Slow: ").await.unwrap();
    stream
}

/// True when the server closes the connection (end of stream or reset) within `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 answer before the close is fine too.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn a_client_that_never_finishes_its_headers_is_cut_off(db: Db) {
    let server = TestServer::start_configured(db, |config| config.limits.header_read_timeout_seconds = 2).await;
    let mut stream = slow_connection(&server, "127.0.0.1").await;
    let started = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await, "the slow client is disconnected");
    eprintln!("slow client cut off after {:?}", started.elapsed());
    server.stop().await;
}

async fn connections_are_capped_per_source_and_others_are_still_answered(db: Db) {
    let server = TestServer::start_configured(db, |config| config.limits.max_connections_per_source = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(slow_connection(&server, "127.0.0.2").await);
    }
    let mut over = slow_connection(&server, "127.0.0.2").await;
    assert!(closed_within(&mut over, Duration::from_secs(2)).await, "the fifth connection from one source is closed");
    // Another client is answered meanwhile.
    let started = Instant::now();
    let health = server.http.get(format!("{}/health", server.public_url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    eprintln!("a normal request beside 4 held connections answered in {:?}", started.elapsed());
    // The held ones are still open (nothing was cut for the others' sake).
    for stream in &mut held {
        assert!(!closed_within(stream, Duration::from_millis(100)).await);
    }
    server.stop().await;
}

async fn a_caller_without_the_right_hears_403_before_anything_about_the_body(db: Db) {
    let server = setup(db).await;
    let (status, limited) = server
        .admin(reqwest::Method::POST, "/api/v1/api-tokens", Some(json!({"name": "窓口", "scopes": ["hotline"]})))
        .await;
    assert_eq!(status, 201, "{limited}");
    let limited = limited["token"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("/api/v1/people", "[1, 2"),
        ("/api/v1/people", "{\"unexpected\": true}"),
        ("/api/v1/clients", "null"),
        ("/api/v1/api-tokens", "{\"name\": 5}"),
        ("/api/v1/org-units", "{}"),
    ] {
        let response = server
            .http
            .post(format!("{}{path}", server.admin_url))
            .bearer_auth(&limited)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path} with {body}");
        let anonymous = server
            .http
            .post(format!("{}{path}", server.admin_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{path} with {body}, no token");
    }
    server.stop().await;
}

async fn an_api_token_cannot_outlive_the_token_that_made_it(db: Db) {
    let server = setup(db).await;
    let (status, parent) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "短命", "scopes": ["tokens:write", "directory:read"], "expires_in": 120})),
        )
        .await;
    assert_eq!(status, 201, "{parent}");
    let parent_expiry = parent["expires_at"].as_i64().unwrap();
    let parent = parent["token"].as_str().unwrap().to_owned();
    let mint = |body: Value| {
        let (http, url, parent) = (server.http.clone(), format!("{}/api/v1/api-tokens", server.admin_url), &parent);
        async move {
            let response = http.post(url).bearer_auth(parent).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, refused) =
        mint(json!({"name": "長命", "scopes": ["directory:read"], "expires_in": 366 * 86_400})).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "expires_in");
    let (status, child) = mint(json!({"name": "既定", "scopes": ["directory:read"]})).await;
    assert_eq!(status, 201, "{child}");
    assert!(child["expires_at"].as_i64().unwrap() <= parent_expiry, "the default lifetime stops at the parent's end");
    server.stop().await;
}

async fn personal_words_in_disguise_are_still_personal(db: Db) {
    let server = TestServer::start(db).await;
    let person = crate::common::tanaka(&server).await;
    for (password, what) in [
        ("K3n1ch1-no-fuyu-yasumi-ni", "your name"),
        ("T4n4k4-ga-umibe-de-hashiru", "your name"),
        ("ihcinek-no-fuyu-yasumi-ni", "your name"),
        ("akanat-ga-umibe-de-hashiru", "your name"),
        ("zeimu-no-fuyu-yasumi-ni-kaze", "section"),
        ("Z31MU-no-fuyu-yasumi-ni-kaze", "section"),
        ("ｹﾝｲﾁ-no-fuyu-yasumi-ni-kaze", "your name"),
    ] {
        let (status, problem) = server
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/people/{person}/account"),
                Some(json!({"login_id": "tanaka.k", "password": password, "require_change": false})),
            )
            .await;
        assert_eq!(status, 422, "{password} is refused: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(what), "{password} is refused as personal ({what}): {detail}");
    }
    let (status, account) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{person}/account"),
            Some(json!({"login_id": "tanaka.k", "password": "umibe-no-kaze-fuyu-no-sora", "require_change": false})),
        )
        .await;
    assert_eq!(status, 201, "an unrelated passphrase is accepted: {account}");
    server.stop().await;
}

/// An address that does not exist gets Sekimori's page, in Japanese first, not an empty body.
async fn an_unknown_address_gets_sekimoris_own_page(db: Db) {
    let server = TestServer::start(db).await;
    let response = server.http.get(format!("{}/no/such/page", server.public_url)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("lang=\"ja\"") && page.contains("見つかりません"), "{page}");
    server.stop().await;
}

on_both_databases!(
    an_unknown_address_gets_sekimoris_own_page,
    behind_tls_the_csrf_cookie_is_host_only,
    a_request_that_takes_too_long_is_answered_408,
    a_csrf_cookie_the_server_did_not_issue_is_replaced,
    a_form_token_from_another_browser_cannot_end_my_session,
    wrong_current_passwords_on_the_change_form_count_toward_the_lockout,
    a_new_login_ends_the_earlier_session_of_the_browser,
    a_client_that_never_finishes_its_headers_is_cut_off,
    connections_are_capped_per_source_and_others_are_still_answered,
    a_caller_without_the_right_hears_403_before_anything_about_the_body,
    an_api_token_cannot_outlive_the_token_that_made_it,
    personal_words_in_disguise_are_still_personal,
);
