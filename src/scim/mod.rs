//! R2, R22: the SCIM 2.0 service provider (RFC 7643, RFC 7644) through which an HR system feeds
//! Sekimori: Users are people, Groups are org units. It lives on the admin listener at
//! `/scim/v2`, and only a token carrying the `hr:feed` right may call it.
//!
//! SCIM is one more source of HR changes: what a request changes about a person becomes
//! lifecycle changes (`hr::changes`) applied at once — or on the date of the
//! `Sekimori-Effective-Date` header — so a leaver who arrives by `DELETE`, by `PATCH
//! active=false` or by `PUT` ends exactly as one from a CSV file does. A `PATCH` is applied to
//! the resource as JSON and then handled as the `PUT` of the result: one way to change a person.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod groups;
pub mod patch;
pub mod query;
pub mod users;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use time::Date;

use crate::admin::auth::Principal;
use crate::admin::rights::Right;
use crate::audit::Actor;
use crate::App;

use error::{ScimError, CONTENT_TYPE};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SEKIMORI_USER: &str = "urn:sekimori:scim:schemas:extension:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// The request header that dates a change: `YYYY-MM-DD` in Japan. Without it a change takes
/// effect at once.
pub const EFFECTIVE_DATE_HEADER: &str = "sekimori-effective-date";

pub fn router() -> Router<App> {
    let not_allowed = || async { ScimError::method_not_allowed() };
    Router::new()
        .route("/ServiceProviderConfig", get(discovery::service_provider_config))
        .route("/ResourceTypes", get(discovery::list_resource_types))
        .route("/ResourceTypes/{id}", get(discovery::get_resource_type))
        .route("/Schemas", get(discovery::list_schemas))
        .route("/Schemas/{id}", get(discovery::get_schema))
        .route("/Users", get(users::list).post(users::create))
        .route("/Users/.search", post(users::search))
        .route("/Users/{id}", get(users::get).put(users::replace).patch(users::modify).delete(users::delete))
        .route("/Groups", get(groups::list).post(groups::create))
        .route("/Groups/.search", post(groups::search))
        .route("/Groups/{id}", get(groups::get).put(groups::replace).patch(groups::modify).delete(groups::delete))
        .route(
            "/.search",
            post(|_: Scim| async {
                ScimError::not_implemented(
                    "search across resource types is not supported: use /Users/.search or /Groups/.search",
                )
            }),
        )
        .fallback(|| async { ScimError::not_found("endpoint") })
        .method_not_allowed_fallback(not_allowed)
}

/// An authenticated HR feed's request: who calls, where the service is, and the request's
/// own id (named in the audit log as the change's source).
#[derive(Debug, Clone)]
pub struct Scim {
    pub caller: Principal,
    base: String,
    pub request_id: String,
    /// The `Sekimori-Effective-Date` header, when given.
    pub effective_date: Option<Date>,
    /// The `If-Match` header, when given.
    pub if_match: Option<String>,
}

impl Scim {
    pub fn actor(&self) -> Actor {
        self.caller.actor()
    }
    /// The absolute URL of `path` under the service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    /// The source recorded with each change this request makes.
    pub fn source(&self) -> String {
        format!("scim:{}:{}", self.caller.token_id().unwrap_or("console"), self.request_id)
    }
}

impl FromRequestParts<App> for Scim {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let caller = Principal::from_request_parts(parts, app).await.map_err(|problem| {
            if problem.status == 401 {
                ScimError::unauthorized()
            } else {
                ScimError::new(
                    StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    None,
                    problem.detail.unwrap_or_default(),
                )
            }
        })?;
        if !caller.holds(Right::HrFeed) {
            return Err(ScimError::forbidden());
        }
        let effective_date = match parts.headers.get(EFFECTIVE_DATE_HEADER) {
            None => None,
            Some(value) => {
                let text = value.to_str().unwrap_or_default();
                Some(crate::directory::types::parse_date("Sekimori-Effective-Date", text).map_err(|_| {
                    ScimError::invalid_value("the Sekimori-Effective-Date header must be a date written YYYY-MM-DD")
                })?)
            }
        };
        let if_match = parts.headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Scim {
            caller,
            base: base_url(&parts.headers, app),
            request_id: uuid::Uuid::new_v4().to_string(),
            effective_date,
            if_match,
        })
    }
}

/// `http://HOST/scim/v2` from the request's Host header when it is a plain host[:port], else
/// from the admin listener's address: nothing a caller sends is echoed unchecked into a URL.
fn base_url(headers: &HeaderMap, app: &App) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| app.config.admin_addr.to_string());
    format!("http://{host}/scim/v2")
}

/// A SCIM request body: JSON, sent as `application/scim+json` or `application/json`.
pub struct ScimJson(pub Value);

impl FromRequest<App> for ScimJson {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &App) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        if !matches!(content_type.as_deref(), Some(CONTENT_TYPE) | Some("application/json")) {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "send the body as application/scim+json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ScimError::new(e.status(), None, e.body_text()))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(ScimError::bad("invalidSyntax", "the body must be a JSON object"));
        }
        Ok(ScimJson(value))
    }
}

/// A SCIM answer: a JSON body as application/scim+json, with its status and, for a resource,
/// its ETag and (when created) its Location.
pub struct ScimResponse {
    pub status: StatusCode,
    pub body: Value,
    pub etag: Option<String>,
    pub location: Option<String>,
}

impl ScimResponse {
    pub fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, body, etag: None, location: None }
    }
    /// A resource: its ETag and location come from its `meta`.
    pub fn resource(status: StatusCode, body: Value) -> Self {
        let etag = body.pointer("/meta/version").and_then(Value::as_str).map(str::to_owned);
        let location = if status == StatusCode::CREATED {
            body.pointer("/meta/location").and_then(Value::as_str).map(str::to_owned)
        } else {
            None
        };
        Self { status, body, etag, location }
    }
}

impl IntoResponse for ScimResponse {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(etag) = self.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
            headers.insert(header::ETAG, etag);
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        response
    }
}

pub fn list_response(resources: Vec<Value>, total: u64, start_index: u64) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// A weak ETag for a resource last changed at `updated_at` with this content.
pub fn version_of(resource: &Value) -> String {
    let digest = crate::crypto::sha256_hex(&resource.to_string());
    format!("W/\"{}\"", digest.get(..16).unwrap_or_default())
}

/// Refuses a change to a resource whose version is not the one the caller's If-Match names.
pub fn check_if_match(scim: &Scim, current_version: &str) -> Result<(), ScimError> {
    match scim.if_match.as_deref().map(str::trim) {
        None | Some("*") => Ok(()),
        Some(wanted) if wanted.split(',').any(|tag| tag.trim() == current_version) => Ok(()),
        Some(_) => Err(ScimError::precondition_failed()),
    }
}

/// The names a request may write an attribute under: the plain name, or the name prefixed with
/// its schema's URN (`urn:…:User:userName`). SCIM attribute names are case-insensitive.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The member of `object` called `name`, case-insensitively.
pub fn member<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object.as_object()?.iter().find(|(k, _)| same_name(k, name)).map(|(_, v)| v).filter(|v| !v.is_null())
}
