//! 所管システム (`/my/systems`): for a manager or deputy, the systems whose owning section they
//! decide for — their roles and who holds them — a direct grant to a person of the section, and
//! the deputies of the units they manage (named and ended here).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;

use crate::access::deputies::{self, NewDeputy};
use crate::access::grants::{self, GrantFilter};
use crate::access::AccessError;
use crate::audit::Actor;
use crate::clock::japan_date;
use crate::directory::types::{format_date, EmployeeNumber};
use crate::directory::{self, today_in_japan};
use crate::App;

use super::super::csrf::{self, CheckedForm};
use super::super::login::choose_lang;
use super::super::pages;
use super::super::{Lang, Msg};
use super::{
    class_msg, date_msg, done, nav, page_or_login, plausible_id, read, refusal_page, refused, role_options,
    systems_decided_by, unit_names, viewer, Catalog, FieldError, Nav, OptionGroup, PageQuery, Refused, Viewer,
};

pub const PATH: &str = "/my/systems";

#[derive(askama::Template)]
#[template(path = "systems.html")]
pub struct SystemsPage {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: String,
    pub nav: Nav,
    pub notice: Option<Msg>,
    pub errors: Vec<FieldError>,
    pub systems: Vec<SystemView>,
    pub grant_groups: Vec<OptionGroup>,
    pub grant: GrantDraft,
    pub units: Vec<UnitView>,
    pub deputy: DeputyDraft,
    pub today: String,
}

impl SystemsPage {
    pub fn error_for(&self, field: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.field == field)
    }

    pub fn days(&self, days: &Option<i64>) -> String {
        match days {
            Some(d) => format!("{d}{}", self.lang.t(Msg::DaysSuffix)),
            None => self.lang.t(Msg::NoLimit).to_owned(),
        }
    }
}

pub struct SystemView {
    pub client_id: String,
    pub name: String,
    pub owner: String,
    pub requires_role: bool,
    pub roles: Vec<RoleView>,
    pub grants: Vec<HolderView>,
}

pub struct RoleView {
    pub name: String,
    pub label: String,
    pub classification: Msg,
    pub max_days: Option<i64>,
    pub review_days: Option<i64>,
    pub incompatible: String,
}

pub struct HolderView {
    pub person: String,
    pub employee_number: String,
    pub role: String,
    pub classification: Msg,
    pub origin: Msg,
    pub cross_section: bool,
    pub start_date: String,
    pub end_date: Option<String>,
    pub review_due: Option<String>,
}

/// A unit the viewer manages, with its deputies now and to come.
pub struct UnitView {
    pub id: String,
    pub name: String,
    pub deputies: Vec<DeputyView>,
}

pub struct DeputyView {
    pub id: String,
    pub name: String,
    pub employee_number: String,
    pub valid_from: String,
    pub valid_until: String,
    pub in_effect: bool,
}

#[derive(Default)]
pub struct GrantDraft {
    pub role: Option<String>,
    pub employee_number: String,
    pub end_date: String,
    pub reason: String,
}

#[derive(Default)]
pub struct DeputyDraft {
    pub unit: Option<String>,
    pub employee_number: String,
    pub valid_from: String,
    pub valid_until: String,
}

fn notice_for(done: Option<&str>) -> Option<Msg> {
    match done? {
        "granted" => Some(Msg::GrantedNotice),
        "designated" => Some(Msg::DeputyDesignated),
        "deputy-ended" => Some(Msg::DeputyEnded),
        _ => None,
    }
}

pub async fn page(State(app): State<App>, jar: CookieJar, Query(q): Query<PageQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let built = async {
        let Some(viewer) = viewer(&app, &jar).await? else { return Ok(None) };
        let notice = notice_for(q.done.as_deref());
        let drafts = (GrantDraft::default(), DeputyDraft::default());
        Ok(Some(render(&app, jar, lang, &viewer, notice, drafts, Vec::new(), StatusCode::OK).await?))
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
    (grant, deputy): (GrantDraft, DeputyDraft),
    errors: Vec<FieldError>,
    status: StatusCode,
) -> Result<Response, crate::Error> {
    let now = app.clock.now();
    let today = today_in_japan(now);
    let pool = app.store.pool();
    let catalog = Catalog::load(app, lang).await?;
    let units = unit_names(app, lang).await?;
    let mut tx = read(app).await?;
    let mine = systems_decided_by(&mut tx, viewer, &catalog).await?;
    drop(tx);
    let mut systems = Vec::new();
    for offered in &mine {
        let filter = GrantFilter { client_id: Some(offered.system.client_id.clone()), ..Default::default() };
        let holders = grants::list(pool, &filter, 2000)
            .await?
            .into_iter()
            .map(|g| HolderView {
                role: catalog.label(&g.client_id, &g.role, &g.role_label),
                classification: class_msg(g.classification),
                origin: if g.origin == "direct" { Msg::OriginDirect } else { Msg::OriginRequest },
                review_due: g.review_due_at.map(japan_date),
                person: g.person_name,
                employee_number: g.employee_number,
                cross_section: g.cross_section,
                start_date: g.start_date,
                end_date: g.end_date,
            })
            .collect();
        let separator = if lang == Lang::Ja { "、" } else { ", " };
        systems.push(SystemView {
            client_id: offered.system.client_id.clone(),
            name: offered.system.name.clone(),
            owner: offered.system.owner_org_unit_id.as_ref().and_then(|u| units.get(u)).cloned().unwrap_or_default(),
            requires_role: offered.system.requires_role,
            roles: offered
                .roles
                .iter()
                .map(|r| RoleView {
                    name: r.name.clone(),
                    label: catalog.label(&r.client_id, &r.name, &r.label),
                    classification: class_msg(r.classification),
                    max_days: r.max_duration_days,
                    review_days: r.review_interval_days,
                    incompatible: r.incompatible_with.join(separator),
                })
                .collect(),
            grants: holders,
        });
    }
    let grant_groups = role_options(lang, &mine, grant.role.as_deref(), |_| false);
    let mut unit_views = Vec::new();
    for unit in viewer.manages() {
        let mut views = Vec::new();
        for d in deputies::list(pool, Some(unit)).await? {
            let until = directory::types::parse_date("valid_until", &d.valid_until).ok();
            if d.revoked_at.is_some() || until.is_some_and(|u| u < today) {
                continue;
            }
            let person = directory::get_person(pool, &d.deputy_person_id).await?;
            let from = directory::types::parse_date("valid_from", &d.valid_from).ok();
            views.push(DeputyView {
                name: person.as_ref().map(|p| p.full_name()).unwrap_or_default(),
                employee_number: person.map(|p| p.employee_number).unwrap_or_default(),
                in_effect: from.is_some_and(|f| f <= today),
                id: d.id,
                valid_from: d.valid_from,
                valid_until: d.valid_until,
            });
        }
        unit_views.push(UnitView {
            id: unit.to_owned(),
            name: units.get(unit).cloned().unwrap_or_default(),
            deputies: views,
        });
    }
    let nav = nav(app, viewer, PATH).await?;
    let (jar, csrf_token) = csrf::issue(app, jar);
    let page = SystemsPage {
        lang,
        switch_href: format!("{PATH}?lang={}", lang.other().code()),
        csrf_token,
        nav,
        notice,
        errors,
        systems,
        grant_groups,
        grant,
        units: unit_views,
        deputy,
        today: format_date(today),
    };
    Ok((jar, pages::render(status, &page)).into_response())
}

/// Shows the page again with what was typed and the errors, or the refusal's own page.
async fn again(
    app: &App,
    form: CheckedForm,
    viewer: &Viewer,
    drafts: (GrantDraft, DeputyDraft),
    outcome: Result<(), Refused>,
    what: &str,
) -> Response {
    let lang = form.lang;
    match outcome {
        Ok(()) => done(PATH, what),
        Err(Refused::Fields(status, errors)) => {
            match render(app, form.jar, lang, viewer, None, drafts, errors, status).await {
                Ok(response) => response,
                Err(e) => pages::internal(lang, e),
            }
        }
        Err(other) => refusal_page(lang, other),
    }
}

fn field(status: StatusCode, id: &str, msg: Msg) -> Refused {
    Refused::Fields(status, vec![FieldError::new(id, msg)])
}

/// "Grant" a role directly to a person of the section.
pub async fn grant(State(app): State<App>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    let draft = GrantDraft {
        role: form.field("role").map(str::to_owned),
        employee_number: form.field("employee_number").unwrap_or_default().trim().to_owned(),
        end_date: form.field("end_date").unwrap_or_default().to_owned(),
        reason: form.field("reason").unwrap_or_default().to_owned(),
    };
    let outcome = async {
        let now = app.clock.now();
        let catalog = Catalog::load(&app, lang).await?;
        let role = draft.role.as_deref().and_then(|id| catalog.role(id));
        let person = match EmployeeNumber::parse(&draft.employee_number) {
            Ok(number) => directory::person_by_employee_number(app.store.pool(), &number).await?,
            Err(_) => None,
        };
        let mut errors = Vec::new();
        if person.is_none() {
            errors.push(FieldError::new("grant-employee", Msg::PersonNotFound));
        }
        if role.is_none() {
            errors.push(FieldError::new("grant-role", Msg::ChooseRoleError));
        }
        let (Some(person), Some((client_id, role))) = (person, role) else {
            return Err(Refused::Fields(StatusCode::UNPROCESSABLE_ENTITY, errors));
        };
        let end_date = Some(draft.end_date.as_str()).filter(|d| !d.trim().is_empty());
        let mut tx = app.store.begin().await?;
        let granted = grants::grant_directly(
            &mut tx,
            now,
            &viewer.person_id,
            &person.id,
            client_id,
            role,
            end_date,
            &draft.reason,
        )
        .await;
        match granted {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::Invalid(invalid)) if invalid.field == "end_date" => {
                Err(field(StatusCode::UNPROCESSABLE_ENTITY, "grant-end", date_msg(end_date, today_in_japan(now))))
            }
            Err(AccessError::Forbidden(why)) if why.contains("another section") => {
                Err(field(StatusCode::FORBIDDEN, "grant-employee", Msg::PersonOtherSection))
            }
            Err(AccessError::Forbidden(why)) if why.contains("themselves") => {
                Err(field(StatusCode::FORBIDDEN, "grant-employee", Msg::NotToYourself))
            }
            Err(AccessError::Conflict(why)) if why.contains("not in service") => {
                Err(field(StatusCode::CONFLICT, "grant-employee", Msg::NotInService))
            }
            Err(e) => Err(refused(e, &[("reason", "grant-reason")], "grant-role")),
        }
    }
    .await;
    again(&app, form, &viewer, (draft, DeputyDraft::default()), outcome, "granted").await
}

/// "Designate" a deputy for a unit the viewer manages.
pub async fn designate(State(app): State<App>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    let draft = DeputyDraft {
        unit: form.field("org_unit_id").map(str::to_owned),
        employee_number: form.field("employee_number").unwrap_or_default().trim().to_owned(),
        valid_from: form.field("valid_from").unwrap_or_default().to_owned(),
        valid_until: form.field("valid_until").unwrap_or_default().to_owned(),
    };
    let outcome = async {
        let now = app.clock.now();
        let today = today_in_japan(now);
        let Some(unit) = draft.unit.clone().filter(|u| plausible_id(u)) else {
            return Err(Refused::Page(StatusCode::BAD_REQUEST, Msg::BadForm));
        };
        let person = match EmployeeNumber::parse(&draft.employee_number) {
            Ok(number) => directory::person_by_employee_number(app.store.pool(), &number).await?,
            Err(_) => None,
        };
        let Some(person) = person else {
            return Err(field(StatusCode::UNPROCESSABLE_ENTITY, "deputy-employee", Msg::PersonNotFound));
        };
        let new = NewDeputy {
            org_unit_id: unit,
            deputy_person_id: person.id,
            valid_from: draft.valid_from.clone(),
            valid_until: draft.valid_until.clone(),
        };
        let actor = Actor::Person(viewer.person_id.clone());
        let mut tx = app.store.begin().await?;
        match deputies::designate(&mut tx, &actor, now, Some(&viewer.person_id), new).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::Invalid(invalid)) => {
                let (id, value) = match invalid.field {
                    "valid_from" => ("deputy-from", draft.valid_from.as_str()),
                    "deputy_person_id" => {
                        return Err(field(StatusCode::UNPROCESSABLE_ENTITY, "deputy-employee", Msg::DeputyNotSelf))
                    }
                    _ => ("deputy-until", draft.valid_until.as_str()),
                };
                let value = Some(value).filter(|v| !v.trim().is_empty());
                let msg = match date_msg(value, today) {
                    // A date, not in the past, and still refused: the order or the length.
                    Msg::DateOutOfRange if invalid.reason.contains("before") => Msg::UntilBeforeFrom,
                    Msg::DateOutOfRange => Msg::DesignationTooLong,
                    msg => msg,
                };
                Err(field(StatusCode::UNPROCESSABLE_ENTITY, id, msg))
            }
            Err(AccessError::Conflict(_)) => Err(field(StatusCode::CONFLICT, "deputy-employee", Msg::NotInService)),
            Err(AccessError::Forbidden(_)) => Err(Refused::Page(StatusCode::FORBIDDEN, Msg::OnlyManager)),
            Err(e) => Err(refused(e, &[], "deputy-employee")),
        }
    }
    .await;
    again(&app, form, &viewer, (GrantDraft::default(), draft), outcome, "designated").await
}

/// "End designation" of a deputy.
pub async fn end_deputy(State(app): State<App>, Path(id): Path<String>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let viewer = match viewer(&app, &form.jar).await {
        Ok(Some(viewer)) => viewer,
        Ok(None) => return super::super::my::to_login(PATH),
        Err(e) => return pages::internal(lang, e),
    };
    if !plausible_id(&id) {
        return pages::error_page(lang, StatusCode::NOT_FOUND, Msg::NotFoundHere);
    }
    let outcome = async {
        let actor = Actor::Person(viewer.person_id.clone());
        let mut tx = app.store.begin().await?;
        match deputies::revoke(&mut tx, &actor, app.clock.now(), Some(&viewer.person_id), &id).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
            Err(AccessError::Forbidden(_)) => Err(Refused::Page(StatusCode::FORBIDDEN, Msg::OnlyManager)),
            Err(AccessError::Conflict(_)) => Err(Refused::Page(StatusCode::CONFLICT, Msg::DeputyAlreadyEnded)),
            Err(e) => Err(refused(e, &[], "")),
        }
    }
    .await;
    match outcome {
        Ok(()) => done(PATH, "deputy-ended"),
        Err(refused) => refusal_page(lang, refused),
    }
}
