//! Pages and browser endpoints for IC cards and security keys: the card step of a login (second
//! factor, passwordless, step-up), self-service enrollment and "my card is lost".
//!
//! The pages carry the ceremony's options; `static/webauthn.js` asks the authenticator and
//! posts the answer (JSON, with the form's CSRF token) to `/webauthn/login` or
//! `/webauthn/register`, which answer with where to go next.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;
use serde_json::json;

use crate::audit::{Actor, Event};
use crate::authenticators::ceremony::{self, CardError, Kind};
use crate::authenticators::loss::{self, LossError};
use crate::authenticators::replacement;
use crate::authenticators::{self, Authenticator, ACR_HWK, AMR_CARD_WITH_VERIFICATION, AMR_PASSWORD_AND_CARD};
use crate::directory;
use crate::oidc::flow::{self, AuthorizationRequest, FlowError};
use crate::sessions::{self, Session};
use crate::App;

use super::csrf::{self, CheckedForm};
use super::login::{choose_lang, with_new_session};
use super::pages::{self, internal};
use super::{session_from_jar, Lang, Msg, SourceIp};

#[derive(Template)]
#[template(path = "card.html")]
pub struct CardPage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub title: Msg,
    pub lead: Msg,
    pub client_name: Option<&'a str>,
    /// `register` or `login`.
    pub mode: &'a str,
    pub finish: &'a str,
    pub ceremony: &'a str,
    pub csrf_token: &'a str,
    pub options: String,
}

#[derive(Template)]
#[template(path = "authenticators.html")]
pub struct AuthenticatorsPage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: &'a str,
    pub cards: Vec<Authenticator>,
    pub notice: Option<Msg>,
    pub error: Option<Msg>,
    /// Whether cards work on this server at all (the issuer is a domain name).
    pub cards_available: bool,
}

impl AuthenticatorsPage<'_> {
    pub fn minute(&self, at: &i64) -> String {
        crate::clock::japan_minute(*at)
    }

    pub fn last_used(&self, card: &Authenticator) -> String {
        match card.last_used_at {
            Some(at) => crate::clock::japan_minute(at),
            None => self.lang.t(Msg::NoneYet).to_owned(),
        }
    }
}

#[derive(Template)]
#[template(path = "card_lost_confirm.html")]
pub struct LostConfirmPage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: &'a str,
    pub card: Authenticator,
    pub enrolled: String,
}

#[derive(Template)]
#[template(path = "card_replace.html")]
pub struct CardReplacePage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: &'a str,
    pub ticket: &'a str,
    pub client_name: Option<&'a str>,
    pub error: Option<Msg>,
}

fn card_error_msg(e: &CardError) -> Msg {
    match e {
        CardError::Unavailable => Msg::WebauthnUnavailable,
        CardError::NotEntitled => Msg::NotEntitled,
        CardError::BadInput => Msg::CardBadInput,
        CardError::AlreadyEnrolled => Msg::CardAlreadyEnrolled,
        CardError::Expired | CardError::Rejected | CardError::NoCard => Msg::CardFailed,
        CardError::Internal(_) => Msg::InternalError,
    }
}

/// The card page for a ceremony that has started.
#[allow(clippy::too_many_arguments)]
pub fn card_page(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    title: Msg,
    client_name: Option<&str>,
    mode: &str,
    token: &str,
    options: &impl serde::Serialize,
) -> Response {
    let (jar, csrf_token) = csrf::issue(app, jar);
    let (finish, lead) =
        if mode == "register" { ("/webauthn/register", Msg::EnrollLead) } else { ("/webauthn/login", Msg::CardLead) };
    let page = CardPage {
        lang,
        switch_href: format!("/?lang={}", lang.other().code()),
        title,
        lead,
        client_name,
        mode,
        finish,
        ceremony: token,
        csrf_token: &csrf_token,
        options: serde_json::to_string(options).unwrap_or_default(),
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}

/// The password was right and the person holds a card: the card comes next, before any session.
pub async fn second_factor_page(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    person_id: &str,
    request_id: &str,
    client_name: Option<&str>,
) -> Result<Response, crate::Error> {
    match ceremony::start_login(app, Kind::SecondFactor, Some(person_id), None, Some(request_id), app.clock.now()).await
    {
        Ok((token, options)) => Ok(card_page(app, jar, lang, Msg::CardTitle, client_name, "login", &token, &options)),
        Err(CardError::Internal(e)) => Err(e),
        Err(e) => Ok(pages::error_page(lang, StatusCode::SERVICE_UNAVAILABLE, card_error_msg(&e))),
    }
}

#[derive(Deserialize)]
pub struct RequestQuery {
    request: Option<String>,
    lang: Option<String>,
    enrolled: Option<String>,
}

async fn pending(app: &App, id: &str) -> Result<Option<(AuthorizationRequest, Option<String>)>, crate::Error> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    let Some(request) = flow::load_pending(app, id, app.clock.now()).await? else { return Ok(None) };
    let name = super::login::system_name(app, &request).await?;
    Ok(Some((request, name)))
}

/// "Log in with an IC card" on the login page: a discoverable credential says who it is.
pub async fn passwordless(State(app): State<App>, jar: CookieJar, Query(q): Query<RequestQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let request_id = q.request.unwrap_or_default();
    let result = async {
        let Some((_, client_name)) = pending(&app, &request_id).await? else {
            return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired));
        };
        Ok::<_, crate::Error>(
            match ceremony::start_login(&app, Kind::Passwordless, None, None, Some(&request_id), app.clock.now()).await
            {
                Ok((token, options)) => {
                    card_page(&app, jar, lang, Msg::LoginWithCard, client_name.as_deref(), "login", &token, &options)
                }
                Err(CardError::Internal(e)) => return Err(e),
                Err(e) => pages::error_page(lang, StatusCode::SERVICE_UNAVAILABLE, card_error_msg(&e)),
            },
        )
    }
    .await;
    result.unwrap_or_else(|e| internal(lang, e))
}

/// A consuming system asked for a card login and the session used only a password.
pub async fn step_up(State(app): State<App>, jar: CookieJar, Query(q): Query<RequestQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let request_id = q.request.unwrap_or_default();
    let result = async {
        let (Some((_, client_name)), Some(session)) =
            (pending(&app, &request_id).await?, session_from_jar(&app, &jar).await?)
        else {
            return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired));
        };
        Ok::<_, crate::Error>(
            match ceremony::start_login(
                &app,
                Kind::StepUp,
                Some(&session.person_id),
                Some(&session.id),
                Some(&request_id),
                app.clock.now(),
            )
            .await
            {
                Ok((token, options)) => {
                    card_page(&app, jar, lang, Msg::CardTitle, client_name.as_deref(), "login", &token, &options)
                }
                Err(CardError::Internal(e)) => return Err(e),
                Err(e) => pages::error_page(lang, StatusCode::FORBIDDEN, card_error_msg(&e)),
            },
        )
    }
    .await;
    result.unwrap_or_else(|e| internal(lang, e))
}

/// What `static/webauthn.js` posts.
#[derive(Deserialize)]
struct CeremonyAnswer<T> {
    csrf_token: String,
    ceremony: String,
    credential: T,
}

/// A JSON body from our own page: JSON content type, CSRF token bound to this browser.
fn parse_answer<T: serde::de::DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    jar: &CookieJar,
    body: &Bytes,
) -> Result<CeremonyAnswer<T>, Box<Response>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(Box::new(json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, Lang::Ja, Msg::BadForm)));
    }
    let answer: CeremonyAnswer<T> = serde_json::from_slice(body)
        .map_err(|_| Box::new(json_error(StatusCode::BAD_REQUEST, Lang::Ja, Msg::CardFailed)))?;
    if !csrf::from_this_origin(headers) || !csrf::verify(app, jar, Some(&answer.csrf_token)) {
        return Err(Box::new(json_error(StatusCode::FORBIDDEN, Lang::Ja, Msg::CsrfFailed)));
    }
    Ok(answer)
}

fn json_error(status: StatusCode, lang: Lang, msg: Msg) -> Response {
    let code = match status {
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::INTERNAL_SERVER_ERROR => "internal_error",
        _ => "refused",
    };
    (status, Json(json!({"error": code, "message": lang.t(msg)}))).into_response()
}

fn go(jar: CookieJar, url: &str) -> Response {
    (jar, Json(json!({"redirect": url}))).into_response()
}

/// Finishes a card login: opens (or steps up) the session and completes the authorization.
pub async fn finish_login(
    State(app): State<App>,
    SourceIp(source_ip): SourceIp,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = super::lang_for(&jar, None);
    let answer = match parse_answer::<webauthn_rs::prelude::PublicKeyCredential>(&app, &headers, &jar, &body) {
        Ok(answer) => answer,
        Err(response) => return *response,
    };
    match login(&app, jar, &answer.ceremony, &answer.credential, source_ip.clone()).await {
        Ok(response) => response,
        Err(CardError::Internal(e)) => {
            tracing::error!(error = %e, "card login failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, lang, Msg::InternalError)
        }
        Err(e) => {
            if let Err(audit_error) = ceremony::record_refusal(&app, &e, source_ip, app.clock.now()).await {
                tracing::error!(error = %audit_error, "recording a refused card login failed");
            }
            json_error(StatusCode::BAD_REQUEST, lang, card_error_msg(&e))
        }
    }
}

async fn login(
    app: &App,
    jar: CookieJar,
    token: &str,
    credential: &webauthn_rs::prelude::PublicKeyCredential,
    source_ip: Option<String>,
) -> Result<Response, CardError> {
    let now = app.clock.now();
    let current = session_from_jar(app, &jar).await?;
    let mut tx = app.store.begin().await?;
    let card = ceremony::finish_login(app, &mut tx, token, credential, now).await?;
    let account = directory::account_of_person(&mut *tx, &card.person_id)
        .await
        .map_err(|e| CardError::Internal(e.into()))?
        .ok_or(CardError::Rejected)?;
    if !(account.account_active && account.person.may_log_in(directory::today_in_japan(now))) {
        return Err(CardError::Rejected);
    }
    let (session, cookie) = match card.ceremony.kind {
        Kind::StepUp => {
            // The session stepped up must be this browser's, and the card its person's.
            let Some(session) = current.filter(|s| card.ceremony.session_id.as_deref() == Some(s.id.as_str())) else {
                return Err(CardError::Expired);
            };
            if !sessions::step_up(&mut tx, now, &session.id, &card.authenticator_id, &AMR_PASSWORD_AND_CARD, ACR_HWK)
                .await?
            {
                return Err(CardError::Expired);
            }
            let stepped = Session {
                auth_time: now,
                amr: AMR_PASSWORD_AND_CARD.iter().map(|s| s.to_string()).collect(),
                acr: ACR_HWK.into(),
                authenticator_id: Some(card.authenticator_id.clone()),
                ..session
            };
            (stepped, None)
        }
        kind => {
            let amr: &[&str] =
                if kind == Kind::SecondFactor { &AMR_PASSWORD_AND_CARD } else { &AMR_CARD_WITH_VERIFICATION };
            let (session, cookie) = open_card_session(
                app,
                &mut tx,
                &jar,
                &account,
                (&card.authenticator_id, amr),
                source_ip.as_deref(),
                now,
            )
            .await?;
            (session, Some(cookie))
        }
    };
    let kind = json!(card.ceremony.kind);
    record_card_login(&mut tx, now, &card.authenticator_id, &session, kind, source_ip).await?;
    tx.commit().await?;
    let jar = match cookie {
        Some(value) => with_new_session(app, jar, value),
        None => jar,
    };
    Ok(complete_pending(app, jar, &session, card.ceremony.authorization_request_id.as_deref()).await?)
}

/// Opens the session of a card login, in `tx`; the browser's earlier session ends.
async fn open_card_session(
    app: &App,
    tx: &mut crate::store::Tx,
    jar: &CookieJar,
    account: &directory::LoginAccount,
    (authenticator_id, amr): (&str, &[&str]),
    source_ip: Option<&str>,
    now: i64,
) -> Result<(Session, String), crate::Error> {
    let previous = jar.get(sessions::COOKIE_NAME).map(|c| c.value().to_owned());
    crate::login::end_previous_session(tx, previous.as_deref(), &Actor::Person(account.person.id.clone()), now).await?;
    let new = sessions::NewSession {
        person_id: &account.person.id,
        account_id: &account.account_id,
        amr,
        acr: ACR_HWK,
        authenticator_id: Some(authenticator_id),
        source_ip,
    };
    Ok(sessions::create(tx, &app.config.session, now, new).await?)
}

/// The audit event of a card login (`kind`: second factor, passwordless, step-up, replacement).
async fn record_card_login(
    tx: &mut crate::store::Tx,
    now: i64,
    authenticator_id: &str,
    session: &Session,
    kind: serde_json::Value,
    source_ip: Option<String>,
) -> Result<(), sqlx::Error> {
    crate::metrics::login("card", "success");
    Event::success(
        &Actor::Person(session.person_id.clone()),
        "login.card",
        format!("authenticator:{authenticator_id}"),
        json!({"sid": session.id, "kind": kind, "amr": session.amr}),
    )
    .from_source(source_ip)
    .record(tx, now)
    .await
}

/// Completes the pending authorization a card login was for (or goes home) and tells the
/// page where to go next.
async fn complete_pending(
    app: &App,
    jar: CookieJar,
    session: &Session,
    request_id: Option<&str>,
) -> Result<Response, crate::Error> {
    let Some(request_id) = request_id else { return Ok(go(jar, "/")) };
    let Some(request) = flow::load_pending(app, request_id, app.clock.now()).await? else { return Ok(go(jar, "/")) };
    match flow::complete(app, &request, session, Some(request_id), app.clock.now()).await {
        Err(FlowError::Internal(e)) => Err(e),
        completed => Ok(go(jar, &super::authorize::destination(app, completed).unwrap_or_else(|| "/".into()))),
    }
}

/// Self-service: my cards, enrollment, "report lost".
pub async fn list(State(app): State<App>, jar: CookieJar, Query(q): Query<RequestQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    match session_from_jar(&app, &jar).await {
        Ok(Some(session)) => {
            let notice = q.enrolled.is_some().then_some(Msg::CardEnrolled);
            cards_page(&app, jar, lang, &session, notice, None).await
        }
        Ok(None) => super::my::to_login("/authenticators"),
        Err(e) => internal(lang, e),
    }
}

async fn cards_page(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    session: &Session,
    notice: Option<Msg>,
    error: Option<Msg>,
) -> Response {
    let cards = match authenticators::list_for_person(app.store.pool(), &session.person_id).await {
        Ok(cards) => cards,
        Err(e) => return internal(lang, e),
    };
    let (jar, csrf_token) = csrf::issue(app, jar);
    let page = AuthenticatorsPage {
        lang,
        switch_href: format!("/authenticators?lang={}", lang.other().code()),
        csrf_token: &csrf_token,
        cards,
        notice,
        error,
        cards_available: app.webauthn.is_some(),
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (jar, pages::render(status, &page)).into_response()
}

pub async fn enroll(State(app): State<App>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let session = match session_from_jar(&app, &form.jar).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return pages::message_page(lang, StatusCode::UNAUTHORIZED, Msg::CardsTitle, Msg::NotLoggedIn, true)
        }
        Err(e) => return internal(lang, e),
    };
    let label = form.field("label").unwrap_or("");
    let number = form.field("management_number").unwrap_or("");
    match ceremony::start_registration(&app, &session, label, number, form.field("enrollment_code"), app.clock.now())
        .await
    {
        Ok((token, options)) => card_page(&app, form.jar, lang, Msg::EnrollTitle, None, "register", &token, &options),
        Err(CardError::Internal(e)) => internal(lang, e),
        Err(e) => cards_page(&app, form.jar, lang, &session, None, Some(card_error_msg(&e))).await,
    }
}

pub async fn finish_registration(
    State(app): State<App>,
    SourceIp(source_ip): SourceIp,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = super::lang_for(&jar, None);
    let answer = match parse_answer::<webauthn_rs::prelude::RegisterPublicKeyCredential>(&app, &headers, &jar, &body) {
        Ok(answer) => answer,
        Err(response) => return *response,
    };
    // A self-service enrollment needs the session; a replacement in the middle of a login has
    // none yet, and its ceremony says so.
    let session = match session_from_jar(&app, &jar).await {
        Ok(session) => session,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, lang, internal_msg(e.into())),
    };
    match ceremony::finish_registration(&app, session.as_ref(), &answer.ceremony, &answer.credential, app.clock.now())
        .await
    {
        Ok(ceremony::Enrolled { authorization_request_id: None, .. }) => go(jar, "/authenticators?enrolled=1"),
        Ok(ceremony::Enrolled { authenticator, authorization_request_id: Some(request_id) }) => {
            match replacement_login(&app, jar, lang, &authenticator, &request_id, source_ip).await {
                Ok(response) => response,
                Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, lang, internal_msg(e)),
            }
        }
        Err(CardError::Internal(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, lang, internal_msg(e)),
        Err(e) => json_error(StatusCode::BAD_REQUEST, lang, card_error_msg(&e)),
    }
}

/// The replacement card just enrolled completes the login that asked for it: the person gave
/// the right password (the ticket), the counter's enrollment code, and the new card with its PIN.
async fn replacement_login(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    card: &Authenticator,
    request_id: &str,
    source_ip: Option<String>,
) -> Result<Response, crate::Error> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let Some(account) = directory::account_of_person(&mut *tx, &card.person_id).await? else {
        return Ok(json_error(StatusCode::BAD_REQUEST, lang, Msg::CardFailed));
    };
    if !(account.account_active && account.person.may_log_in(directory::today_in_japan(now))) {
        return Ok(json_error(StatusCode::BAD_REQUEST, lang, Msg::CardFailed));
    }
    let (session, cookie) =
        open_card_session(app, &mut tx, &jar, &account, (&card.id, &AMR_PASSWORD_AND_CARD), source_ip.as_deref(), now)
            .await?;
    record_card_login(&mut tx, now, &card.id, &session, json!("replacement"), source_ip).await?;
    tx.commit().await?;
    complete_pending(app, with_new_session(app, jar, cookie), &session, Some(request_id)).await
}

/// The page asking a person whose card was stopped for a replacement, after the right password.
pub fn replacement_page(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    ticket: &str,
    client_name: Option<&str>,
    error: Option<Msg>,
    status: StatusCode,
) -> Response {
    let (jar, csrf_token) = csrf::issue(app, jar);
    let page = CardReplacePage {
        lang,
        switch_href: format!(
            "/login/card/replace?ticket={}&lang={}",
            super::login::urlencode(ticket),
            lang.other().code()
        ),
        csrf_token: &csrf_token,
        ticket,
        client_name,
        error,
    };
    (jar, pages::render(status, &page)).into_response()
}

#[derive(Deserialize)]
pub struct TicketQuery {
    ticket: Option<String>,
    lang: Option<String>,
}

/// The replacement page again (the language switch).
pub async fn replacement_form(State(app): State<App>, jar: CookieJar, Query(q): Query<TicketQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let ticket = q.ticket.unwrap_or_default();
    let found = if ticket.is_empty() || ticket.len() > 128 {
        Ok(None)
    } else {
        replacement::find_ticket(app.store.pool(), &ticket, app.clock.now()).await
    };
    match found {
        Ok(Some((_, request_id))) => match pending(&app, &request_id).await {
            Ok(Some((_, client_name))) => {
                replacement_page(&app, jar, lang, &ticket, client_name.as_deref(), None, StatusCode::OK)
            }
            Ok(None) => pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired),
            Err(e) => internal(lang, e),
        },
        Ok(None) => pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired),
        Err(e) => internal(lang, e),
    }
}

/// Starts enrolling the replacement card with the counter's enrollment code.
pub async fn start_replacement(State(app): State<App>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let ticket = form.field("ticket").unwrap_or_default().to_owned();
    let result = async {
        let now = app.clock.now();
        let found = if ticket.is_empty() || ticket.len() > 128 {
            None
        } else {
            replacement::find_ticket(app.store.pool(), &ticket, now).await?
        };
        let Some((person_id, request_id)) = found else {
            return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired));
        };
        let Some((_, client_name)) = pending(&app, &request_id).await? else {
            return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired));
        };
        let code = form.field("enrollment_code").unwrap_or("");
        let label = form.field("label").unwrap_or("");
        let number = form.field("management_number").unwrap_or("");
        match ceremony::start_replacement(&app, &person_id, &request_id, label, number, code, now).await {
            Ok((token, options)) => {
                // The ticket is spent once the ceremony exists; a failed card means logging in again.
                let mut tx = app.store.begin().await?;
                if !replacement::use_ticket(&mut tx, &ticket, now).await? {
                    return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired));
                }
                tx.commit().await?;
                Ok(card_page(
                    &app,
                    form.jar.clone(),
                    lang,
                    Msg::CardReplaceTitle,
                    client_name.as_deref(),
                    "register",
                    &token,
                    &options,
                ))
            }
            Err(CardError::Internal(e)) => Err(e),
            Err(e) => Ok(replacement_page(
                &app,
                form.jar.clone(),
                lang,
                &ticket,
                client_name.as_deref(),
                Some(card_error_msg(&e)),
                StatusCode::BAD_REQUEST,
            )),
        }
    }
    .await;
    result.unwrap_or_else(|e: crate::Error| internal(lang, e))
}

fn internal_msg(e: crate::Error) -> Msg {
    tracing::error!(error = %e, "card enrollment failed");
    Msg::InternalError
}

/// "Report lost" asks first: a lost card is stopped for good.
pub async fn confirm_lost(
    State(app): State<App>,
    Path(id): Path<String>,
    jar: CookieJar,
    Query(q): Query<RequestQuery>,
) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let found = async {
        let Some(session) = session_from_jar(&app, &jar).await? else { return Ok(None) };
        let card = authenticators::get(app.store.pool(), &id).await?;
        Ok::<_, crate::Error>(Some(card.filter(|c| c.person_id == session.person_id && c.is_active())))
    }
    .await;
    match found {
        Ok(None) => super::my::to_login("/authenticators"),
        Ok(Some(None)) => pages::error_page(lang, StatusCode::NOT_FOUND, Msg::BadForm),
        Ok(Some(Some(card))) => lost_confirm_page(&app, jar, lang, card),
        Err(e) => internal(lang, e),
    }
}

fn lost_confirm_page(app: &App, jar: CookieJar, lang: Lang, card: Authenticator) -> Response {
    let (jar, token) = csrf::issue(app, jar);
    let page = LostConfirmPage {
        lang,
        switch_href: format!("/authenticators/{}/lost?lang={}", card.id, lang.other().code()),
        csrf_token: &token,
        enrolled: crate::clock::japan_minute(card.created_at),
        card,
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}

enum Reported {
    NotMine,
    Unconfirmed(Box<Authenticator>),
    Stopped,
}

/// "My card is lost": the holder reports it, confirmed on the page before; the same
/// revocation as the hotline's.
pub async fn report_lost(State(app): State<App>, Path(id): Path<String>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let result = async {
        let Some(session) = session_from_jar(&app, &form.jar).await? else {
            return Ok(None);
        };
        let card = authenticators::get(app.store.pool(), &id).await?;
        let Some(card) = card.filter(|c| c.person_id == session.person_id) else {
            return Ok(Some((session, Reported::NotMine)));
        };
        if form.field("confirmed") != Some("yes") {
            return Ok(Some((session, Reported::Unconfirmed(Box::new(card)))));
        }
        let actor = Actor::Person(session.person_id.clone());
        // The same report as the hotline's, with its reference number; a card stopped
        // already (reported twice, or stopped otherwise) has nothing more to stop.
        match loss::report(&app.store, &actor, app.clock.now(), &card.id, "reported lost by its holder").await {
            Ok(_) | Err(LossError::Stopped) => {}
            Err(LossError::NotFound) => return Ok(Some((session, Reported::NotMine))),
            Err(LossError::Database(e)) => return Err(e.into()),
        }
        Ok::<_, crate::Error>(Some((session, Reported::Stopped)))
    }
    .await;
    match result {
        Ok(None) => super::my::to_login("/authenticators"),
        Ok(Some((_, Reported::NotMine))) => pages::error_page(lang, StatusCode::NOT_FOUND, Msg::BadForm),
        // Not confirmed (a form from elsewhere, or a script): ask, stop nothing.
        Ok(Some((_, Reported::Unconfirmed(card)))) => lost_confirm_page(&app, form.jar, lang, *card),
        Ok(Some((session, Reported::Stopped))) => {
            // The session may have been opened with that very card; then it has ended too.
            match sessions::is_live(app.store.pool(), app.clock.now(), &session.id).await {
                Ok(true) => cards_page(&app, form.jar, lang, &session, Some(Msg::CardLostDone), None).await,
                Ok(false) => {
                    let jar = form.jar.remove(Cookie::build(sessions::COOKIE_NAME).path("/").build());
                    (jar, pages::message_page(lang, StatusCode::OK, Msg::CardsTitle, Msg::CardLostDone, false))
                        .into_response()
                }
                Err(e) => internal(lang, e),
            }
        }
        Err(e) => internal(lang, e),
    }
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/webauthn.js"),
    )
}
