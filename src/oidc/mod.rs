//! The OpenID Provider: discovery, keys, authorization, token, userinfo, introspection,
//! revocation and logout endpoints.

pub mod authorize;
pub mod claims;
pub mod client_auth;
pub mod codes;
pub mod discovery;
pub mod end_session;
pub mod error;
pub mod introspection;
pub mod keys;
pub mod params;
pub mod refresh;
pub mod token;
pub mod userinfo;

use axum::http::{header, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::CorsLayer;

use crate::App;

pub fn router() -> Router<App> {
    // Browser-based consuming systems (public clients) call these from their own origin. No
    // cookie is read here, so any origin may call them, without credentials.
    let cors = CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(3600));
    let cross_origin = Router::new()
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/jwks.json", get(discovery::jwks))
        .route("/token", post(token::token))
        .route("/introspect", post(introspection::introspect))
        .route("/revoke", post(introspection::revoke))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .layer(cors);
    Router::new()
        .route("/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/end_session", get(end_session::end_session_get).post(end_session::end_session_post))
        .route("/end_session/confirm", post(end_session::confirm))
        .merge(cross_origin)
}
