//! The SCIM boundary's one error shape (RFC 7644 §3.12): a JSON body with the Error schema, the
//! HTTP status as a string, and a `scimType` when the spec names one for the failure.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::directory::DirectoryError;

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const CONTENT_TYPE: &str = "application/scim+json";

#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    /// RFC 7644 Table 9: invalidFilter, tooMany, uniqueness, mutability, invalidSyntax,
    /// invalidPath, noTarget, invalidValue, invalidVers, sensitive.
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self { status, scim_type, detail: detail.into() }
    }
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad("invalidValue", detail)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("{what} not found"))
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, None, "a valid HR feed token is required")
    }
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, None, "this token does not carry the hr:feed right")
    }
    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the resource has changed (If-Match does not match its version)",
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, None, "this endpoint does not support the method")
    }
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, None, detail)
    }
    /// Logs the cause once; the caller sees no internals.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "SCIM internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
    }
}

impl From<DirectoryError> for ScimError {
    fn from(err: DirectoryError) -> Self {
        match err {
            DirectoryError::Invalid(invalid) => ScimError::invalid_value(invalid.to_string()),
            DirectoryError::NotFound(what) => ScimError::not_found(what),
            DirectoryError::Conflict(detail) => ScimError::uniqueness(detail),
            DirectoryError::Database(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ScimError {
    /// 503 to send again when the database gave way to another request (RFC 7644 §3.12:
    /// "Service Unavailable"; nothing was written), otherwise an internal error.
    fn from(err: sqlx::Error) -> Self {
        if crate::store::is_transient(&err) {
            tracing::warn!(error = %err, "SCIM request gave way to another; answered 503");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, None, crate::store::GAVE_WAY);
        }
        ScimError::internal(err)
    }
}

impl From<super::filter::FilterError> for ScimError {
    fn from(err: super::filter::FilterError) -> Self {
        ScimError::bad("invalidFilter", err.to_string())
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(scim_type), Some(fields)) = (self.scim_type, body.as_object_mut()) {
            fields.insert("scimType".into(), scim_type.into());
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sekimori-scim\""));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
