//! Signing keys: list them, rotate them. `sekimori keys rotate` does the same from the shell.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::oidc::keys::KeyInfo;
use crate::systems::SigningAlg;
use crate::App;

use super::problem::{ApiJson, Problem};
use super::rights::{self, Authorized};

/// How long a new key is published before it signs, unless the request says otherwise: enough
/// for every node to reload (a minute) and every consuming system's JWKS cache to expire.
pub const DEFAULT_PUBLISH_AHEAD: i64 = 600;

#[derive(Serialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

pub async fn list(State(app): State<App>, _caller: Authorized<rights::KeysRead>) -> Result<Json<KeyList>, Problem> {
    Ok(Json(KeyList { keys: app.keys.list() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Default: both.
    algs: Option<Vec<SigningAlg>>,
    /// Seconds between publishing the new key and signing with it.
    publish_ahead_seconds: Option<i64>,
}

#[derive(Serialize)]
pub struct Rotated {
    pub created: Vec<String>,
    pub keys: Vec<KeyInfo>,
}

pub async fn rotate(
    State(app): State<App>,
    caller: Authorized<rights::KeysWrite>,
    ApiJson(req): ApiJson<RotateRequest>,
) -> Result<(StatusCode, Json<Rotated>), Problem> {
    let algs = req.algs.unwrap_or_else(|| vec![SigningAlg::RS256, SigningAlg::ES256]);
    if algs.is_empty() {
        return Err(Problem::invalid("algs", "name at least one algorithm"));
    }
    let publish_ahead = req.publish_ahead_seconds.unwrap_or(DEFAULT_PUBLISH_AHEAD);
    if !(0..=86_400).contains(&publish_ahead) {
        return Err(Problem::invalid("publish_ahead_seconds", "must be between 0 and 86400"));
    }
    let created =
        app.keys.rotate(&app.store, &caller.actor(), &algs, publish_ahead).await.map_err(crate::Error::from)?;
    Ok((StatusCode::CREATED, Json(Rotated { created, keys: app.keys.list() })))
}
