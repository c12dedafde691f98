//! R1: shared IDs as exception records (section, person responsible, justification, approver,
//! expiry), and ending one early. The expiry itself is the access job's (`crate::jobs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::directory::shared::{self, NewSharedId, SharedId};
use crate::App;

use super::problem::{ApiJson, Problem};
use super::rights::{self, Authorized};
use super::List;

pub async fn create(
    State(app): State<App>,
    caller: Authorized<rights::DirectoryWrite>,
    ApiJson(new): ApiJson<NewSharedId>,
) -> Result<(StatusCode, Json<SharedId>), Problem> {
    let mut tx = app.store.begin().await?;
    let record = shared::create(&mut tx, &caller.actor(), app.clock.now(), new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(record)))
}

pub async fn list(
    State(app): State<App>,
    _caller: Authorized<rights::DirectoryRead>,
) -> Result<Json<List<SharedId>>, Problem> {
    Ok(Json(List { items: shared::list(app.store.pool()).await? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    reason: String,
}

pub async fn end(
    State(app): State<App>,
    caller: Authorized<rights::DirectoryWrite>,
    Path(id): Path<String>,
    ApiJson(end): ApiJson<End>,
) -> Result<Json<SharedId>, Problem> {
    let mut tx = app.store.begin().await?;
    let record = shared::end(&mut tx, &caller.actor(), app.clock.now(), &id, &end.reason).await?;
    tx.commit().await?;
    Ok(Json(record))
}
