//! The token endpoint (RFC 6749 §3.2): client authentication, the grant's parameters checked
//! for shape, then the grant itself (`oidc::grants`). No password grant and no implicit flow
//! exist.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::params::Params;
use crate::systems::{Client, GrantType};
use crate::App;

use super::client_auth::{authenticate_client, form_params};
use super::codes;
use super::error::OAuthError;
use super::grants::{self, Grant};

pub async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let params = form_params(&headers, &body)?;
    let client = authenticate_client(&app, &headers, &params).await?;
    let grant = parse_grant(&params, &client)?;
    let response = grants::exchange(&app, &client, grant, app.clock.now()).await?;
    let mut response = Json(response).into_response();
    // RFC 6749 §5.1: token responses must not be cached.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The grant a token request asks for, with what it must carry; a grant the client may not use
/// is refused before its parameters are looked at.
fn parse_grant<'a>(params: &'a Params, client: &Client) -> Result<Grant<'a>, OAuthError> {
    let get = |name| params.get(name).ok().flatten();
    match get("grant_type") {
        None => Err(OAuthError::invalid_request("grant_type is required")),
        Some("authorization_code") => {
            grants::allowed(client, GrantType::AuthorizationCode)?;
            let code = get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
            let redirect_uri =
                get("redirect_uri").ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
            let code_verifier = get("code_verifier");
            if code_verifier.is_some_and(|v| !codes::valid_verifier(v)) {
                return Err(OAuthError::invalid_request("code_verifier is malformed"));
            }
            Ok(Grant::AuthorizationCode { code, redirect_uri, code_verifier })
        }
        Some("refresh_token") => {
            grants::allowed(client, GrantType::RefreshToken)?;
            let refresh_token =
                get("refresh_token").ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            Ok(Grant::RefreshToken { refresh_token, scope: get("scope") })
        }
        Some("client_credentials") => {
            grants::allowed(client, GrantType::ClientCredentials)?;
            Ok(Grant::ClientCredentials { scope: get("scope") })
        }
        Some(_) => Err(OAuthError::unsupported_grant_type(
            "supported grants: authorization_code, refresh_token, client_credentials",
        )),
    }
}
