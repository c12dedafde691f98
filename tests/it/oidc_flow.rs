//! The whole authorization-code + PKCE flow driven by an independent client library (the
//! `openidconnect` crate): discovery, login form, code exchange, ID token validation, userinfo.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::json;

use crate::common::{browser, location, log_in, query_of, Db, TestServer};

const PASSWORD: &str = "kasumi-ga-seki-2026!";

async fn code_flow_with_pkce_against_openidconnect_crate(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E1001", "tanaka", PASSWORD).await;
    let redirect = "http://127.0.0.1:9001/callback";
    let (client_id, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential", "redirect_uris": [redirect]}))
        .await;

    let http = server.http.clone();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(server.public_url.clone()).unwrap(), &http)
        .await
        .expect("discovery document is valid");
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(client_id.clone()), secret.map(ClientSecret::new))
            .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = browser();
    let response = log_in(&browser, &server, auth_url.as_str(), "tanaka", PASSWORD).await;
    assert_eq!(response.status(), 303);
    let callback = location(&response);
    assert!(callback.starts_with(redirect), "{callback}");
    let params = query_of(&callback);
    assert_eq!(params.get("state"), Some(state.secret()));
    assert_eq!(params.get("iss"), Some(&server.public_url), "RFC 9207 iss parameter");
    let code = params.get("code").expect("code").clone();

    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange succeeds");
    let id_token = token.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("ID token signature, iss, aud, nonce and exp are valid");
    assert_eq!(claims.subject().as_str(), person_id);
    assert_eq!(claims.audiences().len(), 1);
    assert_eq!(claims.audiences()[0].as_str(), client_id);
    assert!(claims.auth_time().is_some());
    let expected_hash = AccessTokenHash::from_token(
        token.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));

    let userinfo: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo answers");
    assert_eq!(userinfo.subject().as_str(), person_id);
    assert_eq!(userinfo.email().map(|e| e.as_str()), Some("tanaka@city.example.lg.jp"));
    let name = userinfo.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
    assert_eq!(name.as_deref(), Some("試験 太郎"));

    // The SSO session: a second authorization goes straight back with a code, no login form.
    let (auth_url, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
        .url();
    let again = browser.get(auth_url.as_str()).send().await.unwrap();
    assert_eq!(again.status(), 303);
    assert!(location(&again).starts_with(redirect));
    assert!(query_of(&location(&again)).contains_key("code"));
    server.stop().await;
}

async fn public_client_with_es256_id_tokens(db: Db) {
    let server = TestServer::start(db).await;
    let person_id = server.add_person("E1002", "suzuki", PASSWORD).await;
    let redirect = "http://127.0.0.1:9002/callback";
    let (client_id, secret) = server
        .add_client(json!({
            "client_id": "toshokan", "name": "図書館システム", "client_type": "public",
            "redirect_uris": [redirect], "id_token_signed_response_alg": "ES256"
        }))
        .await;
    assert!(secret.is_none(), "a public client has no secret");
    let http = server.http.clone();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.public_url.clone()).unwrap(), &http).await.unwrap();
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(client_id), None)
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let response = log_in(&browser(), &server, auth_url.as_str(), "suzuki", PASSWORD).await;
    let code = query_of(&location(&response))["code"].clone();
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("public client exchanges with PKCE and no secret");
    let verifier = client.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = token.id_token().unwrap().claims(&verifier, &nonce).expect("ES256 ID token verifies");
    assert_eq!(claims.subject().as_str(), person_id);
    server.stop().await;
}

on_both_databases!(code_flow_with_pkce_against_openidconnect_crate, public_client_with_es256_id_tokens);
