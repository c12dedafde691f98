//! `/health` on both listeners (R20): this node and its database answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use crate::App;

pub async fn health(State(app): State<App>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(app.store.pool()).await {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "unavailable"})))
        }
    }
}
