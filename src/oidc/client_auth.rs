//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! §2.3): exactly one method, the one the client registered, one answer for every failure.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::systems::{AuthMethod, Client};
use crate::App;

use super::error::OAuthError;
use crate::params::Params;

/// RFC 6749 §2.3: exactly one authentication method, the one the client registered.
pub async fn authenticate_client(app: &App, headers: &HeaderMap, params: &Params) -> Result<Client, OAuthError> {
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
    let client = app.clients.get(&app.store, app.stamp(), &client_id).await?;
    // One answer for unknown client, wrong secret, wrong method and disabled client.
    let failure = || OAuthError::invalid_client("client authentication failed");
    let Some(client) = client.filter(Client::is_active) else {
        return Err(failure());
    };
    if client.token_endpoint_auth_method != method {
        return Err(failure());
    }
    // The current secret, or the one a rotation replaced while its grace period lasts.
    if secret.is_some_and(|secret| !client.secret_matches(&secret, app.clock.now())) {
        return Err(failure());
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

/// The body of a request to an OAuth endpoint: form-encoded (RFC 6749 §3.2), each parameter once.
pub fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let is_form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !is_form {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let params = Params::parse(body);
    if let Some(name) = params.first_repeated() {
        return Err(OAuthError::invalid_request(format!("parameter {name} must not be repeated")));
    }
    Ok(params)
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
