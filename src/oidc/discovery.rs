//! OpenID Provider metadata (OIDC Discovery 1.0 §3; RFC 8414) and the JWKS.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::systems::SUPPORTED_SCOPES;
use crate::App;

pub async fn openid_configuration(State(app): State<App>) -> Response {
    let issuer = &app.config.issuer;
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "end_session_endpoint": format!("{issuer}/end_session"),
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "acr_values_supported": app.acr_values_supported(),
        // No consent screen: registering a system is the organisation's consent, so prompt=consent is
        // satisfied without one and not advertised.
        "prompt_values_supported": ["none", "login", "select_account"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "at_hash", "roles",
            "name", "family_name", "given_name", "preferred_username", "employee_number", "email", "email_verified",
            "login_id", "section",
        ],
        "claims_locales_supported": ["ja-Kana-JP"],
        "ui_locales_supported": ["ja", "en"],
        "claims_parameter_supported": true,
        "request_parameter_supported": false,
        // The default is true (OIDC Discovery §3), so "not supported" must be said.
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    });
    cacheable(Json(body).into_response())
}

pub async fn jwks(State(app): State<App>) -> Response {
    cacheable(Json(app.keys.jwks()).into_response())
}

/// Seconds consuming systems may cache discovery and the JWKS; key rotation allows for it.
pub const JWKS_MAX_AGE: i64 = 300;

fn cacheable(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
