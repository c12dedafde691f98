//! Health (R20). `/health` on both listeners: this node and its database answer (JSON).
//! On the admin listener also the probes of an orchestrator or monitoring system, which look
//! only at the status code: `/livez` (the process answers; it looks at nothing else, so that a database outage
//! does not get every node restarted) and `/readyz` (the database answers within
//! [`READINESS_TIMEOUT`]; 503 otherwise, so that traffic goes elsewhere).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use crate::App;

/// How long `/readyz` waits for the database.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn health(State(app): State<App>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(app.store.pool()).await {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "unavailable"})))
        }
    }
}

/// The process answers.
pub async fn livez() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// The database answers, within [`READINESS_TIMEOUT`].
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<serde_json::Value>) {
    let unavailable = |reason: &str| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "unavailable", "reason": reason})))
    };
    if let Some(reason) = app.store.durability_lost() {
        tracing::warn!(reason, "readiness: commits can no longer be synced to disk");
        return unavailable("database writes cannot be made durable; restart the server");
    }
    match tokio::time::timeout(READINESS_TIMEOUT, sqlx::query("SELECT 1").execute(app.store.pool())).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            unavailable("database unreachable")
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer in time");
            unavailable("database did not answer in time")
        }
    }
}
