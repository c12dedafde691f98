//! Help-desk password actions (R11): nobody can read a password, so the help desk can only
//! issue a one-time reset link, report a suspected compromise, or lift a lockout.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::audit::Event;
use crate::directory::{self, LoginAccount};
use crate::password::lockout;
use crate::password::policy::ChangeRefused;
use crate::password::tickets::{self, Purpose, RESET_TICKET_TTL};
use crate::revocation::{self, Target};
use crate::App;

use super::problem::Problem;
use super::rights::{self, Authorized};

/// A policy refusal as a problem document (422), in English with the Japanese alongside.
pub fn refusal_problem(refused: &ChangeRefused, history: usize) -> Problem {
    let messages = refused.messages(history);
    let detail = messages.iter().map(|(ja, en)| format!("{en} / {ja}")).collect::<Vec<_>>().join(" ");
    let mut problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity", detail);
    problem.field = Some("password");
    problem
}

#[derive(Serialize)]
pub struct ResetLink {
    /// Hand this to the person through a trusted channel; it works once.
    pub reset_url: String,
    pub expires_at: i64,
}

async fn account_of(app: &App, person_id: &str) -> Result<LoginAccount, Problem> {
    if directory::get_person(app.store.pool(), person_id).await?.is_none() {
        return Err(Problem::not_found("person"));
    }
    directory::account_of_person(app.store.pool(), person_id)
        .await?
        .ok_or_else(|| Problem::not_found("account (this person has no login ID)"))
}

/// Issues a one-time link with which the person sets a new password.
pub async fn issue_reset(
    State(app): State<App>,
    caller: Authorized<rights::PasswordsReset>,
    Path(person_id): Path<String>,
) -> Result<(StatusCode, Json<ResetLink>), Problem> {
    let account = account_of(&app, &person_id).await?;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let ticket = tickets::issue(&mut tx, now, &account.account_id, Purpose::Reset, None, &caller.actor()).await?;
    Event::success(
        &caller.actor(),
        "password.reset_issued",
        format!("account:{}", account.account_id),
        serde_json::json!({"expires_at": now + RESET_TICKET_TTL}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(reset_link(&app, &ticket, now))))
}

fn reset_link(app: &App, ticket: &str, now: i64) -> ResetLink {
    ResetLink {
        reset_url: format!("{}/password/reset?ticket={ticket}", app.config.issuer),
        expires_at: now + RESET_TICKET_TTL,
    }
}

#[derive(Serialize)]
pub struct CompromiseReport {
    #[serde(flatten)]
    pub reset: ResetLink,
    pub sessions_revoked: u64,
    pub access_tokens_revoked: u64,
}

/// "Suspected compromise": the password stops working at once, every session and token of
/// the person ends, and the only way back in is the reset link returned here.
pub async fn report_compromise(
    State(app): State<App>,
    caller: Authorized<rights::PasswordsReset>,
    Path(person_id): Path<String>,
) -> Result<(StatusCode, Json<CompromiseReport>), Problem> {
    let account = account_of(&app, &person_id).await?;
    let now = app.clock.now();
    let actor = caller.actor();
    let mut tx = app.store.begin().await?;
    directory::accounts::withdraw_password(&mut tx, &account.account_id).await?;
    let revoked =
        revocation::revoke(&mut tx, &actor, now, Target::Person(&person_id), "suspected password compromise").await?;
    let ticket = tickets::issue(&mut tx, now, &account.account_id, Purpose::Reset, None, &actor).await?;
    Event::success(
        &actor,
        "password.compromised",
        format!("account:{}", account.account_id),
        serde_json::json!({"sessions_revoked": revoked.sessions}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CompromiseReport {
            reset: reset_link(&app, &ticket, now),
            sessions_revoked: revoked.sessions,
            access_tokens_revoked: revoked.access_tokens,
        }),
    ))
}

/// Lifts a lockout after repeated failures (R17).
pub async fn unlock(
    State(app): State<App>,
    caller: Authorized<rights::PasswordsReset>,
    Path(person_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let account = account_of(&app, &person_id).await?;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    lockout::unlock(&mut tx, &account.account_id).await?;
    Event::success(&caller.actor(), "account.unlock", format!("account:{}", account.account_id), serde_json::json!({}))
        .record(&mut tx, now)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
