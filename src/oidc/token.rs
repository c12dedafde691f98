//! The token endpoint (RFC 6749 §3.2, OIDC Core §3.1.3): client authentication, then the
//! authorization_code grant. Refresh and client_credentials arrive with the lifecycle issue.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;

use crate::access::clients::{self, AuthMethod, Client, SigningAlg};
use crate::audit::{self, Actor, Event, Outcome};
use crate::crypto;
use crate::directory;
use crate::revocation::{self, Target};
use crate::sessions;
use crate::App;

use super::claims::{self, IdTokenInput};
use super::codes::{self, Redemption};
use super::error::OAuthError;
use super::params::Params;

#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub id_token: String,
    pub scope: String,
}

pub async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let is_form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !is_form {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let params = Params::parse(&body);
    if let Some(name) = params.first_repeated() {
        return Err(OAuthError::invalid_request(format!("parameter {name} must not be repeated")));
    }
    let client = authenticate_client(&app, &headers, &params).await?;
    let get = |name| params.get(name).ok().flatten();
    let response = match get("grant_type") {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("authorization_code") => authorization_code(&app, &client, &params).await?,
        Some(_) => return Err(OAuthError::unsupported_grant_type("only authorization_code is supported")),
    };
    let mut response = Json(response).into_response();
    // RFC 6749 §5.1: token responses must not be cached.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// RFC 6749 §2.3: exactly one authentication method, the one the client registered.
async fn authenticate_client(app: &App, headers: &HeaderMap, params: &Params) -> Result<Client, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
            match value.split_once(' ') {
                Some((scheme, credentials)) if scheme.eq_ignore_ascii_case("basic") => Some(
                    parse_basic(credentials.trim())
                        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?,
                ),
                _ => return Err(OAuthError::invalid_client("unsupported Authorization scheme")),
            }
        }
    };
    let body_id = params.get("client_id").map_err(OAuthError::invalid_request)?;
    let body_secret = params.get("client_secret").map_err(OAuthError::invalid_request)?;
    let (client_id, secret, method) = match (basic, body_secret) {
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("use one client authentication method, not two")),
        (Some((id, secret)), None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request("client_id does not match the authenticated client"));
            }
            (id, Some(secret), AuthMethod::ClientSecretBasic)
        }
        (None, Some(secret)) => {
            let id = body_id.ok_or_else(|| OAuthError::invalid_request("client_id is required"))?;
            (id.to_owned(), Some(secret.to_owned()), AuthMethod::ClientSecretPost)
        }
        (None, None) => {
            let id = body_id.ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
            (id.to_owned(), None, AuthMethod::None)
        }
    };
    let client = clients::get(&app.store, &client_id).await?;
    // One answer for unknown client, wrong secret, wrong method and disabled client.
    let failure = || OAuthError::invalid_client("client authentication failed");
    let Some(client) = client.filter(Client::is_active) else {
        return Err(failure());
    };
    if client.token_endpoint_auth_method != method {
        return Err(failure());
    }
    if let Some(secret) = secret {
        let expected = client.secret_hash.as_deref().unwrap_or("");
        if !crypto::ct_eq(crypto::sha256_hex(&secret).as_bytes(), expected.as_bytes()) {
            return Err(failure());
        }
    }
    Ok(client)
}

/// `Authorization: Basic` credentials; id and secret are form-urlencoded inside (RFC 6749 §2.3.1).
fn parse_basic(credentials: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(credentials).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((decode(id)?, decode(secret)?))
}

async fn authorization_code(app: &App, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let get = |name| params.get(name).ok().flatten();
    let code = get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = get("redirect_uri").ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let verifier = get("code_verifier");
    if verifier.is_some_and(|v| !codes::valid_verifier(v)) {
        return Err(OAuthError::invalid_request("code_verifier is malformed"));
    }
    let now = app.clock.now();
    let actor = Actor::Client(client.client_id.clone());
    let mut tx = app.store.begin().await?;
    let grant = match codes::redeem(&mut tx, now, code).await? {
        Redemption::First(grant) => grant,
        Redemption::Unknown => return Err(OAuthError::invalid_grant("the code is invalid")),
        Redemption::Replayed { code_id, client_id } => {
            // RFC 6749 §4.1.2: a code used twice is a sign of theft; what it issued is revoked.
            revocation::revoke(
                &mut tx,
                &actor,
                now,
                Target::AuthorizationCode(&code_id),
                "authorization code replayed",
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(client_id = %client_id, "authorization code replayed; its tokens were revoked");
            return Err(OAuthError::invalid_grant("the code is invalid"));
        }
    };
    // Every check below uses the code up, and the refusal is audited.
    let refusal = match () {
        _ if grant.client_id != client.client_id => Some("the code was issued to another client"),
        _ if grant.expires_at <= now => Some("the code has expired"),
        _ if grant.redirect_uri != redirect_uri => Some("redirect_uri does not match the authorization request"),
        _ => match (&grant.code_challenge, verifier) {
            (Some(challenge), Some(verifier)) if codes::verifier_matches(verifier, challenge) => None,
            (Some(_), Some(_)) => Some("code_verifier does not match the code_challenge"),
            (Some(_), None) => Some("code_verifier is required"),
            // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade attempt.
            (None, Some(_)) => Some("code_verifier sent for a code issued without code_challenge"),
            (None, None) => None,
        },
    };
    let refusal = match refusal {
        Some(r) => Some(r),
        None => {
            let today = directory::today_in_japan(now);
            if !directory::person_may_log_in(&mut *tx, &grant.person_id, today).await?
                || !sessions::is_live(&mut *tx, now, &grant.auth.session_id).await?
            {
                Some("the person or session can no longer be used")
            } else {
                None
            }
        }
    };
    if let Some(reason) = refusal {
        audit::record(
            &mut tx,
            now,
            Event {
                actor: &actor,
                action: "token.refused",
                target: format!("auth_code:{}", grant.id),
                outcome: Outcome::Failure,
                detail: serde_json::json!({"reason": reason}),
                source_ip: None,
            },
        )
        .await?;
        tx.commit().await?;
        return Err(OAuthError::invalid_grant(reason));
    }
    let person = directory::get_person(&mut *tx, &grant.person_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the person no longer exists"))?;
    let jti = claims::new_jti();
    let access_claims =
        claims::access_token(&app.config.issuer, client, &person.id, &grant.auth, &grant.scope, &jti, now);
    let access_token = app.keys.sign(SigningAlg::ES256, "at+jwt", &access_claims)?;
    let scopes: Vec<&str> = grant.scope.split(' ').collect();
    let id_claims = claims::id_token(IdTokenInput {
        issuer: &app.config.issuer,
        client,
        person: &person,
        auth: &grant.auth,
        scopes: &scopes,
        nonce: grant.nonce.as_deref(),
        access_token: &access_token,
        now,
        ttl: app.config.tokens.id_token_ttl,
    });
    let id_token = app.keys.sign(client.id_token_signed_response_alg, "JWT", &id_claims)?;
    sqlx::query(
        "INSERT INTO access_tokens (jti, client_id, person_id, session_id, code_id, scope, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&jti)
    .bind(&client.client_id)
    .bind(&person.id)
    .bind(&grant.auth.session_id)
    .bind(&grant.id)
    .bind(&grant.scope)
    .bind(now)
    .bind(now + client.access_token_ttl)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        now,
        Event {
            actor: &actor,
            action: "token.issued",
            target: format!("person:{}", person.id),
            outcome: Outcome::Success,
            detail: serde_json::json!({"grant_type": "authorization_code", "jti": jti, "sid": grant.auth.session_id}),
            source_ip: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: client.access_token_ttl,
        id_token,
        scope: grant.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = STANDARD.encode("my%20client:s%3Acret+x");
        assert_eq!(parse_basic(&encoded), Some(("my client".into(), "s:cret x".into())));
        assert_eq!(parse_basic("!!!"), None);
    }
}
