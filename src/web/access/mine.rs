//! 利用権限と申請 (`/my/access`): the roles the person holds, their requests with each step,
//! withdrawing a pending one, and the form to ask for a role.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;

use crate::access::grants::{self, GrantFilter};
use crate::access::requests::{self, NewRequest, RequestFilter};
use crate::access::{org, AccessError};
use crate::clock::{japan_date, japan_minute};
use crate::directory::today_in_japan;
use crate::directory::types::format_date;
use crate::App;

use super::super::csrf::{self, CheckedForm};
use super::super::login::choose_lang;
use super::super::pages;
use super::super::{Lang, Msg};
use super::{
    class_msg, done, nav, page_or_login, plausible_id, read, refusal_page, refused, role_options, status_msg,
    step_view, unit_names, viewer, Catalog, FieldError, Nav, OptionGroup, PageQuery, Refused, StepView, Viewer,
};

pub const PATH: &str = "/my/access";

#[derive(askama::Template)]
#[template(path = "my_access.html")]
pub struct MyAccessPage {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: String,
    pub nav: Nav,
    pub notice: Option<Msg>,
    pub errors: Vec<FieldError>,
    pub held: Vec<HeldView>,
    pub requests: Vec<RequestView>,
    pub groups: Vec<OptionGroup>,
    pub reason: String,
    pub end_date: String,
    pub today: String,
}

impl MyAccessPage {
    pub fn error_for(&self, field: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.field == field)
    }
}

pub struct HeldView {
    pub system: String,
    pub role: String,
    pub classification: Msg,
    pub secret: bool,
    pub start_date: String,
    pub end_date: Option<String>,
    pub cross_section: bool,
}

pub struct RequestView {
    pub id: String,
    pub system: String,
    pub role: String,
    pub classification: Msg,
    pub reason: String,
    pub end_date: Option<String>,
    pub cross_section: bool,
    pub status: Msg,
    pub pending: bool,
    pub requested: String,
    pub lapses: String,
    pub steps: Vec<StepView>,
}

/// What the person typed, shown again with the errors.
#[derive(Default)]
struct Draft {
    role: Option<String>,
    reason: String,
    end_date: String,
}

fn notice_for(done: Option<&str>) -> Option<Msg> {
    match done? {
        "requested" => Some(Msg::RequestSubmitted),
        "withdrawn" => Some(Msg::RequestWithdrawn),
        _ => None,
    }
}

pub async fn page(State(app): State<App>, jar: CookieJar, Query(q): Query<PageQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let built = async {
        let Some(viewer) = viewer(&app, &jar).await? else { return Ok(None) };
        let notice = notice_for(q.done.as_deref());
        Ok(Some(render(&app, jar, lang, &viewer, notice, Draft::default(), Vec::new(), StatusCode::OK).await?))
    }
    .await;
    page_or_login(lang, PATH, built)
}

#[allow(clippy::too_many_arguments)]
async fn render(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    viewer: &Viewer,
    notice: Option<Msg>,
    draft: Draft,
    errors: Vec<FieldError>,
    status: StatusCode,
) -> Result<Response, crate::Error> {
    let now = app.clock.now();
    let today = today_in_japan(now);
    let catalog = Catalog::load(app, lang).await?;
    let units = unit_names(app, lang).await?;
    let filter = GrantFilter { person_id: Some(viewer.person_id.clone()), ..Default::default() };
    let held = grants::list(app.store.pool(), &filter, 500)
        .await?
        .into_iter()
        .map(|g| HeldView {
            role: catalog.label(&g.client_id, &g.role, &g.role_label),
            system: g.system_name,
            classification: class_msg(g.classification),
            secret: g.classification == crate::access::Classification::Secret,
            start_date: g.start_date,
            end_date: g.end_date,
            cross_section: g.cross_section,
        })
        .collect();
    let mut tx = read(app).await?;
    let filter = RequestFilter { person_id: Some(viewer.person_id.clone()), ..Default::default() };
    let requests = requests::list(&mut tx, &filter, 100)
        .await?
        .into_iter()
        .map(|r| RequestView {
            role: catalog.label(&r.client_id, &r.role, &r.role_label),
            classification: class_msg(r.classification),
            status: status_msg(&r.status),
            pending: r.status == "pending",
            requested: japan_minute(r.created_at),
            lapses: japan_date(r.lapses_at),
            steps: r.steps.iter().map(|s| step_view(s, &units, false, r.status == "pending")).collect(),
            id: r.id,
            system: r.system_name,
            reason: r.reason,
            end_date: r.end_date,
            cross_section: r.cross_section,
        })
        .collect();
    // Which systems belong to another section: their group says so (the last day is needed).
    let mut other_section = HashMap::new();
    for offered in &catalog.offered {
        if let Some(owner) = &offered.system.owner_org_unit_id {
            let works = org::works_in(&mut tx, &viewer.person_id, owner, today).await?;
            other_section.insert(offered.system.client_id.clone(), !works);
        }
    }
    let all: Vec<_> = catalog.offered.iter().collect();
    let groups = role_options(lang, &all, draft.role.as_deref(), |o| {
        other_section.get(&o.system.client_id).copied().unwrap_or(true)
    });
    drop(tx);
    let nav = nav(app, viewer, PATH).await?;
    let (jar, csrf_token) = csrf::issue(app, jar);
    let page = MyAccessPage {
        lang,
        switch_href: format!("{PATH}?lang={}", lang.other().code()),
        csrf_token,
        nav,
        notice,
        errors,
        held,
        requests,
        groups,
        reason: draft.reason,
        end_date: draft.end_date,
        today: format_date(today),
    };
    Ok((jar, pages::render(status, &page)).into_response())
}

/// "Send the request".
pub async fn submit(State(app): State<App>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let draft = Draft {
        role: form.field("role").map(str::to_owned),
        reason: form.field("reason").unwrap_or_default().to_owned(),
        end_date: form.field("end_date").unwrap_or_default().to_owned(),
    };
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    let outcome = async {
        let now = app.clock.now();
        let catalog = Catalog::load(&app, lang).await?;
        let Some((client_id, role)) = draft.role.as_deref().and_then(|id| catalog.role(id)) else {
            let mut errors = vec![FieldError::new("role", Msg::ChooseRoleError)];
            if draft.reason.trim().is_empty() {
                errors.push(FieldError::new("reason", Msg::ReasonInvalid));
            }
            return Err(Refused::Fields(StatusCode::UNPROCESSABLE_ENTITY, errors));
        };
        let new = NewRequest {
            client_id: client_id.to_owned(),
            role: role.to_owned(),
            reason: draft.reason.clone(),
            end_date: Some(draft.end_date.clone()).filter(|d| !d.trim().is_empty()),
        };
        let mut tx = app.store.begin().await?;
        match requests::submit(&mut tx, &app.config.access, now, &viewer.person_id, new).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::Invalid(invalid)) if invalid.field == "end_date" => {
                let value = Some(draft.end_date.as_str()).filter(|d| !d.trim().is_empty());
                let msg = match value {
                    // The domain asks for a last day only when the system is another section's.
                    None => Msg::EndDateRequiredCrossSection,
                    Some(_) => super::date_msg(value, today_in_japan(now)),
                };
                Err(Refused::Fields(StatusCode::UNPROCESSABLE_ENTITY, vec![FieldError::new("end_date", msg)]))
            }
            Err(AccessError::NotFound(_)) => {
                Err(Refused::Fields(StatusCode::CONFLICT, vec![FieldError::new("role", Msg::RoleNotAvailable)]))
            }
            Err(e) => Err(refused(e, &[("reason", "reason"), ("role", "role")], "role")),
        }
    }
    .await;
    match outcome {
        Ok(()) => done(PATH, "requested"),
        Err(Refused::Fields(status, errors)) => {
            match render(&app, form.jar, lang, &viewer, None, draft, errors, status).await {
                Ok(response) => response,
                Err(e) => pages::internal(lang, e),
            }
        }
        Err(other) => refusal_page(lang, other),
    }
}

/// "Withdraw" on a pending request.
pub async fn withdraw(State(app): State<App>, Path(id): Path<String>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    if !plausible_id(&id) {
        return pages::error_page(lang, StatusCode::NOT_FOUND, Msg::RequestNotFound);
    }
    let outcome = async {
        let mut tx = app.store.begin().await?;
        match requests::withdraw(&mut tx, app.clock.now(), &viewer.person_id, &id).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::NotFound(_)) => Err(Refused::Page(StatusCode::NOT_FOUND, Msg::RequestNotFound)),
            Err(AccessError::Conflict(_)) => Err(Refused::Page(StatusCode::CONFLICT, Msg::AlreadyDecided)),
            Err(e) => Err(refused(e, &[], "")),
        }
    }
    .await;
    match outcome {
        Ok(()) => done(PATH, "withdrawn"),
        Err(refused) => refusal_page(lang, refused),
    }
}
