//! The userinfo endpoint (OIDC Core §5.3). The access token is checked against live state:
//! a token whose session, person or client has been revoked is refused at once, even though
//! its signature and expiry are still good.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::Validation;
use serde::Deserialize;
use sqlx::Row;

use crate::access::clients;
use crate::directory;
use crate::sessions;
use crate::App;

use super::claims;
use super::error::OAuthError;
use super::params::Params;

#[derive(Debug, Deserialize)]
struct AccessClaims {
    jti: String,
    sub: String,
}

pub async fn userinfo(
    State(app): State<App>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let token = bearer_token(&method, &headers, &body)?;
    let (person_id, scope) = check_access_token(&app, &token).await?;
    let person = directory::get_person(app.store.pool(), &person_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("the token is not active"))?;
    let scopes: Vec<&str> = scope.split(' ').collect();
    let mut response = Json(claims::scope_claims(&person, &scopes)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// RFC 6750 §2.1 (header) and §2.2 (form body, POST only); not both.
fn bearer_token(method: &Method, headers: &HeaderMap, body: &Bytes) -> Result<String, OAuthError> {
    let from_header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    Some(token.trim().to_owned())
                }
                _ => return Err(OAuthError::invalid_token("the Authorization header must carry a Bearer token")),
            }
        }
    };
    let from_body = if *method == Method::POST {
        Params::parse(body).get("access_token").map_err(OAuthError::invalid_request)?.map(str::to_owned)
    } else {
        None
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request("send the token once")),
        (Some(token), None) | (None, Some(token)) => Ok(token),
        (None, None) => Err(OAuthError::missing_token()),
    }
}

/// Verifies an access token this server issued and its live state; returns (person, scope).
pub async fn check_access_token(app: &App, token: &str) -> Result<(String, String), OAuthError> {
    let inactive = || OAuthError::invalid_token("the token is not active");
    let header = jsonwebtoken::decode_header(token).map_err(|_| inactive())?;
    // typ at+jwt (RFC 9068 §4) keeps an ID token from being used as an access token.
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(inactive());
    }
    let kid = header.kid.ok_or_else(inactive)?;
    let (alg, key) = app.keys.decoding_key(&kid).ok_or_else(inactive)?;
    if header.alg != alg {
        return Err(inactive());
    }
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[&app.config.issuer]);
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map_err(|_| inactive())?.claims;

    let now = app.clock.now();
    let row = sqlx::query(
        "SELECT client_id, person_id, session_id, scope FROM access_tokens
         WHERE jti = $1 AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(&claims.jti)
    .bind(now)
    .fetch_optional(app.store.pool())
    .await?
    .ok_or_else(inactive)?;
    let person_id: Option<String> = row.try_get("person_id")?;
    let person_id = person_id.filter(|p| *p == claims.sub).ok_or_else(inactive)?;
    let session_id: Option<String> = row.try_get("session_id")?;
    let client_id: String = row.try_get("client_id")?;
    let live_session = match session_id {
        Some(sid) => sessions::is_live(app.store.pool(), now, &sid).await?,
        None => true,
    };
    let client_active = clients::get(&app.store, &client_id).await?.is_some_and(|c| c.is_active());
    let person_ok = directory::person_may_log_in(app.store.pool(), &person_id, directory::today_in_japan(now)).await?;
    if !(live_session && client_active && person_ok) {
        return Err(inactive());
    }
    Ok((person_id, row.try_get("scope")?))
}
