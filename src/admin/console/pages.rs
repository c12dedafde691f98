//! The console's pages. Each handler checks the right it needs, calls the same domain function
//! as the JSON API, and draws the answer.

use askama::Template;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use crate::access::grants::{self, Grant};
use crate::audit::query::Params;
use crate::audit::StoredEvent;
use crate::authenticators::{self, Authenticator};
use crate::directory::search::{self, Found, PeopleFilter};
use crate::directory::{self, Person};
use crate::web::i18n::Lang;
use crate::App;

use super::super::hotline::{self, HotlinePerson, LostAnswer};
use super::super::rights::Right;
use super::super::roles::{self, AdminRole, NewAdminGrant};
use super::{remember_lang, render, Console, Frame, OrPage, PageError};

/// A message: an error, a refusal, logged out.
#[derive(Template)]
#[template(path = "console/message.html")]
pub struct MessagePage {
    pub lang: Lang,
    pub title: &'static str,
    pub detail: String,
    /// Whether to offer the login link.
    pub login: bool,
}

/// After a card login: a link into the console (followed at once by the browser).
#[derive(Template)]
#[template(path = "console/continue.html")]
pub struct Continue {
    pub lang: Lang,
}

/// One administrative role, as the home page lists it.
pub struct RoleHeld {
    pub label: &'static str,
    pub end_date: String,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct Home {
    frame: Frame,
    roles: Vec<RoleHeld>,
}

/// `GET /console`: who you are and what your roles let you do, until when.
pub async fn home(State(app): State<App>, console: Console, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    let lang = console.lang;
    let mut tx = app.store.begin().await.page(lang)?;
    let filter = grants::GrantFilter {
        person_id: Some(console.session.person_id.clone()),
        client_id: Some(crate::systems::CONSOLE_CLIENT_ID.into()),
        ..Default::default()
    };
    let held = grants::list(&mut *tx, &filter, 50).await.page(lang)?;
    tx.commit().await.page(lang)?;
    let roles = held
        .iter()
        .filter_map(|g| {
            let role = AdminRole::parse(&g.role)?;
            console.roles.contains(&role).then(|| RoleHeld {
                label: lang.pick(role.label(), role.label_en()),
                end_date: g.end_date.clone().unwrap_or_default(),
            })
        })
        .collect();
    let page = Home { frame: console.frame("管理コンソール", "Admin console"), roles };
    Ok(remember_lang(render(StatusCode::OK, &page), query.as_deref(), lang))
}

#[derive(Template)]
#[template(path = "console/roles.html")]
struct Roles {
    frame: Frame,
    grants: Vec<Grant>,
    choices: Vec<(&'static str, &'static str)>,
    done: Option<String>,
    error: Option<String>,
    today: String,
}

fn role_choices(lang: Lang) -> Vec<(&'static str, &'static str)> {
    AdminRole::ALL.iter().map(|r| (r.name(), lang.pick(r.label(), r.label_en()))).collect()
}

async fn roles_page(app: &App, console: &Console, done: Option<String>, error: Option<String>) -> Result<Response, PageError> {
    let lang = console.lang;
    let mut tx = app.store.begin().await.page(lang)?;
    let grants = roles::live_grants(&mut tx).await.page(lang)?;
    tx.commit().await.page(lang)?;
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = Roles {
        frame: console.frame("管理者権限", "Administrative roles"),
        grants,
        choices: role_choices(lang),
        done,
        error,
        today: directory::types::format_date(directory::today_in_japan(app.clock.now())),
    };
    Ok(render(status, &page))
}

/// `GET /console/roles`: who holds which administrative role until when; grant or end one.
pub async fn roles(State(app): State<App>, console: Console, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    console.require(Right::AdminRolesGrant)?;
    Ok(remember_lang(roles_page(&app, &console, None, None).await?, query.as_deref(), console.lang))
}

#[derive(Deserialize)]
pub struct GrantForm {
    csrf: String,
    login_id: String,
    role: String,
    end_date: String,
    reason: String,
}

/// `POST /console/roles`: grants an administrative role to the person with a login ID.
pub async fn grant_role(
    State(app): State<App>,
    console: Console,
    Form(form): Form<GrantForm>,
) -> Result<Response, PageError> {
    console.require(Right::AdminRolesGrant)?;
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let now = app.clock.now();
    let person_id = match directory::LoginId::parse(form.login_id.trim()) {
        Ok(login_id) => directory::find_login_account(&app.store, &login_id).await.page(lang)?.map(|a| a.person.id),
        Err(_) => None,
    };
    let Some(person_id) = person_id else {
        let error = lang.pick("そのログインIDの職員はいません。", "Nobody has that login ID.").to_owned();
        return roles_page(&app, &console, None, Some(error)).await;
    };
    let mut tx = app.store.begin().await.page(lang)?;
    let granted = roles::grant(
        &mut tx,
        &console.principal.actor(),
        now,
        Some(&console.session.person_id),
        NewAdminGrant { person_id: &person_id, role: &form.role, end_date: &form.end_date, reason: &form.reason },
    )
    .await;
    match granted {
        Ok(grant) => {
            tx.commit().await.page(lang)?;
            let done = format!("{} {} → {}", grant.person_name, grant.role_label, grant.end_date.unwrap_or_default());
            roles_page(&app, &console, Some(done), None).await
        }
        Err(e) => {
            drop(tx);
            let problem = super::super::problem::Problem::from(e);
            roles_page(&app, &console, None, Some(problem.detail.unwrap_or_default())).await
        }
    }
}

#[derive(Deserialize)]
pub struct EndForm {
    csrf: String,
    reason: String,
}

/// `POST /console/roles/{id}/end`: ends an administrative role at once.
pub async fn end_role(
    State(app): State<App>,
    console: Console,
    Path(id): Path<String>,
    Form(form): Form<EndForm>,
) -> Result<Response, PageError> {
    console.require(Right::AdminRolesGrant)?;
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let reason = match crate::access::requests::check_reason(&form.reason) {
        Ok(reason) => reason,
        Err(e) => return roles_page(&app, &console, None, Some(e.reason)).await,
    };
    let mut tx = app.store.begin().await.page(lang)?;
    let grant = grants::get(&mut tx, &id).await.page(lang)?;
    if grant.as_ref().is_none_or(|g| g.client_id != crate::systems::CONSOLE_CLIENT_ID) {
        return Err(PageError::new(lang, StatusCode::NOT_FOUND, None));
    }
    grants::end(&mut tx, &console.principal.actor(), app.clock.now(), &id, &reason).await.page(lang)?;
    tx.commit().await.page(lang)?;
    roles_page(&app, &console, Some(lang.pick("権限を終了しました。", "The role has ended.").to_owned()), None).await
}

#[derive(Template)]
#[template(path = "console/hotline.html")]
struct HotlinePage {
    frame: Frame,
    q: String,
    people: Vec<HotlinePerson>,
    searched: bool,
    stopped: Option<LostAnswer>,
}

#[derive(Deserialize)]
pub struct HotlineQuery {
    q: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

/// `GET /console/hotline`: find the caller's person and their cards.
pub async fn hotline(
    State(app): State<App>,
    console: Console,
    RawQuery(raw): RawQuery,
    Query(query): Query<HotlineQuery>,
) -> Result<Response, PageError> {
    console.require(Right::Hotline)?;
    let lang = console.lang;
    let q = query.q.unwrap_or_default();
    let people = if q.trim().is_empty() {
        Vec::new()
    } else {
        hotline::find(&app, &console.principal.actor(), &q).await.page(lang)?
    };
    let page = HotlinePage {
        frame: console.frame("紛失受付", "Lost-card hotline"),
        searched: !q.trim().is_empty(),
        q,
        people,
        stopped: None,
    };
    Ok(remember_lang(render(StatusCode::OK, &page), raw.as_deref(), lang))
}

#[derive(Deserialize)]
pub struct LostForm {
    csrf: String,
    reported_by: String,
    reason: String,
}

/// `POST /console/hotline/{id}/lost`: stops the card at once and shows the reference number.
pub async fn report_lost(
    State(app): State<App>,
    console: Console,
    Path(id): Path<String>,
    Form(form): Form<LostForm>,
) -> Result<Response, PageError> {
    console.require(Right::Hotline)?;
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let answer =
        hotline::stop_card(&app, &console.principal.actor(), &id, &form.reported_by, &form.reason).await.page(lang)?;
    let page = HotlinePage {
        frame: console.frame("紛失受付", "Lost-card hotline"),
        q: String::new(),
        people: Vec::new(),
        searched: false,
        stopped: Some(answer),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "console/people.html")]
struct PeoplePage {
    frame: Frame,
    q: String,
    found: Vec<Found>,
    searched: bool,
}

/// `GET /console/people`: find people by name, kana, employee number or login ID.
pub async fn people(
    State(app): State<App>,
    console: Console,
    RawQuery(raw): RawQuery,
    Query(query): Query<HotlineQuery>,
) -> Result<Response, PageError> {
    console.require(Right::DirectoryRead)?;
    let lang = console.lang;
    let q = query.q.unwrap_or_default();
    let found = if q.trim().is_empty() {
        Vec::new()
    } else {
        let name = search::NameQuery::parse("q", &q).map_err(super::super::problem::Problem::bad_parameter).page(lang)?;
        let filter = PeopleFilter { q: Some(name), ..PeopleFilter::default() };
        search::find_people(&app.store, &filter, 50, 0).await.page(lang)?
    };
    let page = PeoplePage { frame: console.frame("職員", "People"), searched: !q.trim().is_empty(), q, found };
    Ok(remember_lang(render(StatusCode::OK, &page), raw.as_deref(), lang))
}

#[derive(Template)]
#[template(path = "console/person.html")]
struct PersonPage {
    frame: Frame,
    person: Person,
    login_id: Option<String>,
    cards: Vec<Authenticator>,
    grants: Vec<Grant>,
}

/// `GET /console/people/{id}`: a person's account, cards and grants.
pub async fn person(State(app): State<App>, console: Console, Path(id): Path<String>) -> Result<Response, PageError> {
    console.require(Right::DirectoryRead)?;
    let lang = console.lang;
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(PageError::new(lang, StatusCode::NOT_FOUND, None));
    }
    let pool = app.store.pool();
    let person =
        directory::get_person(pool, &id).await.page(lang)?.ok_or_else(|| PageError::new(lang, StatusCode::NOT_FOUND, None))?;
    let filter = grants::GrantFilter { person_id: Some(id.clone()), ..Default::default() };
    let page = PersonPage {
        frame: console.frame("職員", "People"),
        login_id: directory::login_id_of(pool, &id).await.page(lang)?,
        cards: authenticators::list_for_person(pool, &id).await.page(lang)?,
        grants: grants::list(pool, &filter, 200).await.page(lang)?,
        person,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    frame: Frame,
    params: AuditForm,
    events: Vec<StoredEvent>,
    searched: bool,
    export_query: String,
}

impl AuditPage {
    /// An event's time in Japan time, as the log's JSON gives it.
    fn time(&self, at: &i64) -> String {
        crate::clock::japan_rfc3339(*at).unwrap_or_default()
    }
}

/// The audit search form as the page sends it (empty fields mean "any").
#[derive(Deserialize, Default)]
pub struct AuditForm {
    #[serde(default)]
    person: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[allow(dead_code)]
    lang: Option<String>,
}

impl AuditForm {
    fn params(&self) -> Params {
        let given = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        Params {
            person: given(&self.person),
            system: given(&self.system),
            action: given(&self.action),
            outcome: given(&self.outcome),
            since: given(&self.since),
            until: given(&self.until),
            ..Params::default()
        }
    }
    fn is_empty(&self) -> bool {
        [&self.person, &self.system, &self.action, &self.outcome, &self.since, &self.until].iter().all(|v| v.trim().is_empty())
    }
}

/// `GET /console/audit`: the access records, for auditors only (R8); the reading is recorded.
pub async fn audit(
    State(app): State<App>,
    console: Console,
    RawQuery(raw): RawQuery,
    Query(form): Query<AuditForm>,
) -> Result<Response, PageError> {
    console.require(Right::AuditRead)?;
    let lang = console.lang;
    let params = form.params();
    let searched = !form.is_empty();
    let events = if searched || raw.as_deref().is_some_and(|q| q.contains("show=")) {
        super::super::read_audit(&app, &console.principal.actor(), &params).await.page(lang)?
    } else {
        Vec::new()
    };
    let export_query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            [
                ("person", &params.person),
                ("system", &params.system),
                ("action", &params.action),
                ("outcome", &params.outcome),
                ("since", &params.since),
                ("until", &params.until),
            ]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.as_str()))),
        )
        .finish();
    let page = AuditPage { frame: console.frame("アクセス記録", "Access records"), params: form, events, searched, export_query };
    Ok(remember_lang(render(StatusCode::OK, &page), raw.as_deref(), lang))
}
