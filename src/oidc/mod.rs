//! The OpenID Provider: discovery, keys, token, userinfo, introspection and revocation
//! endpoints, and the authorization flow as values (`flow`), which the browser-facing
//! authorization and logout endpoints in `web` render.

pub mod access_tokens;
pub mod claims;
pub mod client_auth;
pub mod codes;
pub mod discovery;
pub mod error;
pub mod flow;
pub mod grants;
pub mod hint;
pub mod introspection;
pub mod keys;
pub mod live;
pub mod refresh;
pub mod token;
pub mod token_cache;
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
    Router::new().merge(cross_origin)
}
