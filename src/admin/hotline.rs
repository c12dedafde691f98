//! The lost-card hotline (R22; 江戸川区 基準 第11条2) and card enrollment codes.
//!
//! A hotline operator's token carries the `hotline` scope and nothing else: it can find a
//! person by employee number, login ID or name, see their cards, and report one lost, getting
//! a reference number to read to the caller. It cannot enroll a card or read anything more
//! about the person. Enrollment codes need `authenticators:enroll` (managers and the counter).
//! `GET /hotline` is the operators' page for the same API.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::audit::Event;
use crate::authenticators::loss::{self, LossError, Reported};
use crate::authenticators::replacement::{self, Exception, ExceptionRefused};
use crate::authenticators::{self, Authenticator};
use crate::directory::search::{self, Found, NameQuery, PeopleFilter};
use crate::revocation::Revoked;
use crate::App;

use super::problem::{ApiJson, ApiQuery, Problem};
use super::rights::{self, Authorized};

/// What the hotline may see of a person: enough to be sure it is the right one.
#[derive(Serialize)]
pub struct HotlinePerson {
    pub id: String,
    pub employee_number: String,
    pub login_id: Option<String>,
    pub name: String,
    pub name_kana: String,
    pub org_unit: Option<String>,
    pub authenticators: Vec<Authenticator>,
}

#[derive(Serialize)]
pub struct HotlineResults {
    pub items: Vec<HotlinePerson>,
}

/// The most people one hotline search answers with.
const HOTLINE_RESULTS: i64 = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// An employee number or login ID (exact), or part of a name in kanji, kana or romaji
    /// (see `directory::search`). Optional here only so that a caller without the scope
    /// hears 403 before anything about the query.
    q: Option<String>,
}

pub async fn search(
    State(app): State<App>,
    caller: Authorized<rights::Hotline>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<HotlineResults>, Problem> {
    Ok(Json(HotlineResults { items: find(&app, &caller.actor(), query.q.as_deref().unwrap_or("")).await? }))
}

/// Finds people for the hotline (API and console alike), recording who looked whom up.
pub async fn find(app: &App, actor: &crate::audit::Actor, q: &str) -> Result<Vec<HotlinePerson>, Problem> {
    let q = NameQuery::parse("q", q).map_err(Problem::bad_parameter)?;
    let filter = PeopleFilter { q: Some(q), ..PeopleFilter::default() };
    let found = search::find_people(&app.store, &filter, HOTLINE_RESULTS, 0).await?;
    let mut items = Vec::with_capacity(found.len());
    for Found { person, login_id, org_unit_name } in found {
        items.push(HotlinePerson {
            authenticators: authenticators::list_for_person(app.store.pool(), &person.id).await?,
            name: person.full_name(),
            name_kana: format!("{} {}", person.family_name_kana, person.given_name_kana),
            id: person.id,
            employee_number: person.employee_number,
            login_id,
            org_unit: org_unit_name,
        });
    }
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    // Who looked whom up is itself an access record.
    let typed = filter.q.as_ref().map(NameQuery::as_typed);
    Event::success(actor, "hotline.search", "people", serde_json::json!({"q": typed, "found": items.len()}))
        .record(&mut tx, now)
        .await?;
    tx.commit().await?;
    Ok(items)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LostReport {
    /// Who reported the loss (the holder, their manager…), as the operator heard it.
    reported_by: String,
    /// Why, in a few words (lost on the train, stolen…).
    reason: String,
}

#[derive(Serialize)]
pub struct LostAnswer {
    /// The reference number (受付番号) to read to the caller.
    pub loss_reference: String,
    /// True when an earlier report had stopped the card: this one changed nothing, and the
    /// reference is that report's.
    pub already_reported: bool,
    pub authenticator: Authenticator,
    pub sessions_ended: u64,
    pub access_tokens_revoked: u64,
    pub refresh_tokens_revoked: u64,
    pub logout_notices_queued: u64,
}

pub async fn report_lost(
    State(app): State<App>,
    caller: Authorized<rights::Hotline>,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<LostReport>,
) -> Result<Json<LostAnswer>, Problem> {
    Ok(Json(stop_card(&app, &caller.actor(), &id, &report.reported_by, &report.reason).await?))
}

/// Stops a card reported lost (API and console alike): see [`loss::report`].
pub async fn stop_card(
    app: &App,
    actor: &crate::audit::Actor,
    id: &str,
    reported_by: &str,
    why: &str,
) -> Result<LostAnswer, Problem> {
    for (field, value) in [("reported_by", reported_by), ("reason", why)] {
        let n = value.trim().chars().count();
        if n == 0 || n > 200 || value.chars().any(char::is_control) {
            return Err(Problem::invalid(field, "1 to 200 printable characters"));
        }
    }
    // Everything in one transaction: the card and its reference number, its sessions, their
    // tokens, the notices to consuming systems, and the audit event naming operator, reporter,
    // reason and reference.
    let reason = format!("reported lost to the hotline by {}: {}", reported_by.trim(), why.trim());
    let reported = match loss::report(&app.store, actor, app.clock.now(), id, &reason).await {
        Ok(reported) => reported,
        Err(LossError::NotFound) => return Err(Problem::not_found("authenticator")),
        Err(e @ LossError::Stopped) => return Err(Problem::conflict(e.to_string())),
        Err(LossError::Database(e)) => return Err(e.into()),
    };
    let authenticator =
        authenticators::get(app.store.pool(), id).await?.ok_or_else(|| Problem::not_found("authenticator"))?;
    let (revoked, already_reported) = match &reported {
        Reported::Stopped { revoked, .. } => (*revoked, false),
        Reported::Already { .. } => (Revoked::default(), true),
    };
    Ok(LostAnswer {
        loss_reference: reported.reference().to_owned(),
        already_reported,
        authenticator,
        sessions_ended: revoked.sessions,
        access_tokens_revoked: revoked.access_tokens,
        refresh_tokens_revoked: revoked.refresh_tokens,
        logout_notices_queued: revoked.logout_notices,
    })
}

#[derive(Serialize)]
pub struct EnrollmentCode {
    /// Shown only now; hand it to the person (counter, sealed letter).
    pub code: String,
    pub expires_at: i64,
}

pub async fn issue_enrollment_code(
    State(app): State<App>,
    caller: Authorized<rights::AuthenticatorsEnroll>,
    Path(person_id): Path<String>,
) -> Result<(StatusCode, Json<EnrollmentCode>), Problem> {
    if app.webauthn.is_none() {
        return Err(Problem::conflict(format!(
            "IC cards are off on this server: WebAuthn needs the issuer to be a domain name, and it is {}",
            app.config.issuer
        )));
    }
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    if crate::directory::get_person(&mut *tx, &person_id).await?.is_none() {
        return Err(Problem::not_found("person"));
    }
    let (code, expires_at) = authenticators::issue_enrollment_code(
        &mut tx,
        &caller.actor(),
        now,
        app.config.webauthn.enrollment_code_ttl,
        &person_id,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(EnrollmentCode { code, expires_at })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRequest {
    /// Why the person may use the password alone for a while (e.g. the replacement card is on
    /// order); kept with the exception and in the audit log.
    reason: String,
    /// How many days the exception lasts; at most `webauthn.password_only_exception_max_days`.
    days: i64,
}

/// A temporary password-only exception for a person whose card was stopped, where the
/// organisation's policy allows one: granted by someone other than the reporter, audited,
/// ending by itself.
pub async fn grant_password_only_exception(
    State(app): State<App>,
    caller: Authorized<rights::AuthenticatorsEnroll>,
    Path(person_id): Path<String>,
    ApiJson(req): ApiJson<ExceptionRequest>,
) -> Result<(StatusCode, Json<Exception>), Problem> {
    let n = req.reason.trim().chars().count();
    if n == 0 || n > 200 || req.reason.chars().any(char::is_control) {
        return Err(Problem::invalid("reason", "1 to 200 printable characters"));
    }
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    if crate::directory::get_person(&mut *tx, &person_id).await?.is_none() {
        return Err(Problem::not_found("person"));
    }
    let max_days = app.config.webauthn.password_only_exception_max_days;
    let granted =
        replacement::grant_exception(&mut tx, &caller.actor(), now, max_days, &person_id, req.days, req.reason.trim())
            .await;
    let exception = match granted {
        Ok(exception) => exception,
        Err(refused @ (ExceptionRefused::NotAllowed | ExceptionRefused::NoStoppedCard)) => {
            return Err(Problem::conflict(refused.to_string()))
        }
        Err(refused @ ExceptionRefused::TooLong(_)) => return Err(Problem::invalid("days", refused.to_string())),
        Err(refused @ ExceptionRefused::Reporter) => {
            return Err(Problem::new(StatusCode::FORBIDDEN, "Forbidden", refused.to_string()))
        }
        Err(ExceptionRefused::Database(e)) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(exception)))
}

/// The operators' page and its assets (HTML, not part of the JSON API in openapi.yaml).
pub fn pages() -> axum::Router<App> {
    axum::Router::new()
        .route("/hotline", axum::routing::get(page))
        .route("/hotline/hotline.js", axum::routing::get(page_script))
        .route("/hotline/sekimori.css", axum::routing::get(page_style))
}

/// The operators' page: plain HTML and a script calling the API above with the operator's token.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        include_str!("../../static/hotline.html"),
    )
}

pub async fn page_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../static/hotline.js"))
}

pub async fn page_style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../static/sekimori.css"))
}
