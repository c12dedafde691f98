//! R17, R21: Consuming systems (OIDC clients): register, read, change, disable and enable, rotate the
//! secret. `sekimori client …` calls the same functions of `crate::systems` from the shell.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::systems::{self, Client, ClientChanges, NewClient, RotatedSecret};
use crate::App;

use super::problem::{ApiJson, Problem};
use super::rights::{self, Authorized};
use super::List;

pub async fn list(
    State(app): State<App>,
    _caller: Authorized<rights::ClientsRead>,
) -> Result<Json<List<Client>>, Problem> {
    Ok(Json(List { items: systems::list(&app.store).await? }))
}

#[derive(Serialize)]
pub struct RegisteredClient {
    #[serde(flatten)]
    pub client: Client,
    /// Shown once, for confidential clients; only its hash is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

pub async fn register(
    State(app): State<App>,
    caller: Authorized<rights::ClientsWrite>,
    ApiJson(new): ApiJson<NewClient>,
) -> Result<(StatusCode, Json<RegisteredClient>), Problem> {
    let mut tx = app.store.begin().await?;
    let (client, client_secret) =
        systems::register(&mut tx, &caller.actor(), app.clock.now(), &app.config.tokens, new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(RegisteredClient { client, client_secret })))
}

pub async fn get(
    State(app): State<App>,
    _caller: Authorized<rights::ClientsRead>,
    Path(client_id): Path<String>,
) -> Result<Json<Client>, Problem> {
    systems::get(&app.store, &client_id).await?.map(Json).ok_or_else(|| Problem::not_found("client"))
}

/// A JSON merge patch (RFC 7396) of the client's settings.
pub async fn update(
    State(app): State<App>,
    caller: Authorized<rights::ClientsWrite>,
    Path(client_id): Path<String>,
    ApiJson(changes): ApiJson<ClientChanges>,
) -> Result<Json<Client>, Problem> {
    let mut tx = app.store.begin().await?;
    let client = systems::update(&mut tx, &caller.actor(), app.clock.now(), &client_id, changes).await?;
    tx.commit().await?;
    Ok(Json(client))
}

/// What disabling a client ended.
#[derive(Serialize)]
pub struct DisabledClient {
    pub client: Client,
    pub access_tokens_revoked: u64,
    pub refresh_tokens_revoked: u64,
    pub authorization_codes_revoked: u64,
}

pub async fn disable(
    State(app): State<App>,
    caller: Authorized<rights::ClientsWrite>,
    Path(client_id): Path<String>,
) -> Result<Json<DisabledClient>, Problem> {
    let mut tx = app.store.begin().await?;
    let (client, revoked) = systems::disable(&mut tx, &caller.actor(), app.clock.now(), &client_id).await?;
    tx.commit().await?;
    Ok(Json(DisabledClient {
        client,
        access_tokens_revoked: revoked.access_tokens,
        refresh_tokens_revoked: revoked.refresh_tokens,
        authorization_codes_revoked: revoked.authorization_codes,
    }))
}

pub async fn enable(
    State(app): State<App>,
    caller: Authorized<rights::ClientsWrite>,
    Path(client_id): Path<String>,
) -> Result<Json<Client>, Problem> {
    let mut tx = app.store.begin().await?;
    let client = systems::enable(&mut tx, &caller.actor(), app.clock.now(), &client_id).await?;
    tx.commit().await?;
    Ok(Json(client))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// Seconds the replaced secret still authenticates; default a day, 0 ends it at once.
    grace_seconds: Option<i64>,
}

pub async fn rotate_secret(
    State(app): State<App>,
    caller: Authorized<rights::ClientsWrite>,
    Path(client_id): Path<String>,
    ApiJson(req): ApiJson<RotateSecret>,
) -> Result<(StatusCode, Json<RotatedSecret>), Problem> {
    let grace = req.grace_seconds.unwrap_or(systems::DEFAULT_SECRET_GRACE);
    let mut tx = app.store.begin().await?;
    let rotated = systems::rotate_secret(&mut tx, &caller.actor(), app.clock.now(), &client_id, grace).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rotated)))
}
