//! The OAuth error format (RFC 6749 §5.2, RFC 6750 §3), separate from the admin API's
//! problem+json: consuming systems' libraries parse exactly this shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// Set for 401 answers: the challenge the client should answer.
    pub www_authenticate: Option<String>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into(), www_authenticate: None }
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    /// RFC 6749 §5.2: 401 with a challenge for the scheme the client tried.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
        e.www_authenticate = Some(r#"Basic realm="sekimori", charset="UTF-8""#.into());
        e
    }
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }
    /// RFC 7009 §2.2.1.
    pub fn unsupported_token_type(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_token_type", description)
    }
    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", description)
    }
    /// RFC 6750 §3.1: a bearer token that is missing, expired, revoked or malformed.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        let description = description.into();
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description.clone());
        e.www_authenticate = Some(format!(
            r#"Bearer realm="sekimori", error="invalid_token", error_description="{}""#,
            description.replace(['"', '\\'], "")
        ));
        e
    }
    /// RFC 6750 §3.1: the token is good but does not carry the scope this resource needs.
    pub fn insufficient_scope(description: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "insufficient_scope", description);
        e.www_authenticate = Some(r#"Bearer realm="sekimori", error="insufficient_scope", scope="openid""#.into());
        e
    }
    /// RFC 6750 §3.1: no credentials at all gets a bare challenge, no error code.
    pub fn missing_token() -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_token", "no access token");
        e.www_authenticate = Some(r#"Bearer realm="sekimori""#.into());
        e
    }
    /// Internal failures are logged here, once, and answered without detail.
    pub fn server_error(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error on an OAuth endpoint");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
    }
}

impl<E: Into<crate::Error>> From<E> for OAuthError {
    /// 503 `temporarily_unavailable` (RFC 6749 §4.1.2.1's code for a server that can answer
    /// later) when the database gave way to another request: nothing was written, and the
    /// same request sent again goes through. Any other failure is a `server_error`.
    fn from(err: E) -> Self {
        let err = err.into();
        if err.is_transient() {
            tracing::warn!(error = %err, "OAuth request gave way to another; answered 503");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", crate::store::GAVE_WAY);
        }
        OAuthError::server_error(err)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(challenge) = self.www_authenticate.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
