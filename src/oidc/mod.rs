//! The OpenID Provider: discovery, keys, authorization, token and userinfo endpoints.

pub mod authorize;
pub mod claims;
pub mod codes;
pub mod discovery;
pub mod error;
pub mod keys;
pub mod params;
pub mod token;
pub mod userinfo;

use axum::routing::get;
use axum::Router;

use crate::App;

pub fn router() -> Router<App> {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/jwks.json", get(discovery::jwks))
        .route(
            "/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/token", axum::routing::post(token::token))
        .route(
            "/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
}
