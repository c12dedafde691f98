//! The admin API's one error shape: RFC 9457 problem details.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access::AccessError;
use crate::directory::{DirectoryError, InvalidField};
use crate::systems::ClientError;

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For validation failures: the offending body member (422) or query parameter (400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<Option<String>>) -> Self {
        Self { kind: "about:blank", title, status: status.as_u16(), detail: detail.into(), field: None }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad Request", detail.into())
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "a valid API token is required".to_owned())
    }
    pub fn forbidden(scope: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", format!("this token lacks the {scope} scope"))
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found", format!("{what} not found"))
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail.into())
    }
    /// 400 naming the query parameter that breaks its rule.
    pub fn bad_parameter(invalid: InvalidField) -> Self {
        let mut p = Self::bad_request(invalid.to_string());
        p.field = Some(invalid.field);
        p
    }
    /// 422 naming the offending field.
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        let mut p = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity", detail.into());
        p.field = Some(field);
        p
    }
    /// Logs the cause once; the caller sees no internals.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "admin API internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None)
    }
    /// The database failing: 503 to send again when it gave way to another request
    /// (`store::is_transient`: nothing was written), otherwise an internal error.
    pub fn database(err: sqlx::Error) -> Self {
        if crate::store::is_transient(&err) {
            tracing::warn!(error = %err, "admin API request gave way to another; answered 503");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                crate::store::GAVE_WAY.to_owned(),
            );
        }
        Self::internal(err)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="sekimori-admin""#));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<DirectoryError> for Problem {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Invalid(invalid) => {
                let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity", invalid.to_string());
                p.field = Some(invalid.field);
                p
            }
            DirectoryError::NotFound(what) => Problem::not_found(what),
            DirectoryError::Conflict(detail) => Problem::conflict(detail),
            DirectoryError::Database(db) => Problem::database(db),
        }
    }
}

impl From<ClientError> for Problem {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Invalid(invalid) => DirectoryError::Invalid(invalid).into(),
            ClientError::NotFound => Problem::not_found("client"),
            ClientError::Conflict => Problem::conflict(e.to_string()),
            ClientError::StateConflict(detail) => Problem::conflict(detail),
            ClientError::Database(db) => Problem::database(db),
        }
    }
}

impl From<AccessError> for Problem {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Invalid(invalid) => DirectoryError::Invalid(invalid).into(),
            // The admin API calls a consuming system a client.
            AccessError::NotFound("system") => Problem::not_found("client"),
            AccessError::NotFound(what) => Problem::not_found(what),
            // Refusals meant for managers acting in person; an administrator meets them only as
            // a state that does not allow the change.
            AccessError::Forbidden(why) => Problem::conflict(why),
            AccessError::Conflict(why) => Problem::conflict(why),
            AccessError::Database(db) => Problem::database(db),
        }
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        Problem::database(e)
    }
}

impl From<crate::Error> for Problem {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Directory(d) => d.into(),
            crate::Error::Client(c) => c.into(),
            crate::Error::Access(a) => a.into(),
            crate::Error::Database(db) => Problem::database(db),
            other => Problem::internal(other),
        }
    }
}

/// A JSON object body whose rejections are problem documents too. Every request body of the
/// API is an object: serde would also fill a struct from an array of its fields in order, which
/// no client means to send, so anything but an object is refused.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let unprocessable =
            |detail: String| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity", detail);
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        if !value.is_object() {
            return Err(unprocessable("the body must be a JSON object".into()));
        }
        serde_json::from_value(integral_numbers(value))
            .map(ApiJson)
            .map_err(|e| unprocessable(format!("Failed to deserialize the JSON body into the target type: {e}")))
    }
}

fn json_rejection(rejection: JsonRejection) -> Problem {
    let status = rejection.status();
    let title = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported Media Type",
        StatusCode::PAYLOAD_TOO_LARGE => "Payload Too Large",
        StatusCode::UNPROCESSABLE_ENTITY => "Unprocessable Entity",
        _ => "Bad Request",
    };
    Problem::new(status, title, rejection.body_text())
}

/// JSON does not tell `3` from `3.0` (RFC 8259 §6; JSON Schema calls both integers): a number
/// without a fraction is taken as the integer it is, so `"expires_in": 3600.0` means 3600.
fn integral_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral_numbers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, integral_numbers(v))).collect()),
        other => other,
    }
}

/// Query parameters whose rejections are problem documents.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(Problem::bad_request(rejection.body_text())),
        }
    }
}

/// Turns an error answered in plain text by a layer (413 from the body limit, for instance)
/// into a problem document, so the admin API has one error shape.
pub async fn problem_for_plain_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        // The SCIM service's errors have their own shape (RFC 7644 §3.12); the console's are
        // pages.
        v.starts_with("application/problem+json")
            || v.starts_with("text/html")
            || v.starts_with("application/json")
            || v.starts_with("application/scim+json")
    });
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let title = status.canonical_reason().unwrap_or("Error");
    let mut problem = Problem::new(status, "Error", None);
    problem.title = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Payload Too Large",
        StatusCode::METHOD_NOT_ALLOWED => "Method Not Allowed",
        StatusCode::BAD_REQUEST => "Bad Request",
        _ => "Error",
    };
    problem.detail = Some(title.to_owned());
    problem.into_response()
}
