//! The token lifecycle driven by an independent client library (the `openidconnect` crate):
//! refresh rotation and reuse detection, introspection, revocation, client_credentials,
//! RP-initiated logout, and back-channel logout received by a real HTTP relying party.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdTokenClaims, CoreRevocableToken};
use openidconnect::{
    AccessToken, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyAdditionalClaims, IntrospectionUrl,
    IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, RevocationUrl, Scope, TokenIntrospectionResponse, TokenResponse,
};
use serde_json::{json, Value};

use crate::common::{authorize_url, browser, hidden_input, location, log_in, query_of, Db, TestServer};

const PASSWORD: &str = "kasumi-ga-seki-2026!";
const REDIRECT: &str = "http://127.0.0.1:9001/callback";
const AFTER_LOGOUT: &str = "http://127.0.0.1:9001/logged-out";

/// A relying party's back-channel logout endpoint on real TCP: records each logout token and
/// answers with the next status from `answers` (200 once they run out).
pub(crate) struct TestRp {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<u16>>>,
}

impl TestRp {
    pub(crate) async fn start(answers: Vec<u16>) -> TestRp {
        Self::start_on("127.0.0.1:0", answers).await
    }

    async fn start_on(addr: &str, answers: Vec<u16>) -> TestRp {
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers));
        let (r, a) = (received.clone(), answers.clone());
        let app = axum::Router::new().route(
            "/backchannel",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (r, a) = (r.clone(), a.clone());
                async move {
                    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
                    let token = form_urlencoded::parse(body.as_bytes())
                        .find(|(k, _)| k == "logout_token")
                        .map(|(_, v)| v.into_owned())
                        .expect("a logout_token parameter");
                    let status = {
                        let mut answers = a.lock().unwrap();
                        if answers.is_empty() {
                            200
                        } else {
                            answers.remove(0)
                        }
                    };
                    if status == 200 {
                        r.lock().unwrap().push(token);
                    }
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestRp { url, received, answers }
    }

    /// Waits (up to 15 s) for `n` logout tokens and returns them.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..150 {
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} back-channel logout notices, got {:?}", self.received.lock().unwrap().len());
    }
}

/// Verifies a logout token the way OpenID Back-Channel Logout §2.6 tells an RP to, with the
/// keys from the JWKS; returns its claims.
pub(crate) async fn verify_logout_token(server: &TestServer, token: &str, client_id: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet =
        server.http.get(format!("{}/jwks.json", server.public_url)).send().await.unwrap().json().await.unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the signing key is in the JWKS");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[&server.public_url]);
    validation.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    let claims: Value = jsonwebtoken::decode(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the logout token verifies")
        .claims;
    assert!(claims["jti"].is_string());
    assert!(claims["iat"].is_i64());
    assert_eq!(claims["events"], json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
    assert!(claims.get("nonce").is_none(), "§2.4: a logout token must not contain a nonce");
    claims
}

/// The claims of a JWT whose signature a library has already checked.
fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

type Client = openidconnect::Client<
    EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    openidconnect::StandardErrorResponse<openidconnect::RevocationErrorResponseType>,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
    openidconnect::EndpointSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Discovers the provider and builds a client for `client_id` with introspection and
/// revocation endpoints read from the discovery document.
async fn discover_client(
    server: &TestServer,
    client_id: &str,
    secret: Option<String>,
) -> (Client, ProviderMetadataWithLogout) {
    let metadata =
        ProviderMetadataWithLogout::discover_async(IssuerUrl::new(server.public_url.clone()).unwrap(), &server.http)
            .await
            .expect("discovery with end_session_endpoint");
    let raw: Value = server
        .http
        .get(format!("{}/.well-known/openid-configuration", server.public_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(client_id.into()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    .set_introspection_url(IntrospectionUrl::new(raw["introspection_endpoint"].as_str().unwrap().into()).unwrap())
    .set_revocation_url(RevocationUrl::new(raw["revocation_endpoint"].as_str().unwrap().into()).unwrap());
    (client, metadata)
}

/// A full login in `browser`; returns the token response and the ID token's claims.
async fn login(
    server: &TestServer,
    client: &Client,
    browser: &reqwest::Client,
    login_id: &str,
    scopes: &[&str],
) -> (openidconnect::core::CoreTokenResponse, CoreIdTokenClaims) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).into()));
    }
    let (url, _, nonce) = request.url();
    let response = log_in(browser, server, url.as_str(), login_id, PASSWORD).await;
    assert_eq!(response.status(), 303);
    let token = redeem(server, client, &response, verifier).await;
    let claims = token.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).unwrap().clone();
    (token, claims)
}

/// Exchanges the code that the redirect `response` carries back to the client.
async fn redeem(
    server: &TestServer,
    client: &Client,
    response: &reqwest::Response,
    verifier: PkceCodeVerifier,
) -> openidconnect::core::CoreTokenResponse {
    let code = query_of(&location(response))["code"].clone();
    client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&server.http)
        .await
        .expect("code exchange")
}

async fn introspect(
    server: &TestServer,
    client: &Client,
    token: &str,
) -> openidconnect::core::CoreTokenIntrospectionResponse {
    client.introspect(&AccessToken::new(token.into())).request_async(&server.http).await.expect("introspection answers")
}

fn oauth_error<E: std::fmt::Debug>(result: Result<impl std::fmt::Debug, E>) -> String {
    format!("{:?}", result.expect_err("the request must fail"))
}

async fn add_confidential(server: &TestServer, client_id: &str, extra: Value) -> (String, String) {
    let mut body = json!({
        "client_id": client_id, "name": "税務システム", "client_type": "confidential",
        "redirect_uris": [REDIRECT], "post_logout_redirect_uris": [AFTER_LOGOUT],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (id, secret) = server.add_client(body).await;
    (id, secret.unwrap())
}

/// prompt=none answers login_required once the browser's session is gone.
async fn assert_logged_out(server: &TestServer, browser: &reqwest::Client, client_id: &str) {
    let (_, challenge) = crate::common::pkce_pair();
    let url = authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("prompt", "none"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let response = browser.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(query_of(&location(&response)).get("error").map(String::as_str), Some("login_required"));
}

async fn refresh_rotation_and_reuse_detection(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E2001", "tanaka", PASSWORD).await;
    let rp = TestRp::start(vec![]).await;
    let (client_id, secret) = add_confidential(&server, "zeimu", json!({"backchannel_logout_uri": rp.url})).await;
    let (client, _) = discover_client(&server, &client_id, Some(secret)).await;
    let browser = browser();
    let (first, id_claims) = login(&server, &client, &browser, "tanaka", &[]).await;
    let first_refresh = first.refresh_token().expect("a refresh token with the code").clone();

    let second = client.exchange_refresh_token(&first_refresh).unwrap().request_async(&server.http).await.unwrap();
    let second_refresh = second.refresh_token().expect("rotation: a new refresh token").clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    let refreshed_id = second.id_token().expect("an ID token on refresh (OIDC Core §12.2)");
    let refreshed = refreshed_id
        .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("the refreshed ID token verifies");
    assert_eq!(refreshed.subject().as_str(), person_id);
    assert_eq!(refreshed.auth_time(), id_claims.auth_time(), "auth_time is the original login's");
    assert!(refreshed.nonce().is_none());
    assert!(introspect(&server, &client, second.access_token().secret()).await.active());

    let third = client.exchange_refresh_token(&second_refresh).unwrap().request_async(&server.http).await.unwrap();
    let third_refresh = third.refresh_token().unwrap().clone();
    let third_access = third.access_token().secret().clone();
    assert!(introspect(&server, &client, &third_access).await.active());

    // The first token again: theft. The family and the session end.
    let reuse = client.exchange_refresh_token(&first_refresh).unwrap().request_async(&server.http).await;
    assert!(oauth_error(reuse).contains("invalid_grant"));
    let newest = client.exchange_refresh_token(&third_refresh).unwrap().request_async(&server.http).await;
    assert!(oauth_error(newest).contains("invalid_grant"), "the newest token of the family is dead too");
    assert!(!introspect(&server, &client, &third_access).await.active());
    assert!(!introspect(&server, &client, first.access_token().secret()).await.active());
    assert_logged_out(&server, &browser, &client_id).await;

    let notices = rp.wait_for(1).await;
    let claims = verify_logout_token(&server, &notices[0], &client_id).await;
    assert_eq!(claims["sub"], person_id);
    let raw_id: Value = jwt_claims(&first.id_token().unwrap().to_string());
    assert_eq!(claims["sid"], raw_id["sid"], "the notice names the session the ID token came from");
    server.stop().await;
}

async fn introspection_and_revocation(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E2002", "suzuki", PASSWORD).await;
    let (client_id, secret) = add_confidential(&server, "zeimu", json!({})).await;
    let (other_id, other_secret) = add_confidential(&server, "fukushi", json!({})).await;
    let (public_id, _) = server
        .add_client(
            json!({"client_id": "toshokan", "name": "図書館", "client_type": "public", "redirect_uris": [REDIRECT]}),
        )
        .await;
    let (client, _) = discover_client(&server, &client_id, Some(secret.clone())).await;
    let (other, _) = discover_client(&server, &other_id, Some(other_secret.clone())).await;
    let (token, id_claims) = login(&server, &client, &browser(), "suzuki", &["profile"]).await;
    let access = token.access_token().secret().clone();
    let refresh = token.refresh_token().unwrap().clone();

    // RFC 7662: an active access token, described.
    let answer = introspect(&server, &client, &access).await;
    assert!(answer.active());
    assert_eq!(answer.client_id().map(|c| c.as_str()), Some("zeimu"));
    assert_eq!(answer.sub(), Some(id_claims.subject().as_str()));
    assert_eq!(answer.iss(), Some(server.public_url.as_str()));
    let scopes: Vec<String> = answer.scopes().unwrap().iter().map(|s| s.to_string()).collect();
    assert!(scopes.contains(&"openid".to_string()) && scopes.contains(&"profile".to_string()));
    assert!(answer.exp().is_some() && answer.iat().is_some() && answer.jti().is_some());
    // A resource server (another client) may introspect it too.
    assert!(introspect(&server, &other, &access).await.active());
    // A refresh token is described to its own client only.
    let raw = |who: (&str, &str), token: &str| {
        let http = server.http.clone();
        let url = format!("{}/introspect", server.public_url);
        let (id, secret, token) = (who.0.to_owned(), who.1.to_owned(), token.to_owned());
        async move {
            let response =
                http.post(url).basic_auth(id, Some(secret)).form(&[("token", token.as_str())]).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, own) = raw((&client_id, &secret), refresh.secret()).await;
    assert_eq!((status, own["active"].clone(), own["token_type"].clone()), (200, json!(true), json!("refresh_token")));
    let (_, foreign) = raw((&other_id, &other_secret), refresh.secret()).await;
    assert_eq!(foreign, json!({"active": false}));
    // Public clients cannot introspect; garbage is simply inactive.
    let response = server
        .http
        .post(format!("{}/introspect", server.public_url))
        .form(&[("token", access.as_str()), ("client_id", public_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(!introspect(&server, &client, "not-a-token").await.active());

    // RFC 7009 (by hand: the oauth2 crate sends revocations only over https, and the Node
    // interop test drives openid-client's revocation).
    let revoke = |who: (&str, &str), token: &str, hint: Option<&str>| {
        let http = server.http.clone();
        let url = format!("{}/revoke", server.public_url);
        let (id, secret, token) = (who.0.to_owned(), who.1.to_owned(), token.to_owned());
        let hint = hint.map(str::to_owned);
        async move {
            let mut form = vec![("token".to_owned(), token)];
            if let Some(hint) = hint {
                form.push(("token_type_hint".to_owned(), hint));
            }
            let response = http.post(url).basic_auth(id, Some(secret)).form(&form).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // Revoking the access token makes it inactive at once; the grant lives on.
    let (status, body) = revoke((&other_id, &other_secret), &access, None).await;
    assert_eq!(status, 400);
    assert!(body.contains("unauthorized_client"), "{body}");
    assert!(introspect(&server, &client, &access).await.active(), "another client cannot revoke it");
    assert_eq!(revoke((&client_id, &secret), &access, Some("access_token")).await, (200, String::new()));
    assert!(!introspect(&server, &client, &access).await.active());
    let refreshed = client.exchange_refresh_token(&refresh).unwrap().request_async(&server.http).await.unwrap();
    let refreshed_access = refreshed.access_token().secret().clone();
    assert!(introspect(&server, &client, &refreshed_access).await.active());

    // Revoking the refresh token ends the grant: its access tokens too. A wrong hint is no error.
    let (status, _) =
        revoke((&client_id, &secret), refreshed.refresh_token().unwrap().secret(), Some("access_token")).await;
    assert_eq!(status, 200);
    assert!(!introspect(&server, &client, &refreshed_access).await.active());
    let again =
        client.exchange_refresh_token(refreshed.refresh_token().unwrap()).unwrap().request_async(&server.http).await;
    assert!(oauth_error(again).contains("invalid_grant"));
    // Unknown tokens: 200 all the same (RFC 7009 §2.2); a wrong secret is invalid_client.
    assert_eq!(revoke((&client_id, &secret), "nonsense", Some("refresh_token")).await.0, 200);
    let (status, body) = revoke((&client_id, "wrong"), "nonsense", None).await;
    assert_eq!(status, 401);
    assert!(body.contains("invalid_client"));
    server.stop().await;
}

async fn client_credentials_grant(db: Db) {
    let server = TestServer::start(db).await;
    let (client_id, secret) = add_confidential(
        &server,
        "juki",
        json!({"grant_types": ["client_credentials"], "service_scopes": ["juki.read", "juki.write"]}),
    )
    .await;
    let (client, _) = discover_client(&server, &client_id, Some(secret.clone())).await;
    let token = client
        .exchange_client_credentials()
        .unwrap()
        .add_scope(Scope::new("juki.read".into()))
        .request_async(&server.http)
        .await
        .expect("client_credentials succeeds");
    assert!(token.refresh_token().is_none(), "RFC 6749 §4.4.3: no refresh token");
    assert!(token.id_token().is_none(), "no person, no ID token");
    let header = jsonwebtoken::decode_header(token.access_token().secret()).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let answer = introspect(&server, &client, token.access_token().secret()).await;
    assert!(answer.active());
    assert_eq!(answer.sub(), Some("juki"), "RFC 9068 §2.2: sub is the client itself");
    // Its signature, once checked, is not checked again for the same bytes; any other bytes
    // are checked: a changed signature or a changed payload under the old signature fails.
    assert!(introspect(&server, &client, token.access_token().secret()).await.active(), "again");
    let parts: Vec<&str> = token.access_token().secret().split('.').collect();
    let mut signature = parts[2].to_owned();
    let middle = signature.len() / 2;
    let changed = if &signature[middle..=middle] == "A" { "B" } else { "A" };
    signature.replace_range(middle..=middle, changed);
    let resigned = format!("{}.{}.{}", parts[0], parts[1], signature);
    assert!(!introspect(&server, &client, &resigned).await.active(), "a changed signature");
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("juki.read juki.write");
    let rewritten =
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()), parts[2]);
    assert!(!introspect(&server, &client, &rewritten).await.active(), "a changed payload");
    assert!(introspect(&server, &client, token.access_token().secret()).await.active(), "the token itself still");
    assert_eq!(answer.scopes().unwrap().iter().map(|s| s.to_string()).collect::<Vec<_>>(), vec!["juki.read"]);
    // No person behind it: userinfo refuses.
    let userinfo = server
        .http
        .get(format!("{}/userinfo", server.public_url))
        .bearer_auth(token.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);

    let form = |scope: &'static str| vec![("grant_type", "client_credentials"), ("scope", scope)];
    let (status, body, _) =
        crate::common::token_request(&server, Some((&client_id, &secret)), &form("juki.admin")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, body, _) = crate::common::token_request(&server, Some((&client_id, &secret)), &form("openid")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "no person scopes here");
    // A client registered without the grant may not use it; nor the code flow without its grant.
    let (zeimu, zeimu_secret) = add_confidential(&server, "zeimu", json!({})).await;
    let (status, body, _) =
        crate::common::token_request(&server, Some((&zeimu, &zeimu_secret)), &[("grant_type", "client_credentials")])
            .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")));
    let (status, body, _) = crate::common::token_request(
        &server,
        Some((&client_id, &secret)),
        &[("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")));
    // Its live state is read from the database each time: a revocation written by anything
    // else (another node, another process) holds at once.
    let (status, body, _) =
        crate::common::token_request(&server, Some((&client_id, &secret)), &form("juki.read")).await;
    assert_eq!(status, 200, "{body}");
    let second = body["access_token"].as_str().unwrap().to_owned();
    assert!(introspect(&server, &client, &second).await.active());
    let payload = second.split('.').nth(1).unwrap();
    let jti = serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()["jti"].clone();
    sqlx::query("INSERT INTO revoked_access_tokens (jti, client_id, expires_at) VALUES ($1, $2, $3)")
        .bind(jti.as_str().unwrap())
        .bind("juki")
        .bind(server.app.clock.now() + 3600)
        .execute(server.app.store.pool())
        .await
        .unwrap();
    assert!(!introspect(&server, &client, &second).await.active(), "revoked by another writer: inactive at once");
    // A disabled client's tokens die with it, at once.
    let (other, _) = discover_client(&server, &zeimu, Some(zeimu_secret)).await;
    assert!(introspect(&server, &other, token.access_token().secret()).await.active(), "kept as live by this node");
    let (status, body) = server.admin(reqwest::Method::POST, "/api/v1/clients/juki/disable", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(!introspect(&server, &other, token.access_token().secret()).await.active());
    server.stop().await;
}

async fn rp_initiated_logout_with_back_channel_notice(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E2003", "sato", PASSWORD).await;
    let rp = TestRp::start(vec![]).await;
    let (client_id, secret) = add_confidential(&server, "zeimu", json!({"backchannel_logout_uri": rp.url})).await;
    let (client, metadata) = discover_client(&server, &client_id, Some(secret)).await;
    let browser = browser();
    let (token, _) = login(&server, &client, &browser, "sato", &[]).await;
    let id_token = token.id_token().unwrap().clone();
    let raw_id: Value = jwt_claims(&id_token.to_string());

    // A post_logout_redirect_uri that is not registered: shown, not redirected, nothing ended.
    let end_session = metadata.additional_metadata().end_session_endpoint.clone().expect("end_session_endpoint");
    let bad = LogoutRequest::from(end_session.clone())
        .set_id_token_hint(&id_token)
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new("http://127.0.0.1:9001/elsewhere".into()).unwrap())
        .http_get_url();
    let response = browser.get(bad.as_str()).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(introspect(&server, &client, token.access_token().secret()).await.active());

    // The RP's own ID token names this session: logged out at once, sent back with state.
    let url = LogoutRequest::from(end_session)
        .set_id_token_hint(&id_token)
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(AFTER_LOGOUT.into()).unwrap())
        .set_state(CsrfToken::new("bye-123".into()))
        .http_get_url();
    let response = browser.get(url.as_str()).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("{AFTER_LOGOUT}?state=bye-123"));
    assert!(!introspect(&server, &client, token.access_token().secret()).await.active());
    let refresh =
        client.exchange_refresh_token(token.refresh_token().unwrap()).unwrap().request_async(&server.http).await;
    assert!(oauth_error(refresh).contains("invalid_grant"), "the session's refresh tokens ended with it");
    assert_logged_out(&server, &browser, &client_id).await;
    let notices = rp.wait_for(1).await;
    let claims = verify_logout_token(&server, &notices[0], &client_id).await;
    assert_eq!((claims["sub"].clone(), claims["sid"].clone()), (json!(person_id), raw_id["sid"].clone()));

    // Without a hint the person is asked first; confirming ends the session.
    let browser = crate::common::browser();
    let (token, _) = login(&server, &client, &browser, "sato", &[]).await;
    let page = browser
        .get(format!("{}/end_session?client_id={client_id}&post_logout_redirect_uri={AFTER_LOGOUT}", server.public_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(introspect(&server, &client, token.access_token().secret()).await.active(), "nothing ends before consent");
    let confirm = browser
        .post(format!("{}/end_session/confirm", server.public_url))
        .form(&[
            ("csrf_token", hidden_input(&html, "csrf_token").as_str()),
            ("client_id", hidden_input(&html, "client_id").as_str()),
            ("post_logout_redirect_uri", hidden_input(&html, "post_logout_redirect_uri").as_str()),
            ("state", hidden_input(&html, "state").as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 303);
    assert_eq!(location(&confirm), AFTER_LOGOUT);
    assert!(!introspect(&server, &client, token.access_token().secret()).await.active());
    rp.wait_for(2).await;
    // A forged confirmation (no CSRF token) changes nothing.
    let forged = server
        .http
        .post(format!("{}/end_session/confirm", server.public_url))
        .form(&[("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    server.stop().await;
}

async fn back_channel_notice_is_retried_and_survives_restart(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E2004", "ito", PASSWORD).await;
    // The RP is down at first (503 twice).
    let rp = TestRp::start(vec![503, 503]).await;
    let (client_id, secret) = add_confidential(&server, "zeimu", json!({"backchannel_logout_uri": rp.url})).await;
    let (client, _) = discover_client(&server, &client_id, Some(secret)).await;
    let browser = browser();
    let (token, _) = login(&server, &client, &browser, "ito", &[]).await;
    // Logging out through the home page's form ends the session the same way.
    let home = browser.get(format!("{}/my", server.public_url)).send().await.unwrap().text().await.unwrap();
    let out = browser
        .post(format!("{}/logout", server.public_url))
        .form(&[("csrf_token", hidden_input(&home, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(!introspect(&server, &client, token.access_token().secret()).await.active());
    // First attempt fails; wait until it has been tried.
    for _ in 0..100 {
        if rp.answers.lock().unwrap().len() < 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rp.answers.lock().unwrap().len(), 1, "one failed attempt so far");
    // Sekimori restarts while the notice is pending; the notice is in the database.
    let server = server.restart().await;
    server.app.clock.advance(6);
    for _ in 0..100 {
        if rp.answers.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rp.answers.lock().unwrap().is_empty(), "the second attempt came after the backoff");
    server.app.clock.advance(11);
    let notices = rp.wait_for(1).await;
    verify_logout_token(&server, &notices[0], &client_id).await;
    // Delivered exactly once, and both the failures and the delivery are on record.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rp.received.lock().unwrap().len(), 1);
    let (_, events) = server.admin(reqwest::Method::GET, "/api/v1/audit/events?limit=1000", None).await;
    let delivered =
        events["items"].as_array().unwrap().iter().filter(|e| e["action"] == "backchannel_logout.delivered").count();
    assert_eq!(delivered, 1);
    server.stop().await;
}

async fn offline_access_outlives_the_session_but_not_the_person(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E2005", "kato", PASSWORD).await;
    let (client_id, secret) =
        add_confidential(&server, "zeimu", json!({"scopes": ["openid", "profile", "offline_access"]})).await;
    let (client, _) = discover_client(&server, &client_id, Some(secret)).await;
    let browser = browser();
    let (token, _) = login(&server, &client, &browser, "kato", &["offline_access"]).await;
    assert!(token.scopes().unwrap().iter().any(|s| s.as_str() == "offline_access"));
    let home = browser.get(format!("{}/my", server.public_url)).send().await.unwrap().text().await.unwrap();
    browser
        .post(format!("{}/logout", server.public_url))
        .form(&[("csrf_token", hidden_input(&home, "csrf_token"))])
        .send()
        .await
        .unwrap();
    // The browser session has ended, and with it the access token issued in it ...
    assert!(!introspect(&server, &client, token.access_token().secret()).await.active());
    // ... but the offline refresh token still works, and what it mints is active.
    let refreshed = client
        .exchange_refresh_token(token.refresh_token().unwrap())
        .unwrap()
        .request_async(&server.http)
        .await
        .expect("offline_access survives logout");
    assert!(introspect(&server, &client, refreshed.access_token().secret()).await.active());
    // The person leaves, written around Sekimori (its own paths revoke, which holds at once:
    // see `introspection_and_revocation`): nothing of theirs may work any more. Introspection
    // and userinfo may answer from the state this node kept for the second it was read in
    // (`oidc::token_cache`): a write nobody announced is seen from the next second on. (A
    // grant reads the live state every time; refused below, after them, so that nothing the
    // refusal might write makes them pass.)
    sqlx::query("UPDATE people SET status = 'retired' WHERE id = $1")
        .bind(&person_id)
        .execute(server.app.store.pool())
        .await
        .unwrap();
    server.app.clock.advance(1);
    assert!(!introspect(&server, &client, refreshed.access_token().secret()).await.active());
    let userinfo = server
        .http
        .get(format!("{}/userinfo", server.public_url))
        .bearer_auth(refreshed.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);
    let refresh =
        client.exchange_refresh_token(refreshed.refresh_token().unwrap()).unwrap().request_async(&server.http).await;
    assert!(oauth_error(refresh).contains("invalid_grant"));
    server.stop().await;
}

async fn signing_keys_rotate_without_breaking_tokens(db: Db) {
    let server = TestServer::start(db).await;
    server.add_person("E2006", "yamada", PASSWORD).await;
    let (client_id, secret) = add_confidential(&server, "zeimu", json!({})).await;
    let (client, _) = discover_client(&server, &client_id, Some(secret.clone())).await;
    let (before, _) = login(&server, &client, &browser(), "yamada", &[]).await;
    let old_kid = jsonwebtoken::decode_header(&before.id_token().unwrap().to_string()).unwrap().kid.unwrap();
    let jwks_kids = || async {
        let jwks: Value =
            server.http.get(format!("{}/jwks.json", server.public_url)).send().await.unwrap().json().await.unwrap();
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(jwks_kids().await.len(), 2);

    // Published ahead: the new keys are in the JWKS at once but do not sign yet.
    let (status, rotated) = server
        .admin(reqwest::Method::POST, "/api/v1/signing-keys/rotate", Some(json!({"publish_ahead_seconds": 600})))
        .await;
    assert_eq!(status, 201, "{rotated}");
    let created: Vec<String> =
        rotated["created"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().into()).collect();
    assert_eq!(created.len(), 2);
    let kids = jwks_kids().await;
    assert_eq!(kids.len(), 4);
    assert!(created.iter().all(|k| kids.contains(k)) && kids.contains(&old_kid));
    let (still_old, _) = login(&server, &client, &browser(), "yamada", &[]).await;
    assert_eq!(jsonwebtoken::decode_header(&still_old.id_token().unwrap().to_string()).unwrap().kid.unwrap(), old_kid);

    // Ten minutes later the new key signs; tokens from the old one still verify and work.
    server.app.clock.advance(601);
    let (client, _) = discover_client(&server, &client_id, Some(secret.clone())).await;
    let (after, _) = login(&server, &client, &browser(), "yamada", &[]).await;
    let new_kid = jsonwebtoken::decode_header(&after.id_token().unwrap().to_string()).unwrap().kid.unwrap();
    assert!(created.contains(&new_kid));
    let at_kid = jsonwebtoken::decode_header(after.access_token().secret()).unwrap().kid.unwrap();
    assert!(created.contains(&at_kid), "access tokens are signed with the new ES256 key");
    assert!(introspect(&server, &client, after.access_token().secret()).await.active());
    let fresh =
        client.exchange_refresh_token(before.refresh_token().unwrap()).unwrap().request_async(&server.http).await;
    assert!(fresh.is_ok(), "a refresh token from before the rotation still works");
    assert!(jwks_kids().await.contains(&old_kid), "the old key stays while its tokens may live");

    // Once nothing the old key signed can still be valid, it leaves the JWKS.
    server.app.clock.advance(3600 + 120 + 300 + 1);
    server.app.keys.reload(&server.app.store).await.unwrap();
    let kids = jwks_kids().await;
    assert!(!kids.contains(&old_kid));
    assert_eq!(kids.len(), 2);
    let (status, list) = server.admin(reqwest::Method::GET, "/api/v1/signing-keys", None).await;
    assert_eq!(status, 200);
    assert!(list["keys"].as_array().unwrap().iter().all(|k| k["state"] == "signing"));
    server.stop().await;
}

/// What the OpenID Basic OP conformance plan checks of an OP, beyond the plain code flow.
async fn conformance_behaviours(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E2007", "kimura", PASSWORD).await;
    server.add_person("E2008", "hayashi", "yoru-no-tosho-kan-2026#").await;
    let (client_id, secret) = add_confidential(&server, "zeimu", json!({})).await;
    let (client, _) = discover_client(&server, &client_id, Some(secret.clone())).await;
    let browser = browser();
    let (token, first) = login(&server, &client, &browser, "kimura", &[]).await;
    assert!(first.auth_time().is_some());
    assert!(first.email().is_none(), "email was not asked for");

    let base = |extra: &[(&'static str, &'static str)]| {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", "zeimu"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("nonce", "n-0S6_WzA2Mj"),
        ];
        params.extend_from_slice(extra);
        authorize_url(&server, &params)
    };
    // Unknown parameters are ignored; the SSO session answers with a code.
    let response = browser.get(base(&[("unknown_param", "x"), ("vendor_ext", "y")])).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(query_of(&location(&response)).contains_key("code"));
    // max_age=0: the session is too old by definition; the login form comes back.
    server.app.clock.advance(2);
    let response = browser.get(base(&[("max_age", "0")])).send().await.unwrap();
    assert!(location(&response).starts_with("/login?"), "max_age forces re-authentication");
    // Through the form again, the new ID token has a new auth_time (OIDC Core §3.1.2.1: with
    // max_age, auth_time is REQUIRED).
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_max_age(std::time::Duration::from_secs(0))
        .set_pkce_challenge(challenge)
        .url();
    let response = log_in(&browser, &server, url.as_str(), "kimura", PASSWORD).await;
    let again = redeem(&server, &client, &response, verifier).await;
    // claims() also checks that the nonce is echoed.
    let again = again.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).unwrap().clone();
    assert!(again.auth_time().unwrap() > first.auth_time().unwrap(), "re-authenticated: a later auth_time");
    // prompt=login likewise; login_hint pre-fills the form.
    let response = browser.get(base(&[("prompt", "login"), ("login_hint", "kimura")])).send().await.unwrap();
    let login_page = browser.get(format!("{}{}", server.public_url, location(&response))).send().await.unwrap();
    let html = login_page.text().await.unwrap();
    assert!(html.contains(r#"value="kimura""#), "login_hint fills in the login ID");
    // An id_token_hint for someone else with prompt=none: login_required, not a code for kimura.
    let (_, hayashi) = {
        let b = crate::common::browser();
        let mut request =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        request = request.add_scope(Scope::new("openid".into()));
        let (url, _, _) = request.url();
        let response = log_in(&b, &server, url.as_str(), "hayashi", "yoru-no-tosho-kan-2026#").await;
        let code = query_of(&location(&response))["code"].clone();
        let t = client.exchange_code(AuthorizationCode::new(code)).unwrap().request_async(&server.http).await.unwrap();
        (b, t.id_token().unwrap().to_string())
    };
    let response = browser
        .get(base(&[("prompt", "none"), ("id_token_hint", Box::leak(hayashi.into_boxed_str()))]))
        .send()
        .await
        .unwrap();
    assert_eq!(query_of(&location(&response)).get("error").map(String::as_str), Some("login_required"));
    let own_hint: &'static str = Box::leak(token.id_token().unwrap().to_string().into_boxed_str());
    let response = browser.get(base(&[("prompt", "none"), ("id_token_hint", own_hint)])).send().await.unwrap();
    assert!(query_of(&location(&response)).contains_key("code"), "the right person's hint passes");
    // The claims parameter asks for single claims: email in the ID token without the email scope.
    let claims_request = r#"{"id_token":{"email":{"essential":true},"acr":null},"userinfo":{"given_name":null}}"#;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_extra_param("claims", claims_request)
        .set_pkce_challenge(challenge)
        .url();
    let response = browser.get(url.as_str()).send().await.unwrap();
    let with_claims = redeem(&server, &client, &response, verifier).await;
    let claims = with_claims.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).unwrap();
    assert_eq!(claims.email().map(|e| e.as_str()), Some("kimura@city.example.lg.jp"));
    assert!(claims.given_name().is_none(), "given_name was asked for userinfo only");
    let userinfo: Value = server
        .http
        .get(format!("{}/userinfo", server.public_url))
        .bearer_auth(with_claims.access_token().secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], person_id);
    assert_eq!(userinfo["given_name"], "太郎");
    assert!(userinfo.get("email").is_none());
    assert_eq!(userinfo["roles"], json!([]), "the roles claim is always present");
    // Malformed claims, and an essential acr nobody can meet, are refused at the client's URI.
    let response = browser.get(base(&[("claims", "{not json")])).send().await.unwrap();
    assert_eq!(query_of(&location(&response)).get("error").map(String::as_str), Some("invalid_request"));
    let response = browser
        .get(base(&[("claims", r#"{"id_token":{"acr":{"essential":true,"values":["urn:example:gold"]}}}"#)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query_of(&location(&response)).get("error").map(String::as_str),
        Some("unmet_authentication_requirements")
    );
    // acr_values the session satisfies: straight through, and the acr says what happened.
    let response = browser.get(base(&[("acr_values", "urn:sekimori:acr:password")])).send().await.unwrap();
    assert!(query_of(&location(&response)).contains_key("code"));
    server.stop().await;
}

on_both_databases!(
    refresh_rotation_and_reuse_detection,
    introspection_and_revocation,
    client_credentials_grant,
    rp_initiated_logout_with_back_channel_notice,
    back_channel_notice_is_retried_and_survives_restart,
    offline_access_outlives_the_session_but_not_the_person,
    signing_keys_rotate_without_breaking_tokens,
    conformance_behaviours,
);
