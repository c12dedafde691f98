//! R17: emergency stops of one person or one consuming system, and lifting them.
//! `sekimori emergency-stop …` calls the same functions of `crate::emergency` from the shell.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::emergency::{self, EmergencyError, Kind, Stop};
use crate::App;

use super::problem::{ApiJson, ApiQuery, Problem};
use super::rights::{self, Authorized};
use super::List;

impl From<EmergencyError> for Problem {
    fn from(e: EmergencyError) -> Self {
        match e {
            EmergencyError::Invalid(invalid) => Problem::invalid(invalid.field, invalid.reason),
            EmergencyError::NotFound(what) => Problem::not_found(what),
            EmergencyError::Conflict(why) => Problem::conflict(why),
            EmergencyError::Database(db) => Problem::database(db),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStop {
    kind: Kind,
    /// A person's id or login ID, or a system's client_id.
    target: String,
    reason: String,
}

/// What stopping ended, beside the stop itself.
#[derive(Serialize)]
pub struct Ended {
    sessions: u64,
    access_tokens: u64,
    refresh_tokens: u64,
    authorization_codes: u64,
    logout_notices: u64,
}

#[derive(Serialize)]
pub struct MadeStop {
    #[serde(flatten)]
    stop: Stop,
    ended: Ended,
}

pub async fn stop(
    State(app): State<App>,
    caller: Authorized<rights::EmergencyStop>,
    ApiJson(new): ApiJson<NewStop>,
) -> Result<(StatusCode, Json<MadeStop>), Problem> {
    let mut tx = app.store.begin().await?;
    let (stop, revoked) =
        emergency::stop(&mut tx, &caller.actor(), app.clock.now(), new.kind, &new.target, &new.reason).await?;
    tx.commit().await?;
    let ended = Ended {
        sessions: revoked.sessions,
        access_tokens: revoked.access_tokens,
        refresh_tokens: revoked.refresh_tokens,
        authorization_codes: revoked.authorization_codes,
        logout_notices: revoked.logout_notices,
    };
    Ok((StatusCode::CREATED, Json(MadeStop { stop, ended })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopsQuery {
    /// Only the stops in force.
    active: Option<bool>,
}

pub async fn list(
    State(app): State<App>,
    _caller: Authorized<rights::EmergencyStop>,
    ApiQuery(query): ApiQuery<StopsQuery>,
) -> Result<Json<List<Stop>>, Problem> {
    Ok(Json(List { items: emergency::list(app.store.pool(), query.active.unwrap_or(false)).await? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lift {
    reason: String,
}

pub async fn lift(
    State(app): State<App>,
    caller: Authorized<rights::EmergencyStop>,
    Path(id): Path<String>,
    ApiJson(lift): ApiJson<Lift>,
) -> Result<Json<Stop>, Problem> {
    let mut tx = app.store.begin().await?;
    let stop = emergency::lift(&mut tx, &caller.actor(), app.clock.now(), &id, &lift.reason).await?;
    tx.commit().await?;
    Ok(Json(stop))
}
