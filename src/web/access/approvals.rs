//! 承認待ちの申請 (`/my/approvals`): the requests a manager or deputy decides today, each with
//! what the requester gave and the state of the other step; approve (a reason is optional) or
//! reject (a reason is needed).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;

use crate::access::{org, requests, AccessError};
use crate::clock::{japan_date, japan_minute};
use crate::directory::today_in_japan;
use crate::App;

use super::super::csrf::{self, CheckedForm};
use super::super::login::choose_lang;
use super::super::pages;
use super::super::{Lang, Msg};
use super::{
    class_msg, done, nav, page_or_login, plausible_id, read, refusal_page, refused, step_view, unit_names, viewer,
    Catalog, FieldError, Nav, PageQuery, Refused, StepView, Viewer,
};

pub const PATH: &str = "/my/approvals";

#[derive(askama::Template)]
#[template(path = "approvals.html")]
pub struct ApprovalsPage {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: String,
    pub nav: Nav,
    pub notice: Option<Msg>,
    pub errors: Vec<FieldError>,
    pub requests: Vec<WaitingView>,
}

impl ApprovalsPage {
    /// The error on the reason field of request `id`.
    pub fn error_on(&self, id: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.field.strip_prefix("reason-") == Some(id))
    }
}

pub struct WaitingView {
    pub id: String,
    pub requester: String,
    pub employee_number: String,
    pub system: String,
    pub role: String,
    pub classification: Msg,
    pub secret: bool,
    pub reason: String,
    pub end_date: Option<String>,
    pub cross_section: bool,
    pub requested: String,
    pub lapses: String,
    pub steps: Vec<StepView>,
    /// What the decider typed, when the page comes back with an error.
    pub draft: String,
}

fn notice_for(done: Option<&str>) -> Option<Msg> {
    match done? {
        "approved" => Some(Msg::RequestApprovedNotice),
        "rejected" => Some(Msg::RequestRejectedNotice),
        _ => None,
    }
}

pub async fn page(State(app): State<App>, jar: CookieJar, Query(q): Query<PageQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let built = async {
        let Some(viewer) = viewer(&app, &jar).await? else { return Ok(None) };
        let notice = notice_for(q.done.as_deref());
        Ok(Some(render(&app, jar, lang, &viewer, notice, None, Vec::new(), StatusCode::OK).await?))
    }
    .await;
    page_or_login(lang, PATH, built)
}

/// The page; `draft` is (request id, reason typed) when it comes back with an error.
#[allow(clippy::too_many_arguments)]
async fn render(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    viewer: &Viewer,
    notice: Option<Msg>,
    draft: Option<(String, String)>,
    errors: Vec<FieldError>,
    status: StatusCode,
) -> Result<Response, crate::Error> {
    let now = app.clock.now();
    let today = today_in_japan(now);
    let catalog = Catalog::load(app, lang).await?;
    let units = unit_names(app, lang).await?;
    let mut tx = read(app).await?;
    let mut views = Vec::new();
    for request in requests::waiting_for(&mut tx, &viewer.person_id, now).await? {
        // The step this person decides: the first undecided one they may decide today.
        let mut mine = None;
        for step in request.steps.iter().filter(|s| s.decision.is_none()) {
            if org::capacity(&mut tx, &viewer.person_id, &step.org_unit_id, today).await?.is_some() {
                mine = Some(step.step.clone());
                break;
            }
        }
        let steps =
            request.steps.iter().map(|s| step_view(s, &units, mine.as_deref() == Some(&s.step), true)).collect();
        views.push(WaitingView {
            role: catalog.label(&request.client_id, &request.role, &request.role_label),
            classification: class_msg(request.classification),
            secret: request.classification == crate::access::Classification::Secret,
            requested: japan_minute(request.created_at),
            lapses: japan_date(request.lapses_at),
            draft: draft.as_ref().filter(|(id, _)| *id == request.id).map(|(_, d)| d.clone()).unwrap_or_default(),
            steps,
            requester: request.person_name,
            employee_number: request.employee_number,
            system: request.system_name,
            reason: request.reason,
            end_date: request.end_date,
            cross_section: request.cross_section,
            id: request.id,
        });
    }
    drop(tx);
    let nav = nav(app, viewer, PATH).await?;
    let (jar, csrf_token) = csrf::issue(app, jar);
    let page = ApprovalsPage {
        lang,
        switch_href: format!("{PATH}?lang={}", lang.other().code()),
        csrf_token,
        nav,
        notice,
        errors,
        requests: views,
    };
    Ok((jar, pages::render(status, &page)).into_response())
}

/// "Approve" or "Reject" on one request.
pub async fn decide(State(app): State<App>, Path(id): Path<String>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    if !plausible_id(&id) {
        return pages::error_page(lang, StatusCode::NOT_FOUND, Msg::RequestNotFound);
    }
    let approve = match form.field("decision") {
        Some("approve") => true,
        Some("reject") => false,
        _ => return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm),
    };
    let reason = form.field("reason").unwrap_or_default().to_owned();
    let field = format!("reason-{id}");
    let outcome = async {
        let mut tx = app.store.begin().await?;
        match requests::decide(&mut tx, app.clock.now(), &viewer.person_id, &id, approve, &reason).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::Invalid(invalid)) if invalid.field == "reason" => {
                let msg = if approve { Msg::ReasonInvalid } else { Msg::RejectReasonRequired };
                Err(Refused::Fields(StatusCode::UNPROCESSABLE_ENTITY, vec![FieldError::new(field.clone(), msg)]))
            }
            Err(AccessError::NotFound(_)) => Err(Refused::Page(StatusCode::NOT_FOUND, Msg::RequestNotFound)),
            Err(AccessError::Forbidden(_)) => Err(Refused::Page(StatusCode::FORBIDDEN, Msg::NotYourDecision)),
            Err(AccessError::Conflict(_)) => Err(Refused::Page(StatusCode::CONFLICT, Msg::AlreadyDecided)),
            Err(e) => Err(refused(e, &[("reason", &field)], &field)),
        }
    }
    .await;
    match outcome {
        Ok(()) => done(PATH, if approve { "approved" } else { "rejected" }),
        Err(Refused::Fields(status, errors)) => {
            let draft = Some((id.clone(), reason));
            match render(&app, form.jar, lang, &viewer, None, draft, errors, status).await {
                Ok(response) => response,
                Err(e) => pages::internal(lang, e),
            }
        }
        Err(other) => refusal_page(lang, other),
    }
}
