//! IC cards and security keys with a software FIDO2 authenticator (webauthn-authenticator-rs):
//! enrollment with a code, the card as second factor, step-up, the hotline's report and what
//! it ends, and a revoked card that can no longer log in.

use std::time::Instant;

use serde_json::{json, Value};
use url::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::softtoken::{SoftToken, AAGUID as SOFT_TOKEN_AAGUID};
use webauthn_authenticator_rs::{AuthenticatorBackend, WebauthnAuthenticator};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

use crate::common::{
    authorize_url, browser, hidden_input, location, log_in, pkce_pair, query_of, token_request, Db, TestServer,
};

pub(crate) const PASSWORD: &str = "shinkansen-no-kippu-2026";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:9001/callback";

pub(crate) async fn start(db: Db, card_always: bool) -> TestServer {
    // WebAuthn needs a domain: the issuer is named localhost (requests still go to 127.0.0.1).
    TestServer::start_configured(db, move |config| {
        config.issuer = format!("http://localhost:{}", config.public_addr.port());
        config.webauthn.require_card_when_enrolled = card_always;
    })
    .await
}

pub(crate) fn attr(html: &str, name: &str) -> String {
    let marker = format!("{name}=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in page:\n{html}")) + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
}

/// A card page's ceremony: (token, csrf, options JSON).
pub(crate) fn ceremony_of(html: &str) -> (String, String, Value) {
    (attr(html, "data-ceremony"), attr(html, "data-csrf"), serde_json::from_str(&attr(html, "data-options")).unwrap())
}

pub(crate) struct Card<T: AuthenticatorBackend = SoftPasskey> {
    authenticator: WebauthnAuthenticator<T>,
}

impl Card<SoftPasskey> {
    pub(crate) fn new() -> Card {
        Card { authenticator: WebauthnAuthenticator::new(SoftPasskey::new(true)) }
    }
}

impl<T: AuthenticatorBackend> Card<T> {
    pub(crate) fn register(&mut self, server: &TestServer, options: Value) -> Value {
        let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
        let credential = self.authenticator.do_registration(Url::parse(&server.issuer).unwrap(), options).unwrap();
        serde_json::to_value(credential).unwrap()
    }
    pub(crate) fn sign(&mut self, server: &TestServer, options: Value) -> Value {
        let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
        let credential = self.authenticator.do_authentication(Url::parse(&server.issuer).unwrap(), options).unwrap();
        serde_json::to_value(credential).unwrap()
    }
}

pub(crate) async fn post_json(browser: &reqwest::Client, server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = browser.post(format!("{}{path}", server.public_url)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Answers the card page `html` (a login's or a step-up's) with `card`, as the page's script
/// does: (status, answer).
pub(crate) async fn answer_with_card<T: AuthenticatorBackend>(
    browser: &reqwest::Client,
    server: &TestServer,
    card: &mut Card<T>,
    html: &str,
) -> (u16, Value) {
    let (ceremony, csrf, options) = ceremony_of(html);
    let credential = card.sign(server, options);
    post_json(
        browser,
        server,
        "/webauthn/login",
        json!({"csrf_token": csrf, "ceremony": ceremony, "credential": credential}),
    )
    .await
}

pub(crate) async fn enrollment_code(server: &TestServer, person_id: &str) -> String {
    let (status, body) =
        server.admin(reqwest::Method::POST, &format!("/api/v1/people/{person_id}/enrollment-codes"), None).await;
    assert_eq!(status, 201, "{body}");
    body["code"].as_str().unwrap().to_owned()
}

/// Enrolls `card` through the self-service page of `browser`'s session.
pub(crate) async fn enroll<T: AuthenticatorBackend>(
    browser: &reqwest::Client,
    server: &TestServer,
    card: &mut Card<T>,
    label: &str,
    number: &str,
    code: &str,
) -> (u16, Value) {
    let page = browser.get(format!("{}/authenticators", server.public_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let response = browser
        .post(format!("{}/authenticators/enroll", server.public_url))
        .form(&[
            ("csrf_token", hidden_input(&html, "csrf_token").as_str()),
            ("label", label),
            ("management_number", number),
            ("enrollment_code", code),
        ])
        .send()
        .await
        .unwrap();
    if response.status() != 200 {
        return (response.status().as_u16(), Value::Null);
    }
    let html = response.text().await.unwrap();
    let (ceremony, csrf, options) = ceremony_of(&html);
    let credential = card.register(server, options);
    post_json(
        browser,
        server,
        "/webauthn/register",
        json!({"csrf_token": csrf, "ceremony": ceremony, "credential": credential}),
    )
    .await
}

/// Registers the tax system (confidential, no back-channel) the card tests log in to.
pub(crate) async fn add_tax_system(server: &TestServer) -> Option<String> {
    server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential", "redirect_uris": [REDIRECT]}))
        .await
        .1
}

/// A new person, logged in with the password in a fresh browser: (person id, browser).
pub(crate) async fn logged_in_person(
    server: &TestServer,
    employee: &str,
    login: &str,
    password: &str,
) -> (String, reqwest::Client) {
    let person_id = server.add_person(employee, login, password).await;
    let browser = browser();
    let (url, _) = authorize(server, &[]);
    assert_eq!(log_in(&browser, server, &url, login, password).await.status(), 303);
    (person_id, browser)
}

pub(crate) fn authorize(server: &TestServer, extra: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "zeimu"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    (authorize_url(server, &params), verifier)
}

async fn redeem(server: &TestServer, secret: &str, callback: &str, verifier: &str) -> Value {
    let code = query_of(callback).get("code").cloned().unwrap_or_else(|| panic!("no code in {callback}"));
    let (status, body, _) = token_request(
        server,
        Some(("zeimu", secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub(crate) fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn introspect(server: &TestServer, secret: &str, token: &str) -> bool {
    crate::common::introspect_as(server, "zeimu", secret, token).await
}

async fn hotline_token(server: &TestServer) -> String {
    let (status, token) = server
        .admin(reqwest::Method::POST, "/api/v1/api-tokens", Some(json!({"name": "紛失届 受付", "scopes": ["hotline"]})))
        .await;
    assert_eq!(status, 201, "{token}");
    token["token"].as_str().unwrap().to_owned()
}

async fn as_operator(
    server: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.http.request(method, format!("{}{path}", server.admin_url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn card_is_second_factor_and_the_hotline_stops_it(db: Db) {
    let server = start(db, true).await;
    let person_id = server.add_person("E3001", "takahashi", PASSWORD).await;
    // The consuming system takes back-channel logout notices (nobody listens: they stay queued).
    let (_, secret) = server
        .add_client(json!({
            "client_id": "zeimu", "name": "税務システム", "client_type": "confidential", "redirect_uris": [REDIRECT],
            "backchannel_logout_uri": "http://127.0.0.1:9/backchannel"
        }))
        .await;
    let secret = secret.unwrap();
    let mut card = Card::new();

    // A password alone cannot enroll a card.
    let browser = browser();
    let (url, _) = authorize(&server, &[]);
    assert_eq!(log_in(&browser, &server, &url, "takahashi", PASSWORD).await.status(), 303);
    let (status, _) = enroll(&browser, &server, &mut card, "職員証", "C-0001", "").await;
    assert_eq!(status, 400, "no code, no card: refused");
    let (status, _) = enroll(&browser, &server, &mut card, "職員証", "C-0001", "WRONG-CODE").await;
    assert_eq!(status, 400);
    // With the counter's code it can; the code works once.
    let code = enrollment_code(&server, &person_id).await;
    let (status, answer) = enroll(&browser, &server, &mut card, "職員証", "C-0001", &code.to_lowercase()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["redirect"], "/authenticators?enrolled=1");
    let page = browser.get(format!("{}/authenticators", server.public_url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("職員証") && page.contains("C-0001"));

    // From now on the password is followed by the card; no session before the card answers.
    let browser = crate::common::browser();
    let (url, verifier) = authorize(&server, &[]);
    let response = log_in(&browser, &server, &url, "takahashi", PASSWORD).await;
    assert_eq!(response.status(), 200, "the card page, not a redirect");
    let html = response.text().await.unwrap();
    assert!(html.contains("/static/webauthn.js"));
    let (ceremony, csrf, options) = ceremony_of(&html);
    let assertion = card.sign(&server, options);
    let (status, answer) = post_json(
        &browser,
        &server,
        "/webauthn/login",
        json!({"csrf_token": csrf, "ceremony": ceremony, "credential": assertion}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let callback = answer["redirect"].as_str().unwrap().to_owned();
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let tokens = redeem(&server, &secret, &callback, &verifier).await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:sekimori:acr:hwk");
    assert_eq!(id["amr"], json!(["pwd", "hwk", "mfa"]));
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(introspect(&server, &secret, &access).await);
    // The same answer twice: the form's token went with the login (the CSRF secret is rotated),
    // and with a token fresh from this browser the ceremony is still used up.
    let (status, _) = post_json(
        &browser,
        &server,
        "/webauthn/login",
        json!({"csrf_token": csrf, "ceremony": ceremony, "credential": assertion}),
    )
    .await;
    assert_eq!(status, 403);
    let page = browser.get(format!("{}/authenticators", server.public_url)).send().await.unwrap().text().await.unwrap();
    let fresh = hidden_input(&page, "csrf_token");
    let (status, _) = post_json(
        &browser,
        &server,
        "/webauthn/login",
        json!({"csrf_token": fresh, "ceremony": ceremony, "credential": assertion}),
    )
    .await;
    assert_eq!(status, 400);

    // A second login starts (the card page is shown) before the card is reported lost.
    let thief = crate::common::browser();
    let (url, _) = authorize(&server, &[]);
    let in_flight = log_in(&thief, &server, &url, "takahashi", PASSWORD).await.text().await.unwrap();

    // A second node of the deployment has seen the token active (nothing it might keep may
    // outlive the report made on the first).
    let other_node = server.another_node().await;
    assert!(introspect(&other_node, &secret, &access).await);

    // The hotline: an operator finds the person and stops the card.
    let operator = hotline_token(&server).await;
    let (status, found) =
        as_operator(&server, &operator, reqwest::Method::GET, "/api/v1/hotline/people?q=E3001", None).await;
    assert_eq!(status, 200, "{found}");
    let card_id = found["items"][0]["authenticators"][0]["id"].as_str().unwrap().to_owned();
    let (status, by_name) = as_operator(
        &server,
        &operator,
        reqwest::Method::GET,
        "/api/v1/hotline/people?q=%E8%A9%A6%E9%A8%93%20%E5%A4%AA%E9%83%8E",
        None,
    )
    .await;
    assert_eq!((status, by_name["items"].as_array().unwrap().len()), (200, 1), "found by name, space or not");
    // The operator can do nothing else.
    let (status, _) =
        as_operator(&server, &operator, reqwest::Method::GET, &format!("/api/v1/people/{person_id}"), None).await;
    assert_eq!(status, 403);
    let (status, _) = as_operator(
        &server,
        &operator,
        reqwest::Method::POST,
        &format!("/api/v1/people/{person_id}/enrollment-codes"),
        None,
    )
    .await;
    assert_eq!(status, 403, "a hotline operator cannot enroll");
    let (status, _) = as_operator(
        &server,
        &operator,
        reqwest::Method::POST,
        &format!("/api/v1/authenticators/{card_id}/lost"),
        Some(json!({"reported_by": "", "reason": "x"})),
    )
    .await;
    assert_eq!(status, 422);

    // Meanwhile the card's token is used on the other node without pause, as a consuming
    // system would keep using it: no use begun after the hotline's answer may succeed.
    let user = {
        let (http, url, access) =
            (other_node.http.clone(), format!("{}/userinfo", other_node.public_url), access.clone());
        tokio::spawn(async move {
            let (mut uses, give_up) = (Vec::new(), Instant::now() + std::time::Duration::from_secs(10));
            while Instant::now() < give_up {
                let sent = Instant::now();
                let status = http.get(&url).bearer_auth(&access).send().await.unwrap().status().as_u16();
                uses.push((sent, status));
                if status != 200 {
                    break;
                }
            }
            uses
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, stopped) = as_operator(
        &server,
        &operator,
        reqwest::Method::POST,
        &format!("/api/v1/authenticators/{card_id}/lost"),
        Some(json!({"reported_by": "本人（電話）", "reason": "電車内で紛失"})),
    )
    .await;
    let answered = Instant::now();
    assert_eq!(status, 200, "{stopped}");
    // Measured, not asserted: from the hotline's answer to the first refused use.
    let still_active = introspect(&server, &secret, &access).await;
    let refused_here = answered.elapsed();
    let still_active_elsewhere = introspect(&other_node, &secret, &access).await;
    let refused_elsewhere = answered.elapsed();
    let uses = user.await.unwrap();
    let accepted_before = uses.iter().filter(|(_, status)| *status == 200).count();
    let accepted_after = uses.iter().filter(|(sent, status)| *sent >= answered && *status == 200).count();
    eprintln!(
        "revoke-to-refusal latency ({:?}): {refused_here:?} on the node that took the report, \
         {refused_elsewhere:?} on the other node; the other node's userinfo answered 200 to {accepted_before} uses \
         before the report and to {accepted_after} begun after its answer",
        server.db
    );
    assert!(accepted_before > 0, "the token worked before the report: {uses:?}");
    assert_eq!(accepted_after, 0, "nothing obtained with the card is accepted after the hotline answered");
    assert!(uses.last().is_some_and(|(_, status)| *status == 401), "userinfo ends refusing the token: {uses:?}");
    assert!(!still_active, "the token obtained with the card is inactive at once");
    assert!(!still_active_elsewhere, "and at once on every node");
    other_node.stop().await;
    assert_eq!(stopped["authenticator"]["status"], "lost");
    assert!(sekimori::authenticators::loss::is_reference(stopped["loss_reference"].as_str().unwrap()), "{stopped}");
    assert_eq!(stopped["sessions_ended"], 1, "{stopped}");
    assert_eq!(stopped["logout_notices_queued"], 1, "the consuming system is told: {stopped}");
    assert!(stopped["refresh_tokens_revoked"].as_u64().unwrap() >= 1);
    let userinfo =
        server.http.get(format!("{}/userinfo", server.public_url)).bearer_auth(&access).send().await.unwrap();
    assert_eq!(userinfo.status(), 401);
    let (status, body, _) = token_request(
        &server,
        Some(("zeimu", &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    // The browser's session is gone: prompt=none gets login_required.
    let (url, _) = authorize(&server, &[("prompt", "none")]);
    let response = browser.get(&url).send().await.unwrap();
    assert_eq!(query_of(&location(&response)).get("error").map(String::as_str), Some("login_required"));
    // The login begun before the report: the card's answer is refused now.
    let (ceremony, csrf, options) = ceremony_of(&in_flight);
    let late = card.sign(&server, options);
    let (status, _) = post_json(
        &thief,
        &server,
        "/webauthn/login",
        json!({"csrf_token": csrf, "ceremony": ceremony, "credential": late}),
    )
    .await;
    assert_eq!(status, 400, "a revoked card can no longer log in");
    // Reporting again changes nothing and answers with the first report's reference number;
    // the audit log names operator, reporter, reason and reference.
    let (status, again) = as_operator(
        &server,
        &operator,
        reqwest::Method::POST,
        &format!("/api/v1/authenticators/{card_id}/lost"),
        Some(json!({"reported_by": "本人", "reason": "再度"})),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["loss_reference"], stopped["loss_reference"]);
    assert_eq!((again["already_reported"].as_bool(), again["sessions_ended"].as_u64()), (Some(true), Some(0)));
    let (_, events) = server.admin(reqwest::Method::GET, "/api/v1/audit/events?limit=1000", None).await;
    let revoke = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "revoke" && e["target"] == format!("authenticator:{card_id}"))
        .expect("the revocation is audited")
        .clone();
    assert!(revoke["actor"].as_str().unwrap().starts_with("api_token:"));
    assert!(revoke["detail"]["reason"].as_str().unwrap().contains("本人（電話）"));
    assert!(revoke["detail"]["reason"].as_str().unwrap().contains("電車内で紛失"));
    assert_eq!(revoke["detail"]["loss_reference"], stopped["loss_reference"]);

    // A stopped card does not leave its holder with the password alone: after the right
    // password, the replacement card comes first, and no code is issued before it.
    let browser = crate::common::browser();
    let (url, verifier) = authorize(&server, &[]);
    let response = log_in(&browser, &server, &url, "takahashi", PASSWORD).await;
    assert_eq!(response.status(), 200, "no active card: not the password alone");
    let html = response.text().await.unwrap();
    assert!(html.contains("action=\"/login/card/replace\""), "{html}");
    assert!(!html.contains("code="), "no code");
    // This organisation allows no password-only exception.
    let (status, refused) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{person_id}/password-only-exceptions"),
            Some(json!({"reason": "再発行待ち", "days": 1})),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    // A wrong code enrolls nothing; the counter's code does, and the new card completes the login.
    let replace = |code: String, html: String| {
        let browser = browser.clone();
        let url = format!("{}/login/card/replace", server.public_url);
        async move {
            browser
                .post(url)
                .form(&[
                    ("csrf_token", hidden_input(&html, "csrf_token").as_str()),
                    ("ticket", hidden_input(&html, "ticket").as_str()),
                    ("enrollment_code", code.as_str()),
                    ("label", "再発行の職員証"),
                    ("management_number", "C-0001"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = replace("WRONG-CODE".into(), html.clone()).await;
    assert_eq!(wrong.status(), 400);
    let html = wrong.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    let code = enrollment_code(&server, &person_id).await;
    let ceremony_page = replace(code, html).await;
    assert_eq!(ceremony_page.status(), 200);
    let (ceremony, csrf, options) = ceremony_of(&ceremony_page.text().await.unwrap());
    let mut replacement = Card::new();
    let credential = replacement.register(&server, options);
    let (status, answer) = post_json(
        &browser,
        &server,
        "/webauthn/register",
        json!({"csrf_token": csrf, "ceremony": ceremony, "credential": credential}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let callback = answer["redirect"].as_str().unwrap().to_owned();
    assert!(callback.starts_with(REDIRECT), "the login completes: {callback}");
    let tokens = redeem(&server, &secret, &callback, &verifier).await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:sekimori:acr:hwk", "a card login");
    // From now on the replacement is the second factor, as the lost card was.
    let browser = crate::common::browser();
    let (url, _) = authorize(&server, &[]);
    let response = log_in(&browser, &server, &url, "takahashi", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("data-ceremony"));
    server.stop().await;
}

/// Where the policy allows it, a temporary password-only exception is granted explicitly, by
/// someone other than whoever had the card stopped, and it ends by itself.
async fn a_password_only_exception_comes_from_someone_other_than_the_reporter(db: Db) {
    let server = TestServer::start_configured(db, |config| {
        config.issuer = format!("http://localhost:{}", config.public_addr.port());
        config.webauthn.password_only_exception_max_days = 3;
    })
    .await;
    add_tax_system(&server).await;
    let (person_id, browser) = logged_in_person(&server, "E3201", "fujita", PASSWORD).await;
    let code = enrollment_code(&server, &person_id).await;
    assert_eq!(enroll(&browser, &server, &mut Card::new(), "職員証", "C-3201", &code).await.0, 200);
    // A desk that both takes loss reports and issues codes stops the card.
    let (status, desk) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "窓口", "scopes": ["hotline", "authenticators:enroll"]})),
        )
        .await;
    assert_eq!(status, 201, "{desk}");
    let desk = desk["token"].as_str().unwrap().to_owned();
    let (_, found) = as_operator(&server, &desk, reqwest::Method::GET, "/api/v1/hotline/people?q=E3201", None).await;
    let card_id = found["items"][0]["authenticators"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = as_operator(
        &server,
        &desk,
        reqwest::Method::POST,
        &format!("/api/v1/authenticators/{card_id}/lost"),
        Some(json!({"reported_by": "本人", "reason": "紛失"})),
    )
    .await;
    assert_eq!(status, 200);
    let path = format!("/api/v1/people/{person_id}/password-only-exceptions");
    // The reporter cannot let the password alone in.
    let (status, refused) =
        as_operator(&server, &desk, reqwest::Method::POST, &path, Some(json!({"reason": "再発行待ち", "days": 1})))
            .await;
    assert_eq!(status, 403, "{refused}");
    // Nobody can beyond the policy's limit.
    let (status, refused) =
        server.admin(reqwest::Method::POST, &path, Some(json!({"reason": "再発行待ち", "days": 4}))).await;
    assert_eq!((status, refused["field"].as_str()), (422, Some("days")), "{refused}");
    let (status, granted) =
        server.admin(reqwest::Method::POST, &path, Some(json!({"reason": "再発行待ち", "days": 1}))).await;
    assert_eq!(status, 201, "{granted}");
    assert!(granted["granted_by"].as_str().unwrap().starts_with("api_token:"));
    // Within it, the password alone logs in, and says so in the audit log.
    let (url, _) = authorize(&server, &[]);
    let response = log_in(&crate::common::browser(), &server, &url, "fujita", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).starts_with(REDIRECT));
    let (_, events) = server.admin(reqwest::Method::GET, "/api/v1/audit/events?limit=1000", None).await;
    let actions: Vec<&str> =
        events["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"authenticator.password_only_exception"), "{actions:?}");
    assert!(actions.contains(&"login.password_only_exception"), "{actions:?}");
    // Once it has ended, the replacement is asked for again.
    server.app.clock.advance(86_401);
    let (url, _) = authorize(&server, &[]);
    let response = log_in(&crate::common::browser(), &server, &url, "fujita", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("/login/card/replace"));
    server.stop().await;
}

async fn step_up_and_self_service_report(db: Db) {
    // Cards only when a consuming system asks: the password session steps up.
    let server = start(db, false).await;
    let person_id = server.add_person("E3002", "nakamura", PASSWORD).await;
    let (_, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential", "redirect_uris": [REDIRECT]}))
        .await;
    let secret = secret.unwrap();
    let browser = browser();
    let (url, verifier) = authorize(&server, &[]);
    let response = log_in(&browser, &server, &url, "nakamura", PASSWORD).await;
    let first = redeem(&server, &secret, &location(&response), &verifier).await;
    let first_id = claims(first["id_token"].as_str().unwrap());
    assert_eq!(first_id["acr"], "urn:sekimori:acr:password");
    let mut card = Card::new();
    let code = enrollment_code(&server, &person_id).await;
    assert_eq!(enroll(&browser, &server, &mut card, "セキュリティキー", "K-77", &code).await.0, 200);

    // The tax system demands a card: the session steps up, keeping its sid.
    let (url, verifier) = authorize(&server, &[("acr_values", "urn:sekimori:acr:hwk")]);
    let response = browser.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let step = location(&response);
    assert!(step.starts_with("/login/card/step-up?"), "{step}");
    let html = browser.get(format!("{}{step}", server.public_url)).send().await.unwrap().text().await.unwrap();
    let (status, answer) = answer_with_card(&browser, &server, &mut card, &html).await;
    assert_eq!(status, 200, "{answer}");
    let stepped = redeem(&server, &secret, answer["redirect"].as_str().unwrap(), &verifier).await;
    let stepped_id = claims(stepped["id_token"].as_str().unwrap());
    assert_eq!(stepped_id["acr"], "urn:sekimori:acr:hwk");
    assert_eq!(stepped_id["sid"], first_id["sid"], "the same session, now a card session");
    // Once stepped up, the card is no longer asked for.
    let (url, _) = authorize(&server, &[("acr_values", "urn:sekimori:acr:hwk")]);
    let response = browser.get(&url).send().await.unwrap();
    assert!(location(&response).starts_with(REDIRECT));

    // A second card without a code: allowed, because this session used a card.
    let mut spare = Card::new();
    assert_eq!(enroll(&browser, &server, &mut spare, "予備", "K-78", "").await.0, 200);

    // The holder reports the first card lost: the session (stepped up with it) ends.
    let page = browser.get(format!("{}/authenticators", server.public_url)).send().await.unwrap().text().await.unwrap();
    let (_, operator_view) = as_operator(
        &server,
        &hotline_token(&server).await,
        reqwest::Method::GET,
        "/api/v1/hotline/people?q=E3002",
        None,
    )
    .await;
    let cards = operator_view["items"][0]["authenticators"].as_array().unwrap().clone();
    let lost = cards.iter().find(|c| c["label"] == "セキュリティキー").unwrap()["id"].as_str().unwrap().to_owned();
    // "Report lost" asks first: without the confirmation nothing is stopped.
    let response = browser
        .post(format!("{}/authenticators/{lost}/lost", server.public_url))
        .form(&[("csrf_token", hidden_input(&page, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let confirm = response.text().await.unwrap();
    assert!(confirm.contains("紛失を届け出て使用停止にする"), "{confirm}");
    assert!(introspect(&server, &secret, stepped["access_token"].as_str().unwrap()).await, "not stopped yet");
    let confirm_page = browser.get(format!("{}/authenticators/{lost}/lost", server.public_url)).send().await.unwrap();
    assert_eq!(confirm_page.status(), 200);
    let confirm = confirm_page.text().await.unwrap();
    assert!(confirm.contains("届け出ますか"), "{confirm}");
    let response = browser
        .post(format!("{}/authenticators/{lost}/lost", server.public_url))
        .form(&[("csrf_token", hidden_input(&confirm, "csrf_token")), ("confirmed", "yes".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!introspect(&server, &secret, stepped["access_token"].as_str().unwrap()).await);
    assert!(!introspect(&server, &secret, first["access_token"].as_str().unwrap()).await, "same session");
    // Someone else's card cannot be reported from this account.
    let other = server.add_person("E3003", "kobayashi", "hanabi-taikai-no-yoru-2026").await;
    let mut others_card = Card::new();
    let others_browser = crate::common::browser();
    let (url, _) = authorize(&server, &[]);
    assert_eq!(log_in(&others_browser, &server, &url, "kobayashi", "hanabi-taikai-no-yoru-2026").await.status(), 303);
    let code = enrollment_code(&server, &other).await;
    assert_eq!(enroll(&others_browser, &server, &mut others_card, "職員証", "K-90", &code).await.0, 200);
    let (_, others_view) = as_operator(
        &server,
        &hotline_token(&server).await,
        reqwest::Method::GET,
        "/api/v1/hotline/people?q=E3003",
        None,
    )
    .await;
    let others_card_id = others_view["items"][0]["authenticators"][0]["id"].as_str().unwrap().to_owned();
    let (url, _) = authorize(&server, &[]);
    assert_eq!(log_in(&browser, &server, &url, "nakamura", PASSWORD).await.status(), 303);
    let page = browser.get(format!("{}/authenticators", server.public_url)).send().await.unwrap().text().await.unwrap();
    // The card reported lost by its holder carries the report's reference number on the page.
    assert!(page.contains("受付番号: <span class=\"reference\">L-"), "{page}");
    for target in [others_card_id.as_str(), "not-mine"] {
        let response = browser
            .post(format!("{}/authenticators/{target}/lost", server.public_url))
            .form(&[("csrf_token", hidden_input(&page, "csrf_token")), ("confirmed", "yes".into())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{target}");
    }
    let (_, others_view) = as_operator(
        &server,
        &hotline_token(&server).await,
        reqwest::Method::GET,
        "/api/v1/hotline/people?q=E3003",
        None,
    )
    .await;
    assert_eq!(others_view["items"][0]["authenticators"][0]["status"], "active", "the other card still works");
    server.stop().await;
}

/// Replacing an expired password completes the login only after the card, as any password login.
async fn an_expired_password_does_not_skip_the_card(db: Db) {
    let server = start(db, true).await;
    let person_id = server.add_person("E3005", "inoue", PASSWORD).await;
    server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential", "redirect_uris": [REDIRECT]}))
        .await;
    let browser = browser();
    let (url, _) = authorize(&server, &[]);
    assert_eq!(log_in(&browser, &server, &url, "inoue", PASSWORD).await.status(), 303);
    let code = enrollment_code(&server, &person_id).await;
    assert_eq!(enroll(&browser, &server, &mut Card::new(), "職員証", "C-5", &code).await.0, 200);
    server.app.clock.advance(91 * 86_400);
    let browser = crate::common::browser();
    let (url, _) = authorize(&server, &[]);
    let page = log_in(&browser, &server, &url, "inoue", PASSWORD).await.text().await.unwrap();
    let done = browser
        .post(format!("{}/password/reset", server.public_url))
        .form(&[
            ("csrf_token", hidden_input(&page, "csrf_token").as_str()),
            ("ticket", hidden_input(&page, "ticket").as_str()),
            ("new_password", "aki-no-yuuhi-to-akatombo"),
            ("confirm_password", "aki-no-yuuhi-to-akatombo"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200, "the card page, not a redirect with a code");
    assert!(done.text().await.unwrap().contains("data-ceremony"));
    server.stop().await;
}

/// An organisation that issues one card model accepts only that model.
async fn only_attested_card_models_enroll(db: Db) {
    let (token, ca) = SoftToken::new(true).unwrap();
    let ca_file = std::env::temp_dir().join(format!("sekimori-test-ca-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();
    let ca_path = ca_file.display().to_string();
    let server = TestServer::start_configured(db, move |config| {
        config.issuer = format!("http://localhost:{}", config.public_addr.port());
        config.webauthn.attestation = vec![sekimori::config::AttestedModel {
            ca_pem_file: ca_path,
            aaguid: SOFT_TOKEN_AAGUID,
            description: "関守市 職員証".into(),
        }];
    })
    .await;
    let person_id = server.add_person("E3004", "matsumoto", PASSWORD).await;
    server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential", "redirect_uris": [REDIRECT]}))
        .await;
    let browser = browser();
    let (url, _) = authorize(&server, &[]);
    assert_eq!(log_in(&browser, &server, &url, "matsumoto", PASSWORD).await.status(), 303);
    // Another maker's key: its attestation does not chain to the organisation's CA.
    let code = enrollment_code(&server, &person_id).await;
    let (status, answer) = enroll(&browser, &server, &mut Card::new(), "私物のキー", "X-1", &code).await;
    assert_eq!(status, 400, "{answer}");
    // The issued model enrolls (the refused attempt did not use the code up).
    let mut issued = Card { authenticator: WebauthnAuthenticator::new(token) };
    let (status, answer) = enroll(&browser, &server, &mut issued, "職員証", "C-9", &code).await;
    assert_eq!(status, 200, "{answer}");
    let _ = std::fs::remove_file(&ca_file);
    server.stop().await;
}

/// With an IP-address issuer cards cannot work: discovery does not offer the card's acr, the
/// admin API refuses enrollment codes with the reason, and the card page offers no enrollment.
async fn cards_off_on_an_ip_issuer_are_said_and_hidden(db: Db) {
    let server = TestServer::start(db).await;
    assert!(server.issuer.starts_with("http://127.0.0.1:"));
    let person_id = server.add_person("E3301", "okada", PASSWORD).await;
    add_tax_system(&server).await;
    let discovery: Value = server
        .http
        .get(format!("{}/.well-known/openid-configuration", server.public_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["acr_values_supported"], json!(["urn:sekimori:acr:password"]));
    let (status, refused) =
        server.admin(reqwest::Method::POST, &format!("/api/v1/people/{person_id}/enrollment-codes"), None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("domain name"), "{refused}");
    // An essential card acr cannot be met here: refused at once, not after a login.
    let essential = json!({"id_token": {"acr": {"essential": true, "values": ["urn:sekimori:acr:hwk"]}}}).to_string();
    let (url, _) = authorize(&server, &[("claims", &essential)]);
    let response = server.http.get(&url).send().await.unwrap();
    let error = query_of(&location(&response)).get("error").cloned();
    assert_eq!(error.as_deref(), Some("unmet_authentication_requirements"));
    let (_, browser) = logged_in_person(&server, "E3302", "okabe", "hoshi-no-furu-oka-no-ue").await;
    let page = browser.get(format!("{}/authenticators", server.public_url)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("/authenticators/enroll"), "no enrollment form where cards cannot work");
    assert!(page.contains("ICカードを利用できません"), "{page}");
    server.stop().await;
}

/// A card's management number identifies one card, however it is typed.
async fn management_numbers_differing_only_in_case_or_width_are_one_card(db: Db) {
    let server = start(db, true).await;
    add_tax_system(&server).await;
    let mut enrolled = Vec::new();
    for (number, employee, login, password, typed) in [
        (1, "E3101", "ishii", "kawabe-no-sakura-chiru-hi", "c-0100"),
        (2, "E3102", "kondo", "yama-no-ue-no-kumo-nagare", "C-0100"),
        (3, "E3103", "sakai", "umi-no-soko-wa-shizuka-desu", "Ｃ－０１００"),
    ] {
        let (person_id, browser) = logged_in_person(&server, employee, login, password).await;
        let code = enrollment_code(&server, &person_id).await;
        let (status, _) = enroll(&browser, &server, &mut Card::new(), "職員証", typed, &code).await;
        enrolled.push((number, status));
    }
    assert_eq!(enrolled, vec![(1, 200), (2, 400), (3, 400)], "one management number, one active card");
    let stored: String = sqlx::Row::try_get(
        &sqlx::query("SELECT management_number FROM authenticators").fetch_one(server.app.store.pool()).await.unwrap(),
        "management_number",
    )
    .unwrap();
    assert_eq!(stored, "C-0100", "stored in one form");
    server.stop().await;
}

/// A secret-class role (R6, R15) is carried only after a card login: a password session of a
/// person holding one is stepped up to the card, and the session then idles out sooner.
async fn a_secret_class_role_demands_the_card(db: Db) {
    use sekimori::access::{catalog, grants, Classification};
    let server = start(db, false).await;
    let (_, department) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": "SOMU", "name": "総務部", "level": "department"})),
        )
        .await;
    let (status, section) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": "ZEIMU", "name": "税務課", "level": "section", "parent_id": department["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{section}");
    let section = section["id"].as_str().unwrap().to_owned();
    let manager = server.add_person("E3101", "kacho", "yamabiko-no-koe-2026").await;
    let (status, body) = server
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/org-units/{section}/manager"),
            Some(json!({"person_id": manager})),
        )
        .await;
    assert!(status < 300, "{body}");
    let (status, person) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/people",
            Some(json!({"employee_number": "E3102", "family_name": "秘密", "given_name": "花子", "family_name_kana": "ヒミツ",
                        "given_name_kana": "ハナコ", "kind": "regular", "org_unit_id": section, "start_date": "2020-04-01"})),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    let person_id = person["id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/people/{person_id}/account"),
            Some(json!({"login_id": "hanako", "password": PASSWORD, "require_change": false})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [REDIRECT], "owner_org_unit_id": section}))
        .await;
    let secret = secret.unwrap();
    let now = server.app.clock.now();
    let mut tx = server.app.store.begin().await.unwrap();
    let spec = |label: &str, classification| catalog::RoleSpec {
        label: label.into(),
        label_en: None,
        classification,
        max_duration_days: None,
        review_interval_days: None,
        incompatible_with: vec![],
    };
    catalog::declare_role(
        &mut tx,
        &sekimori::audit::Actor::Cli,
        now,
        "zeimu",
        "taxpayer_records",
        spec("課税台帳", Classification::Secret),
    )
    .await
    .unwrap();
    catalog::declare_role(
        &mut tx,
        &sekimori::audit::Actor::Cli,
        now,
        "zeimu",
        "viewer",
        spec("照会", Classification::General),
    )
    .await
    .unwrap();
    for role in ["taxpayer_records", "viewer"] {
        grants::grant_directly(&mut tx, now, &manager, &person_id, "zeimu", role, None, "担当業務").await.unwrap();
    }
    tx.commit().await.unwrap();

    // A password login without a card: the general role only.
    let browser = browser();
    let (url, verifier) = authorize(&server, &[]);
    let response = log_in(&browser, &server, &url, "hanako", PASSWORD).await;
    let first = redeem(&server, &secret, &location(&response), &verifier).await;
    assert_eq!(claims(first["id_token"].as_str().unwrap())["roles"], json!(["viewer"]));
    assert_eq!(claims(first["access_token"].as_str().unwrap())["roles"], json!(["viewer"]));

    // With a card enrolled, the system's next login is stepped up before any code is issued.
    let mut card = Card::new();
    let code = enrollment_code(&server, &person_id).await;
    assert_eq!(enroll(&browser, &server, &mut card, "職員証", "K-310", &code).await.0, 200);
    let (url, verifier) = authorize(&server, &[]);
    let response = browser.get(&url).send().await.unwrap();
    let step = location(&response);
    assert!(step.starts_with("/login/card/step-up?"), "a secret-class role demands the card: {step}");
    let html = browser.get(format!("{}{step}", server.public_url)).send().await.unwrap().text().await.unwrap();
    let (status, answer) = answer_with_card(&browser, &server, &mut card, &html).await;
    assert_eq!(status, 200, "{answer}");
    let stepped = redeem(&server, &secret, answer["redirect"].as_str().unwrap(), &verifier).await;
    let id_token = claims(stepped["id_token"].as_str().unwrap());
    assert_eq!(id_token["acr"], "urn:sekimori:acr:hwk");
    assert_eq!(id_token["roles"], json!(["taxpayer_records", "viewer"]));

    // The session that obtained it idles out after the shorter timeout.
    let idle = server.app.config.session.secret_role_idle_timeout;
    assert!(idle < server.app.config.session.idle_timeout);
    server.app.clock.advance(idle + 61);
    let (url, _) = authorize(&server, &[]);
    let response = browser.get(&url).send().await.unwrap();
    assert!(location(&response).starts_with("/login"), "idle past the secret-role timeout: {}", location(&response));
    server.stop().await;
}

on_both_databases!(
    card_is_second_factor_and_the_hotline_stops_it,
    step_up_and_self_service_report,
    a_secret_class_role_demands_the_card,
    only_attested_card_models_enroll,
    an_expired_password_does_not_skip_the_card,
    management_numbers_differing_only_in_case_or_width_are_one_card,
    a_password_only_exception_comes_from_someone_other_than_the_reporter,
    cards_off_on_an_ip_issuer_are_said_and_hidden,
    my_page_shows_each_card_with_when_it_was_enrolled_and_last_used,
);

/// The row of マイページ's card table that names `label` (from its `<tr>` to its `</tr>`).
fn card_row<'a>(page: &'a str, label: &str) -> &'a str {
    let table = &page[page.find("<tbody>").unwrap_or_else(|| panic!("no card table:\n{page}"))..];
    let at = table.find(label).unwrap_or_else(|| panic!("no card {label} in the table:\n{table}"));
    let start = table[..at].rfind("<tr>").unwrap();
    let end = at + table[at..].find("</tr>").unwrap();
    &table[start..end]
}

/// When the person's card `number` was enrolled and last used, as stored.
async fn card_times(server: &TestServer, number: &str) -> (i64, Option<i64>) {
    use sqlx::Row;
    let row = sqlx::query("SELECT created_at, last_used_at FROM authenticators WHERE management_number = $1")
        .bind(number)
        .fetch_one(server.app.store.pool())
        .await
        .unwrap();
    (row.try_get("created_at").unwrap(), row.try_get("last_used_at").unwrap())
}

/// R13: a card holder sees each of their cards on マイページ — its name, management number and
/// state, when it was enrolled and when it was last used (none yet until it logs in), in Japan
/// time, in Japanese and in English.
async fn my_page_shows_each_card_with_when_it_was_enrolled_and_last_used(db: Db) {
    use sekimori::clock::japan_minute;
    let server = start(db, true).await;
    add_tax_system(&server).await;
    let (person_id, browser) = logged_in_person(&server, "E3020", "fujita", PASSWORD).await;
    let my_page = |browser: reqwest::Client, lang: &'static str| {
        let url = format!("{}/my?lang={lang}", server.public_url);
        async move {
            let response = browser.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    assert!(my_page(browser.clone(), "ja").await.contains("登録されているICカード・セキュリティキーはありません。"));

    let mut card = Card::new();
    let code = enrollment_code(&server, &person_id).await;
    assert_eq!(enroll(&browser, &server, &mut card, "職員証", "C-0320", &code).await.0, 200);
    let (enrolled_at, never) = card_times(&server, "C-0320").await;
    assert_eq!(never, None, "enrolling is not a use");
    let page = my_page(browser.clone(), "ja").await;
    let row = card_row(&page, "職員証");
    for shown in ["C-0320", "使用中", japan_minute(enrolled_at).as_str(), "なし"] {
        assert!(row.contains(shown), "{shown} missing from {row}");
    }

    // Three hours later the card logs in: the password, then the card.
    server.app.clock.advance(3 * 3_600);
    let browser = crate::common::browser();
    let (url, _) = authorize(&server, &[]);
    let html = log_in(&browser, &server, &url, "fujita", PASSWORD).await.text().await.unwrap();
    let (status, answer) = answer_with_card(&browser, &server, &mut card, &html).await;
    assert_eq!(status, 200, "{answer}");
    let (still_enrolled_at, used_at) = card_times(&server, "C-0320").await;
    assert_eq!(still_enrolled_at, enrolled_at);
    let used_at = used_at.expect("the login recorded its use");
    assert!(used_at >= enrolled_at + 3 * 3_600, "used at {used_at}, enrolled at {enrolled_at}");
    let page = my_page(browser.clone(), "ja").await;
    let row = card_row(&page, "職員証");
    for shown in ["C-0320", "使用中", japan_minute(enrolled_at).as_str(), japan_minute(used_at).as_str()] {
        assert!(row.contains(shown), "{shown} missing from {row}");
    }
    assert!(!row.contains("なし"), "{row}");
    let english = my_page(browser, "en").await;
    for shown in ["Registered", "Last used", "In use", japan_minute(used_at).as_str()] {
        assert!(english.contains(shown), "{shown} missing from the English page");
    }
    server.stop().await;
}
