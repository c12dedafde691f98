//! The userinfo endpoint (OIDC Core §5.3). The access token is checked against live state:
//! a token whose session, person or client has been revoked is refused at once, even though
//! its signature and expiry are still good.

use crate::App;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::claims::{self, ClaimsRequest, ClaimsTarget};
use super::error::OAuthError;
use super::introspection::check_access_token;
use crate::params::Params;

pub async fn userinfo(
    State(app): State<App>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let token = bearer_token(&method, &headers, &body)?;
    let inactive = || OAuthError::invalid_token("the token is not active");
    // One query read the token's person, system and roles with its live state.
    let active = check_access_token(&app, &token).await?.ok_or_else(inactive)?;
    // A client_credentials token speaks for no person: there is nobody to describe.
    let person = active.person.as_ref().ok_or_else(inactive)?;
    let scopes: Vec<&str> = active.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return Err(OAuthError::insufficient_scope("userinfo needs the openid scope"));
    }
    let request = ClaimsRequest::from_stored(active.claims.as_deref());
    let requested = request.names(ClaimsTarget::Userinfo);
    let staff = claims::StaffFacts::read(app.store.pool(), person, &scopes, &requested).await?;
    let mut claims = claims::scope_claims(person, &staff, &scopes, &requested, &active.client_scopes);
    claims.insert("roles".into(), serde_json::json!(active.roles));
    let mut response = Json(claims).into_response();
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
