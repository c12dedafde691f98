//! The administrative roles over the JSON API: what each role lets its holder do, who holds
//! which until when, and granting one (the security manager's delegation, R7). Ending one is
//! `POST /api/v1/access/grants/{id}/revoke`, which for these roles needs the same right.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::access::grants::Grant;
use crate::App;

use super::problem::{ApiJson, Problem};
use super::rights::{self, Authorized};
use super::roles::{self, AdminRole, NewAdminGrant};
use super::List;

/// A role and the rights (API scopes) it carries.
#[derive(Serialize)]
pub struct RoleInfo {
    name: &'static str,
    label: &'static str,
    label_en: &'static str,
    rights: Vec<&'static str>,
    max_days: i64,
}

pub async fn list_roles(_caller: Authorized<rights::AdminRolesGrant>) -> Json<List<RoleInfo>> {
    let items = AdminRole::ALL
        .iter()
        .map(|r| RoleInfo {
            name: r.name(),
            label: r.label(),
            label_en: r.label_en(),
            rights: r.rights().iter().map(|x| x.scope()).collect(),
            max_days: r.max_days(),
        })
        .collect();
    Json(List { items })
}

pub async fn list_grants(
    State(app): State<App>,
    _caller: Authorized<rights::AdminRolesGrant>,
) -> Result<Json<List<Grant>>, Problem> {
    let mut tx = app.store.begin().await?;
    let items = roles::live_grants(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(List { items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrantBody {
    person_id: String,
    role: String,
    end_date: String,
    reason: String,
}

pub async fn grant(
    State(app): State<App>,
    caller: Authorized<rights::AdminRolesGrant>,
    ApiJson(body): ApiJson<NewGrantBody>,
) -> Result<(StatusCode, Json<Grant>), Problem> {
    if uuid::Uuid::parse_str(&body.person_id).is_err() {
        return Err(Problem::invalid("person_id", "not a person's id"));
    }
    if body.reason.chars().count() > 1000 {
        return Err(Problem::invalid("reason", "must be 1 to 1000 characters"));
    }
    let mut tx = app.store.begin().await?;
    let new = NewAdminGrant { person_id: &body.person_id, role: &body.role, end_date: &body.end_date, reason: &body.reason };
    let granted = roles::grant(&mut tx, &caller.actor(), app.clock.now(), caller.person_id(), new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(granted)))
}
