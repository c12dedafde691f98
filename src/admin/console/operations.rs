//! The console's pages for incidents and inspection: the emergency stop of one person or one
//! consuming system (R17), and the auditors' reports (R16, R19). Both call the domain functions
//! the JSON API calls; the reports themselves are the API's documents, opened with the console
//! session.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use crate::emergency::{self, Kind, Stop};
use crate::App;

use super::super::problem::Problem;
use super::super::rights::Right;
use super::{remember_lang, render, Console, Frame, OrPage, PageError};

#[derive(Template)]
#[template(path = "console/emergency.html")]
struct EmergencyPage {
    frame: Frame,
    stops: Vec<Stop>,
    done: Option<String>,
    error: Option<String>,
}

impl EmergencyPage {
    fn time(&self, at: &i64) -> String {
        crate::clock::japan_rfc3339(*at).unwrap_or_default()
    }
}

async fn emergency_page(app: &App, console: &Console, done: Option<String>, error: Option<String>) -> Result<Response, PageError> {
    let stops = emergency::list(app.store.pool(), true).await.page(console.lang)?;
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = EmergencyPage { frame: console.frame("緊急停止", "Emergency stop"), stops, done, error };
    Ok(render(status, &page))
}

/// `GET /console/emergency`: the stops in force; stop a person or a system.
pub async fn emergency(State(app): State<App>, console: Console, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    console.require(Right::EmergencyStop)?;
    Ok(remember_lang(emergency_page(&app, &console, None, None).await?, query.as_deref(), console.lang))
}

#[derive(Deserialize)]
pub struct StopForm {
    csrf: String,
    kind: String,
    target: String,
    reason: String,
}

/// `POST /console/emergency`: stops a person (login ID) or a system (client_id) at once.
pub async fn stop(State(app): State<App>, console: Console, Form(form): Form<StopForm>) -> Result<Response, PageError> {
    console.require(Right::EmergencyStop)?;
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let Some(kind) = Kind::parse(&form.kind) else {
        return Err(PageError::new(lang, StatusCode::UNPROCESSABLE_ENTITY, Some("kind".into())));
    };
    let mut tx = app.store.begin().await.page(lang)?;
    match emergency::stop(&mut tx, &console.principal.actor(), app.clock.now(), kind, form.target.trim(), &form.reason).await {
        Ok((stopped, _)) => {
            tx.commit().await.page(lang)?;
            let label = stopped.target_label.unwrap_or(stopped.target);
            emergency_page(&app, &console, Some(label), None).await
        }
        Err(e) => {
            drop(tx);
            emergency_page(&app, &console, None, Problem::from(e).detail).await
        }
    }
}

#[derive(Deserialize)]
pub struct LiftForm {
    csrf: String,
    reason: String,
}

/// `POST /console/emergency/{id}/lift`: lifts a stop; what it ended stays ended.
pub async fn lift(
    State(app): State<App>,
    console: Console,
    Path(id): Path<String>,
    Form(form): Form<LiftForm>,
) -> Result<Response, PageError> {
    console.require(Right::EmergencyStop)?;
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let mut tx = app.store.begin().await.page(lang)?;
    match emergency::lift(&mut tx, &console.principal.actor(), app.clock.now(), &id, &form.reason).await {
        Ok(_) => {
            tx.commit().await.page(lang)?;
            emergency_page(&app, &console, Some(lang.pick("解除しました", "lifted").to_owned()), None).await
        }
        Err(e) => {
            drop(tx);
            emergency_page(&app, &console, None, Problem::from(e).detail).await
        }
    }
}

#[derive(Template)]
#[template(path = "console/reports.html")]
struct ReportsPage {
    frame: Frame,
    month_ago: String,
    today: String,
}

/// `GET /console/reports`: the compliance report (A4 page, CSV, JSON) and the analysis of logins.
pub async fn reports(State(app): State<App>, console: Console, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    console.require(Right::ReportsRead)?;
    let today = crate::directory::today_in_japan(app.clock.now());
    let format = crate::directory::types::format_date;
    let page = ReportsPage {
        frame: console.frame("報告", "Reports"),
        month_ago: format(today - time::Duration::days(30)),
        today: format(today),
    };
    Ok(remember_lang(render(StatusCode::OK, &page), query.as_deref(), console.lang))
}

#[derive(Template)]
#[template(path = "console/systems.html")]
struct SystemsPage {
    frame: Frame,
    systems: Vec<crate::systems::Client>,
    may_register: bool,
    registered: Option<(String, Option<String>)>,
    error: Option<String>,
}

async fn systems_page(
    app: &App,
    console: &Console,
    registered: Option<(String, Option<String>)>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let systems = crate::systems::list(&app.store).await.page(console.lang)?;
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = SystemsPage {
        frame: console.frame("業務システム", "Consuming systems"),
        may_register: console.holds(Right::ClientsWrite),
        systems,
        registered,
        error,
    };
    Ok(render(status, &page))
}

/// `GET /console/systems`: the consuming systems; register one.
pub async fn systems(State(app): State<App>, console: Console, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    console.require(Right::ClientsRead)?;
    Ok(remember_lang(systems_page(&app, &console, None, None).await?, query.as_deref(), console.lang))
}

#[derive(Deserialize)]
pub struct RegisterForm {
    csrf: String,
    client_id: String,
    name: String,
    client_type: String,
    redirect_uri: String,
}

/// `POST /console/systems`: registers a consuming system; a confidential one's secret is shown
/// on this answer only (only its hash is kept).
pub async fn register(State(app): State<App>, console: Console, Form(form): Form<RegisterForm>) -> Result<Response, PageError> {
    console.require(Right::ClientsWrite)?;
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let client_type = match form.client_type.as_str() {
        "public" => crate::systems::ClientType::Public,
        _ => crate::systems::ClientType::Confidential,
    };
    let new = crate::systems::NewClient {
        client_id: Some(form.client_id.trim().to_owned()).filter(|c| !c.is_empty()),
        name: form.name,
        client_type,
        token_endpoint_auth_method: None,
        redirect_uris: vec![form.redirect_uri.trim().to_owned()],
        post_logout_redirect_uris: Vec::new(),
        scopes: None,
        id_token_signed_response_alg: None,
        require_pkce: None,
        access_token_ttl: None,
        owner_org_unit_id: None,
        grant_types: None,
        service_scopes: Vec::new(),
        refresh_token_ttl: None,
        backchannel_logout_uri: None,
    };
    let mut tx = app.store.begin().await.page(lang)?;
    match crate::systems::register(&mut tx, &console.principal.actor(), app.clock.now(), &app.config.tokens, new).await {
        Ok((client, secret)) => {
            tx.commit().await.page(lang)?;
            systems_page(&app, &console, Some((client.client_id, secret)), None).await
        }
        Err(e) => {
            drop(tx);
            systems_page(&app, &console, None, Problem::from(e).detail).await
        }
    }
}

#[derive(Template)]
#[template(path = "console/hr.html")]
struct HrPage {
    frame: Frame,
    batches: Vec<crate::hr::batches::Batch>,
    done: Option<String>,
    error: Option<String>,
}

async fn hr_page(app: &App, console: &Console, done: Option<String>, error: Option<String>) -> Result<Response, PageError> {
    let batches = crate::hr::batches::held(&app.store).await.page(console.lang)?;
    let status = if error.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
    let page = HrPage { frame: console.frame("人事連携", "HR feed"), batches, done, error };
    Ok(render(status, &page))
}

/// `GET /console/hr`: the HR batches the safety valve holds, to confirm or discard.
pub async fn hr(State(app): State<App>, console: Console, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    console.require(Right::HrAdmin)?;
    Ok(remember_lang(hr_page(&app, &console, None, None).await?, query.as_deref(), console.lang))
}

#[derive(Deserialize)]
pub struct DecideForm {
    csrf: String,
    decision: String,
}

/// `POST /console/hr/{id}`: confirms (records and applies what is due) or discards a held batch.
pub async fn decide_batch(
    State(app): State<App>,
    console: Console,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Result<Response, PageError> {
    console.require(Right::HrAdmin)?;
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let actor = console.principal.actor();
    let decided = match form.decision.as_str() {
        "confirm" => super::super::hr::confirm(&app, &actor, &id).await.map(|_| lang.pick("確定しました", "confirmed")),
        "discard" => super::super::hr::discard(&app, &actor, &id).await.map(|_| lang.pick("破棄しました", "discarded")),
        _ => return Err(PageError::new(lang, StatusCode::UNPROCESSABLE_ENTITY, Some("decision".into()))),
    };
    match decided {
        Ok(done) => hr_page(&app, &console, Some(done.to_owned()), None).await,
        Err(problem) => hr_page(&app, &console, None, problem.detail).await,
    }
}
