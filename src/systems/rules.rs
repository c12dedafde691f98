//! The rules a consuming system's settings obey, checked as a whole: registration and every
//! later change pass through [`check`], so a change cannot reach a state registration refuses.

use crate::directory::InvalidField;

use super::{AuthMethod, Client, ClientType, GrantType, SUPPORTED_SCOPES};
use super::{MAX_ACCESS_TOKEN_TTL, MAX_REFRESH_TOKEN_TTL};

/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 20;

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField { field, reason: reason.into() }
}

/// Every rule on the settings of `client`, in the order an administrator fixes them. The
/// owner org unit's existence needs the database and is checked by the caller.
pub(super) fn check(client: &Client) -> Result<(), InvalidField> {
    match (client.client_type, client.token_endpoint_auth_method) {
        (ClientType::Public, AuthMethod::None) => {}
        (ClientType::Public, _) => {
            return Err(invalid("token_endpoint_auth_method", "a public client has no secret: use none"))
        }
        (ClientType::Confidential, AuthMethod::None) => {
            return Err(invalid("token_endpoint_auth_method", "a confidential client authenticates"))
        }
        (ClientType::Confidential, _) => {}
    }
    if client.redirect_uris.is_empty() || client.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid("redirect_uris", "give 1 to 20 redirect URIs"));
    }
    for uri in &client.redirect_uris {
        validate_redirect_uri("redirect_uris", uri)?;
    }
    for uri in &client.post_logout_redirect_uris {
        validate_redirect_uri("post_logout_redirect_uris", uri)?;
    }
    if !client.scopes.iter().any(|s| s == "openid") {
        return Err(invalid("scopes", "must include openid"));
    }
    if let Some(unknown) = client.scopes.iter().find(|s| !SUPPORTED_SCOPES.contains(&s.as_str())) {
        return Err(invalid("scopes", format!("unsupported scope {unknown}")));
    }
    // Public clients cannot opt out of PKCE (RFC 9700 §2.1.1).
    if client.client_type == ClientType::Public && !client.require_pkce {
        return Err(invalid("require_pkce", "a public client must use PKCE"));
    }
    if !(30..=MAX_ACCESS_TOKEN_TTL).contains(&client.access_token_ttl) {
        return Err(invalid("access_token_ttl", "must be between 30 and 3600 seconds"));
    }
    check_grants(client)?;
    if !(60..=MAX_REFRESH_TOKEN_TTL).contains(&client.refresh_token_ttl) {
        return Err(invalid("refresh_token_ttl", "must be between 60 seconds and 90 days"));
    }
    if let Some(uri) = &client.backchannel_logout_uri {
        // OpenID Back-Channel Logout §2.2: absolute, no fragment; https outside the loopback.
        validate_redirect_uri("backchannel_logout_uri", uri)?;
    }
    Ok(())
}

fn check_grants(client: &Client) -> Result<(), InvalidField> {
    let grants = &client.grant_types;
    if grants.is_empty() {
        return Err(invalid("grant_types", "give at least one grant type"));
    }
    if grants.contains(&GrantType::ClientCredentials) && client.client_type == ClientType::Public {
        return Err(invalid("grant_types", "client_credentials needs a confidential client"));
    }
    if grants.contains(&GrantType::RefreshToken) && !grants.contains(&GrantType::AuthorizationCode) {
        return Err(invalid("grant_types", "refresh_token comes only from authorization_code"));
    }
    for scope in &client.service_scopes {
        validate_service_scope(scope)?;
    }
    if !client.service_scopes.is_empty() && !grants.contains(&GrantType::ClientCredentials) {
        return Err(invalid("service_scopes", "only a client with the client_credentials grant has service scopes"));
    }
    Ok(())
}

/// The service scopes as given, each once, in the order first given.
pub(super) fn distinct(scopes: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if !kept.contains(&scope) {
            kept.push(scope);
        }
    }
    kept
}

/// A scope token (RFC 6749 §3.3) for client_credentials: lower-case words joined by '.', ':'
/// or '-', so that it cannot be mistaken for a person's scope.
fn validate_service_scope(scope: &str) -> Result<(), InvalidField> {
    let ok = (1..=64).contains(&scope.len())
        && scope.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | ':' | '-' | '_'))
        && !SUPPORTED_SCOPES.contains(&scope);
    if ok {
        Ok(())
    } else {
        Err(invalid("service_scopes", format!("{scope:?}: 1 to 64 of a-z, 0-9, '.', ':', '-', '_', not a login scope")))
    }
}

/// A redirect URI must be absolute, without fragment (RFC 6749 §3.1.2), and https unless it
/// points at the loopback interface (RFC 8252 §7.3).
pub fn validate_redirect_uri(field: &'static str, uri: &str) -> Result<(), InvalidField> {
    let parsed = url::Url::parse(uri).map_err(|_| invalid(field, format!("not an absolute URL: {uri}")))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(invalid(field, "must not contain a fragment"));
    }
    if uri.len() > 2000 {
        return Err(invalid(field, "too long"));
    }
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(field, "must use https (http only on the loopback interface)")),
    }
}

pub(super) fn validate_client_id(value: &str) -> Result<String, InvalidField> {
    let ok = (3..=64).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid("client_id", "must be 3 to 64 characters of a-z, 0-9, '-', '_' or '.'"))
    }
}
