//! The login page and what follows it: each outcome of `crate::login` rendered (the login form
//! again, the forced change, the card, the replacement card, the expiry warning, the redirect
//! to the consuming system); the home page and logout. A failed login says the same thing,
//! with the same status, whatever the reason.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

use crate::audit::Actor;
use crate::login::{self, Attempt, Step};
use crate::oidc::flow::{self, AuthorizationRequest};
use crate::password::PasswordError;
use crate::revocation::{self, Target};
use crate::sessions::{self, Session};
use crate::systems;
use crate::App;

use super::csrf::{self, CheckedForm};
use super::pages::{self, ExpiresSoonPage, HomePage, LoginPage};
use super::{lang_for, my, password, remember_lang, session_from_jar, Lang, Msg, SourceIp};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    request: Option<String>,
    lang: Option<String>,
    /// For a direct login: which of Sekimori's own pages to return to (`my::OWN_PAGES`).
    next: Option<String>,
}

pub(crate) fn secure(app: &App) -> bool {
    app.config.secure_cookies()
}

/// Picks the language and, when it was chosen explicitly, remembers it.
pub(super) fn choose_lang(app: &App, jar: CookieJar, explicit: Option<&str>) -> (CookieJar, Lang) {
    let lang = lang_for(&jar, explicit);
    match explicit.and_then(Lang::parse) {
        Some(chosen) => (remember_lang(jar, chosen, secure(app)), lang),
        None => (jar, lang),
    }
}

pub(super) fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub async fn login_page(State(app): State<App>, jar: CookieJar, Query(q): Query<LoginQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let Some(request_id) = q.request.filter(|r| !r.is_empty()) else {
        return direct_login_page(app, jar, lang, my::own_page(q.next.as_deref())).await;
    };
    let (client_name, login_hint) = match pending_client_name(&app, &request_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return (jar, pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired)).into_response()
        }
        Err(e) => return (jar, pages::internal(lang, e)).into_response(),
    };
    let login_hint = login_hint.unwrap_or_default();
    login_form(&app, jar, lang, &request_id, &login_hint, client_name.as_deref(), None, StatusCode::OK)
}

/// `/login` on its own: a direct login to Sekimori's own pages. A browser already logged in
/// goes straight there.
async fn direct_login_page(app: App, jar: CookieJar, lang: Lang, own_page: &'static str) -> Response {
    let result = async {
        if session_from_jar(&app, &jar).await?.is_some() {
            return Ok(None);
        }
        let request = AuthorizationRequest::direct(own_page);
        Ok::<_, crate::Error>(Some(flow::save_pending(&app, &request, app.clock.now()).await?))
    }
    .await;
    match result {
        Ok(None) => (jar, axum::response::Redirect::to(own_page)).into_response(),
        Ok(Some(request_id)) => login_form(&app, jar, lang, &request_id, "", None, None, StatusCode::OK),
        Err(e) => pages::internal(lang, e),
    }
}

/// The login form, first shown or shown again after a failure (`error`).
#[allow(clippy::too_many_arguments)]
fn login_form(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    request_id: &str,
    login_id: &str,
    client_name: Option<&str>,
    error: Option<Msg>,
    status: StatusCode,
) -> Response {
    let (jar, token) = csrf::issue(app, jar);
    let page = LoginPage {
        lang,
        switch_href: format!("/login?request={}&lang={}", urlencode(request_id), lang.other().code()),
        csrf_token: &token,
        request_id,
        // OIDC Core §3.1.2.1: login_hint pre-fills the login ID; it proves nothing.
        login_id,
        client_name,
        error,
        card_login: app.webauthn.is_some(),
    };
    (jar, pages::render(status, &page)).into_response()
}

/// The name of the system a pending request is for (None for a direct login to Sekimori),
/// and its login hint; None when there is no such pending request.
async fn pending_client_name(
    app: &App,
    request_id: &str,
) -> Result<Option<(Option<String>, Option<String>)>, crate::Error> {
    if request_id.is_empty() || request_id.len() > 64 {
        return Ok(None);
    }
    let Some(request) = flow::load_pending(app, request_id, app.clock.now()).await? else { return Ok(None) };
    let name = system_name(app, &request).await?;
    if name.is_none() && !request.direct {
        // The system was removed while the login was pending.
        return Ok(None);
    }
    Ok(Some((name, request.login_hint.filter(|h| h.chars().count() <= 64))))
}

/// The name of the consuming system a request is for; None for a direct login.
pub(super) async fn system_name(app: &App, request: &AuthorizationRequest) -> Result<Option<String>, crate::Error> {
    match request.system() {
        Some(client_id) => Ok(systems::get(&app.store, client_id).await?.map(|c| c.name)),
        None => Ok(None),
    }
}

pub async fn login_submit(State(app): State<App>, SourceIp(source_ip): SourceIp, form: CheckedForm) -> Response {
    let lang = form.lang;
    let (Some(request_id), Some(login_id), Some(password)) =
        (form.field("request"), form.field("login_id"), form.field("password"))
    else {
        return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm);
    };
    if login_id.len() > 256 || password.len() > 1024 {
        return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm);
    }
    let source = source_ip.unwrap_or_else(|| "unknown".into());
    let jar = form.jar.clone();
    let previous_session = jar.get(sessions::COOKIE_NAME).map(|c| c.value().to_owned());
    let attempt = Attempt { login_id, password, source: &source, previous_session: previous_session.as_deref() };
    let result = async {
        let now = app.clock.now();
        let Some(request) = flow::load_pending(&app, request_id, now).await? else {
            return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired));
        };
        let step = login::with_password(&app, &request, request_id, &attempt, now).await?;
        render_step(&app, jar, lang, &request, request_id, login_id, step).await
    }
    .await;
    match result {
        Ok(response) => response,
        Err(crate::Error::Password(PasswordError::Busy)) => {
            let mut response = pages::error_page(lang, StatusCode::SERVICE_UNAVAILABLE, Msg::Busy);
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
            response
        }
        Err(e) => pages::internal(lang, e),
    }
}

/// The page (or redirect) for what a login step came to.
pub(super) async fn render_step(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    request: &AuthorizationRequest,
    request_id: &str,
    login_id: &str,
    step: Step,
) -> Result<Response, crate::Error> {
    let client_name = || async { system_name(app, request).await };
    match step {
        Step::Refused => login_form_again(app, jar, lang, request, request_id, login_id).await,
        Step::Throttled { retry_after } => {
            let mut response = pages::error_page(lang, StatusCode::TOO_MANY_REQUESTS, Msg::TooManyAttempts);
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from(retry_after));
            Ok(response)
        }
        Step::MustChange { ticket } => Ok(password::forced_change_page(app, jar, lang, &ticket, login_id)),
        Step::Card { person_id } => {
            let name = client_name().await?;
            super::cards::second_factor_page(app, jar, lang, &person_id, request_id, name.as_deref()).await
        }
        Step::Replacement { ticket } => {
            let name = client_name().await?;
            Ok(super::cards::replacement_page(app, jar, lang, &ticket, name.as_deref(), None, StatusCode::OK))
        }
        Step::LoggedIn { session, cookie, expires_in_days } => {
            let jar = with_new_session(app, jar, cookie);
            if let Some(days_left) = expires_in_days {
                return Ok(expires_soon_page(app, jar, lang, request_id, days_left));
            }
            Ok((jar, finish_authorization(app, lang, request, &session, request_id).await?).into_response())
        }
    }
}

/// The warning shown in place of the redirect while the password expires soon.
fn expires_soon_page(app: &App, jar: CookieJar, lang: Lang, request_id: &str, days_left: i64) -> Response {
    let (jar, token) = csrf::issue(app, jar);
    let message = match lang {
        Lang::Ja => {
            format!("パスワードの有効期限まであと{days_left}日です。期限が切れるとログインの前に変更が必要になります。")
        }
        Lang::En => {
            format!("Your password expires in {days_left} days. After that you must change it before logging in.")
        }
    };
    let page = ExpiresSoonPage {
        lang,
        switch_href: format!("/login?request={}&lang={}", urlencode(request_id), lang.other().code()),
        csrf_token: &token,
        request_id,
        message,
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}

async fn login_form_again(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    request: &AuthorizationRequest,
    request_id: &str,
    login_id: &str,
) -> Result<Response, crate::Error> {
    let client_name = system_name(app, request).await?;
    let error = Some(Msg::LoginFailed);
    Ok(login_form(app, jar, lang, request_id, login_id, client_name.as_deref(), error, StatusCode::UNAUTHORIZED))
}

/// Issues the code for the pending request and sends the browser back to the consuming system.
pub(super) async fn finish_authorization(
    app: &App,
    lang: Lang,
    request: &AuthorizationRequest,
    session: &Session,
    request_id: &str,
) -> Result<Response, crate::Error> {
    let completed = flow::complete(app, request, session, Some(request_id), app.clock.now()).await;
    Ok(super::authorize::respond(app, lang, completed))
}

/// Sets the cookie of a session just opened, and rotates the CSRF secret with it.
pub(super) fn with_new_session(app: &App, jar: CookieJar, value: String) -> CookieJar {
    csrf::rotate(app, jar.add(session_cookie(app, value)))
}

fn session_cookie(app: &App, value: String) -> Cookie<'static> {
    // Lax, not Strict: the browser must send it when a consuming system redirects here.
    Cookie::build((sessions::COOKIE_NAME, value))
        .path("/")
        .http_only(true)
        .secure(secure(app))
        .same_site(SameSite::Lax)
        .build()
}

/// "Continue without changing" after the expiry warning: completes the pending request.
pub async fn continue_login(State(app): State<App>, form: CheckedForm) -> Response {
    let (jar, lang) = (&form.jar, form.lang);
    let request_id = form.field("request").unwrap_or_default().to_owned();
    let result = async {
        let session = session_from_jar(&app, jar).await?;
        let request = flow::load_pending(&app, &request_id, app.clock.now()).await?;
        match (session, request) {
            (Some(session), Some(request)) => finish_authorization(&app, lang, &request, &session, &request_id).await,
            _ => Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired)),
        }
    }
    .await;
    result.unwrap_or_else(|e| pages::internal(lang, e))
}

/// The top page: a logged-in person goes to their page; anyone else is offered the login.
pub async fn home(State(app): State<App>, jar: CookieJar, Query(q): Query<LoginQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    match session_from_jar(&app, &jar).await {
        Ok(Some(_)) => (jar, axum::response::Redirect::to("/my")).into_response(),
        Ok(None) => {
            let page = HomePage { lang, switch_href: format!("/?lang={}", lang.other().code()) };
            (jar, pages::render(StatusCode::OK, &page)).into_response()
        }
        Err(e) => pages::internal(lang, e),
    }
}

/// "Log out" on マイページ: ends this browser's session (RP-initiated logout is
/// `web::logout`).
pub async fn logout(State(app): State<App>, form: CheckedForm) -> Response {
    let (jar, lang) = (form.jar, form.lang);
    let result = async {
        if let Some(session) = session_from_jar(&app, &jar).await? {
            let now = app.clock.now();
            let mut tx = app.store.begin().await?;
            revocation::revoke(
                &mut tx,
                &Actor::Person(session.person_id.clone()),
                now,
                Target::Session(&session.id),
                "logout",
            )
            .await?;
            tx.commit().await?;
        }
        Ok::<_, crate::Error>(())
    }
    .await;
    if let Err(e) = result {
        return pages::internal(lang, e);
    }
    let jar = jar.remove(Cookie::build(sessions::COOKIE_NAME).path("/").build());
    (jar, pages::message_page(lang, StatusCode::OK, Msg::LogoutButton, Msg::LoggedOut, false)).into_response()
}
