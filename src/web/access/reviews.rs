//! 棚卸し (`/my/reviews`): the open reviews a manager or deputy decides, each grant to keep or
//! remove (a removal needs a reason and ends the person's tokens for that system at once), and
//! opening a review of one of their systems.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;

use crate::access::reviews::{self, NewReview};
use crate::access::AccessError;
use crate::audit::Actor;
use crate::clock::{japan_date, japan_minute};
use crate::directory::today_in_japan;
use crate::directory::types::format_date;
use crate::App;

use super::super::csrf::{self, CheckedForm};
use super::super::login::choose_lang;
use super::super::pages;
use super::super::{Lang, Msg};
use super::{
    class_msg, date_msg, done, nav, page_or_login, plausible_id, read, refusal_page, refused, systems_decided_by,
    viewer, Catalog, FieldError, Nav, PageQuery, Refused, Viewer,
};

pub const PATH: &str = "/my/reviews";

#[derive(askama::Template)]
#[template(path = "reviews.html")]
pub struct ReviewsPage {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: String,
    pub nav: Nav,
    pub notice: Option<Msg>,
    pub errors: Vec<FieldError>,
    pub reviews: Vec<ReviewView>,
    /// The systems a review can be opened of: (client_id, name, selected).
    pub systems: Vec<(String, String, bool)>,
    pub deadline: String,
    pub today: String,
}

impl ReviewsPage {
    pub fn error_for(&self, field: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.field == field)
    }
}

pub struct ReviewView {
    pub id: String,
    pub scope: String,
    pub deadline: String,
    pub opened: String,
    pub undecided: usize,
    pub items: Vec<ItemView>,
}

pub struct ItemView {
    pub grant_id: String,
    /// The id of its reason field (and what the error names).
    pub field: String,
    pub person: String,
    pub employee_number: String,
    pub system: String,
    pub role: String,
    pub classification: Msg,
    pub cross_section: bool,
    pub start_date: String,
    pub end_date: Option<String>,
    pub last_confirmed: String,
    pub decision: Option<Msg>,
    pub decided_reason: Option<String>,
    pub draft: String,
}

fn notice_for(done: Option<&str>) -> Option<Msg> {
    match done? {
        "opened" => Some(Msg::ReviewOpenedNotice),
        "confirmed" => Some(Msg::ReviewConfirmedNotice),
        "removed" => Some(Msg::ReviewRemovedNotice),
        _ => None,
    }
}

/// The reason field of one grant in one review.
fn field_of(review_id: &str, grant_id: &str) -> String {
    format!("reason-{review_id}-{grant_id}")
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

/// What was typed, shown again with the errors.
#[derive(Default)]
struct Draft {
    /// (field id, reason) of a decision.
    reason: Option<(String, String)>,
    client_id: Option<String>,
    deadline: String,
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
    let catalog = Catalog::load(app, lang).await?;
    let mut tx = read(app).await?;
    let open = reviews::open_for(&mut tx, &viewer.person_id, now).await?;
    let systems = systems_decided_by(&mut tx, viewer, &catalog)
        .await?
        .into_iter()
        .map(|o| {
            let selected = draft.client_id.as_deref() == Some(o.system.client_id.as_str());
            (o.system.client_id.clone(), o.system.name.clone(), selected)
        })
        .collect();
    drop(tx);
    let reviews = open
        .into_iter()
        .map(|review| {
            let items: Vec<ItemView> = review
                .items
                .into_iter()
                .map(|item| {
                    let g = item.grant;
                    let field = field_of(&review.id, &g.id);
                    ItemView {
                        draft: draft
                            .reason
                            .as_ref()
                            .filter(|(f, _)| *f == field)
                            .map(|(_, r)| r.clone())
                            .unwrap_or_default(),
                        role: catalog.label(&g.client_id, &g.role, &g.role_label),
                        classification: class_msg(g.classification),
                        last_confirmed: japan_date(g.last_confirmed_at),
                        decision: item.decision.as_deref().map(|d| match d {
                            "confirmed" => Msg::DecisionConfirmed,
                            "removed" => Msg::DecisionRemoved,
                            _ => Msg::DecisionLapsed,
                        }),
                        decided_reason: item.reason,
                        field,
                        grant_id: g.id,
                        person: g.person_name,
                        employee_number: g.employee_number,
                        system: g.system_name,
                        cross_section: g.cross_section,
                        start_date: g.start_date,
                        end_date: g.end_date,
                    }
                })
                .collect();
            ReviewView {
                undecided: items.iter().filter(|i| i.decision.is_none()).count(),
                opened: japan_minute(review.opened_at),
                id: review.id,
                scope: review.scope_name,
                deadline: review.deadline,
                items,
            }
        })
        .collect();
    let nav = nav(app, viewer, PATH).await?;
    let (jar, csrf_token) = csrf::issue(app, jar);
    let page = ReviewsPage {
        lang,
        switch_href: format!("{PATH}?lang={}", lang.other().code()),
        csrf_token,
        nav,
        notice,
        errors,
        reviews,
        systems,
        deadline: draft.deadline,
        today: format_date(today_in_japan(now)),
    };
    Ok((jar, pages::render(status, &page)).into_response())
}

async fn again(
    app: &App,
    form: CheckedForm,
    viewer: &Viewer,
    draft: Draft,
    outcome: Result<(), Refused>,
    what: &str,
) -> Response {
    let lang = form.lang;
    match outcome {
        Ok(()) => done(PATH, what),
        Err(Refused::Fields(status, errors)) => {
            match render(app, form.jar, lang, viewer, None, draft, errors, status).await {
                Ok(response) => response,
                Err(e) => pages::internal(lang, e),
            }
        }
        Err(other) => refusal_page(lang, other),
    }
}

/// "Open the review" of one of the viewer's systems.
pub async fn open(State(app): State<App>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    let draft = Draft {
        reason: None,
        client_id: form.field("client_id").map(str::to_owned),
        deadline: form.field("deadline").unwrap_or_default().to_owned(),
    };
    let outcome = async {
        let now = app.clock.now();
        let Some(client_id) = draft.client_id.clone().filter(|c| plausible_id(c)) else {
            return Err(Refused::Fields(
                StatusCode::UNPROCESSABLE_ENTITY,
                vec![FieldError::new("review-system", Msg::ChooseSystemError)],
            ));
        };
        let deadline = Some(draft.deadline.clone()).filter(|d| !d.trim().is_empty());
        let new = NewReview { client_id: Some(client_id), org_unit_id: None, deadline: deadline.clone() };
        let actor = Actor::Person(viewer.person_id.clone());
        let mut tx = app.store.begin().await?;
        match reviews::open(&mut tx, &actor, &app.config.access, now, Some(&viewer.person_id), new).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::Invalid(invalid)) if invalid.field == "deadline" => {
                let msg = match date_msg(deadline.as_deref(), today_in_japan(now)) {
                    Msg::DateOutOfRange => Msg::DeadlineTooFar,
                    msg => msg,
                };
                Err(Refused::Fields(StatusCode::UNPROCESSABLE_ENTITY, vec![FieldError::new("review-deadline", msg)]))
            }
            Err(AccessError::NotFound(_)) => Err(Refused::Fields(
                StatusCode::UNPROCESSABLE_ENTITY,
                vec![FieldError::new("review-system", Msg::ChooseSystemError)],
            )),
            Err(e) => Err(refused(e, &[], "review-system")),
        }
    }
    .await;
    again(&app, form, &viewer, draft, outcome, "opened").await
}

/// "Keep" or "Remove" on one grant of an open review.
pub async fn decide(
    State(app): State<App>,
    Path((review_id, grant_id)): Path<(String, String)>,
    form: CheckedForm,
) -> Response {
    let lang = form.lang;
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    if !plausible_id(&review_id) || !plausible_id(&grant_id) {
        return pages::error_page(lang, StatusCode::NOT_FOUND, Msg::NotFoundHere);
    }
    let confirm = match form.field("decision") {
        Some("confirm") => true,
        Some("remove") => false,
        _ => return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm),
    };
    let reason = form.field("reason").unwrap_or_default().to_owned();
    let field = field_of(&review_id, &grant_id);
    let outcome = async {
        let mut tx = app.store.begin().await?;
        match reviews::decide(&mut tx, app.clock.now(), &viewer.person_id, &review_id, &grant_id, confirm, &reason)
            .await
        {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::Invalid(invalid)) if invalid.field == "reason" => {
                let msg = if confirm { Msg::ReasonInvalid } else { Msg::RemoveReasonRequired };
                Err(Refused::Fields(StatusCode::UNPROCESSABLE_ENTITY, vec![FieldError::new(field.clone(), msg)]))
            }
            Err(AccessError::Forbidden(why)) if why.contains("own grant") => {
                Err(Refused::Page(StatusCode::FORBIDDEN, Msg::OwnGrant))
            }
            Err(AccessError::Conflict(_)) => Err(Refused::Page(StatusCode::CONFLICT, Msg::ReviewItemDecided)),
            Err(e) => Err(refused(e, &[], &field)),
        }
    }
    .await;
    let draft = Draft { reason: Some((field.clone(), reason.clone())), ..Default::default() };
    again(&app, form, &viewer, draft, outcome, if confirm { "confirmed" } else { "removed" }).await
}
