//! The login page. A failed login says the same thing, with the same status, whether the
//! login ID exists or not, whether the account is locked, and whatever the reason; an unknown
//! ID still costs one argon2 verification.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

use crate::access::clients;
use crate::audit::{self, Actor, Event, Outcome};
use crate::authenticators::replacement::{self, CardState};
use crate::directory::{self, LoginAccount, LoginId};
use crate::oidc::authorize::{self, AuthorizationRequest};
use crate::password::policy::{self, Expiry};
use crate::password::{lockout, PasswordError};
use crate::revocation::{self, Target};
use crate::sessions::{self, Session};
use crate::App;

use super::csrf::{self, CheckedForm};
use super::pages::{self, ExpiresSoonPage, HomePage, LoginPage};
use super::{lang_for, password, remember_lang, session_from_jar, Lang, Msg, SourceIp};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    request: Option<String>,
    lang: Option<String>,
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
    let request_id = q.request.unwrap_or_default();
    let (client_name, login_hint) = match pending_client_name(&app, &request_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return (jar, pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "login page failed");
            return (jar, pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError))
                .into_response();
        }
    };
    let (jar, token) = csrf::issue(&app, jar);
    let page = LoginPage {
        lang,
        switch_href: format!("/login?request={}&lang={}", urlencode(&request_id), lang.other().code()),
        csrf_token: &token,
        request_id: &request_id,
        // OIDC Core §3.1.2.1: login_hint pre-fills the login ID; it proves nothing.
        login_id: login_hint.as_deref().unwrap_or(""),
        client_name: Some(&client_name),
        error: None,
        card_login: app.webauthn.is_some(),
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}

/// The name of the system a pending request is for, and its login hint.
async fn pending_client_name(app: &App, request_id: &str) -> Result<Option<(String, Option<String>)>, crate::Error> {
    if request_id.is_empty() || request_id.len() > 64 {
        return Ok(None);
    }
    let Some(request) = authorize::load_pending(app, request_id).await? else { return Ok(None) };
    let hint = request.login_hint.filter(|h| h.chars().count() <= 64);
    Ok(clients::get(&app.store, &request.client_id).await?.map(|c| (c.name, hint)))
}

/// The credentials from the login form, checked for shape only.
struct Attempt<'a> {
    request_id: &'a str,
    login_id: &'a str,
    password: &'a str,
    source: String,
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
    let attempt = Attempt { request_id, login_id, password, source: source_ip.unwrap_or_else(|| "unknown".into()) };
    match attempt_login(&app, form.jar.clone(), lang, attempt).await {
        Ok(response) => response,
        Err(crate::Error::Password(PasswordError::Busy)) => {
            let mut response = pages::error_page(lang, StatusCode::SERVICE_UNAVAILABLE, Msg::Busy);
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "login failed internally");
            pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError)
        }
    }
}

async fn attempt_login(app: &App, jar: CookieJar, lang: Lang, attempt: Attempt<'_>) -> Result<Response, crate::Error> {
    let Some(request) = authorize::load_pending(app, attempt.request_id).await? else {
        return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired));
    };
    let config = &app.config.password;
    let now = app.clock.now();
    if lockout::source_blocked(&app.store, config, &attempt.source, now).await? {
        record_failure(app, None, &attempt, now, "source address throttled").await?;
        let mut response = pages::error_page(lang, StatusCode::TOO_MANY_REQUESTS, Msg::TooManyAttempts);
        let retry = axum::http::HeaderValue::from(config.source_window_seconds);
        response.headers_mut().insert("retry-after", retry);
        return Ok(response);
    }
    let parsed = LoginId::parse(attempt.login_id).ok();
    let account = match &parsed {
        Some(id) => directory::find_login_account(&app.store, id).await?,
        None => None,
    };
    // Always one argon2 verification, against a dummy hash when there is no account.
    let password_ok =
        app.hasher.verify(attempt.password.to_owned(), account.as_ref().and_then(|a| a.password_hash.clone())).await?;
    let refusal = match &account {
        None => Some("unknown login ID"),
        Some(a) if a.locked_until.is_some_and(|until| until > now) => Some("account locked"),
        Some(_) if !password_ok => Some("wrong password"),
        Some(a) if !(a.account_active && a.person.may_log_in(directory::today_in_japan(now))) => {
            Some("account or person not active")
        }
        Some(_) => None,
    };
    let (Some(account), None) = (account.as_ref(), refusal) else {
        record_failure(app, account.as_ref(), &attempt, now, refusal.unwrap_or("refused")).await?;
        return login_form_again(app, jar, lang, &request, &attempt).await;
    };
    // A hash made with older parameters is replaced while the password is at hand.
    let rehash = match &account.password_hash {
        Some(stored) if app.hasher.needs_rehash(stored) => Some(app.hasher.hash(attempt.password.to_owned()).await?),
        _ => None,
    };
    let expiry =
        policy::expiry(config, account.person.kind, account.password_changed_at, account.must_change_password, now);
    let mut tx = app.store.begin().await?;
    lockout::account_succeeded(&mut tx, &account.account_id).await?;
    if let Some(hash) = &rehash {
        sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(&account.account_id)
            .execute(&mut *tx)
            .await?;
    }
    if expiry == Expiry::MustChange {
        // R10: the login does not complete, and no code is issued, until the password is changed.
        let ticket = password::issue_ticket(
            &mut tx,
            app,
            &account.account_id,
            "expired",
            Some(attempt.request_id),
            &Actor::Person(account.person.id.clone()),
        )
        .await?;
        record_password_step(
            &mut tx,
            now,
            account,
            Outcome::Failure,
            serde_json::json!({"reason": "password change required"}),
            &attempt.source,
        )
        .await?;
        tx.commit().await?;
        return Ok(password::forced_change_page(app, jar, lang, &ticket, Vec::new()));
    }
    // A person who holds a card uses it after the password (R13); no session exists until the
    // card has answered.
    let gate = card_gate(app, &mut tx, &account.person.id, &request, now).await?;
    if let CardGate::Replacement = gate {
        let page =
            replacement_step(app, &mut tx, jar, lang, account, &request, attempt.request_id, &attempt.source, now)
                .await?;
        tx.commit().await?;
        return Ok(page);
    }
    if let CardGate::Card = gate {
        record_password_step(
            &mut tx,
            now,
            account,
            Outcome::Success,
            serde_json::json!({"client_id": request.client_id, "next": "card"}),
            &attempt.source,
        )
        .await?;
        tx.commit().await?;
        return card_step(app, jar, lang, &account.person.id, &request, attempt.request_id).await;
    }
    let (session, cookie_value) = start_session(app, &mut tx, &jar, account, &request, &attempt.source, now).await?;
    tx.commit().await?;
    let jar = with_new_session(app, jar, cookie_value);
    if let Expiry::ExpiresSoon { days_left } = expiry {
        let (jar, token) = csrf::issue(app, jar);
        let message = match lang {
            Lang::Ja => format!(
                "パスワードの有効期限まであと{days_left}日です。期限が切れるとログインの前に変更が必要になります。"
            ),
            Lang::En => {
                format!("Your password expires in {days_left} days. After that you must change it before logging in.")
            }
        };
        let page = ExpiresSoonPage {
            lang,
            switch_href: format!("/login?request={}&lang={}", urlencode(attempt.request_id), lang.other().code()),
            csrf_token: &token,
            request_id: attempt.request_id,
            message,
        };
        return Ok((jar, pages::render(StatusCode::OK, &page)).into_response());
    }
    Ok((jar, finish_authorization(app, lang, &request, &session, attempt.request_id).await?).into_response())
}

/// What must follow a correct password.
pub(super) enum CardGate {
    /// Nothing: the login completes.
    Pass,
    /// The person's card: the policy asks for it always, or the consuming system asked.
    Card,
    /// A replacement card: the person's card was stopped, and a stopped card never leaves its
    /// holder with the password alone (unless a temporary exception was granted).
    Replacement,
}

/// The card gate of every password login (the login form and the forced change alike).
pub(super) async fn card_gate(
    app: &App,
    tx: &mut crate::store::Tx,
    person_id: &str,
    request: &AuthorizationRequest,
    now: i64,
) -> Result<CardGate, crate::Error> {
    if app.webauthn.is_none() {
        return Ok(CardGate::Pass);
    }
    let require = app.config.webauthn.require_card_when_enrolled;
    Ok(match replacement::card_state(&mut **tx, person_id).await? {
        CardState::Active if require || request.needs_card() => CardGate::Card,
        CardState::Stopped if require => match replacement::live_exception(tx, person_id, now).await? {
            Some(exception) => {
                audit::record(
                    tx,
                    now,
                    Event {
                        actor: &Actor::Person(person_id.to_owned()),
                        action: "login.password_only_exception",
                        target: format!("person:{person_id}"),
                        outcome: Outcome::Success,
                        detail: serde_json::json!({"exception": exception, "client_id": request.client_id}),
                        source_ip: None,
                    },
                )
                .await?;
                CardGate::Pass
            }
            None => CardGate::Replacement,
        },
        _ => CardGate::Pass,
    })
}

/// After the right password, a person whose card was stopped is asked for a replacement; no
/// session exists until the new card has answered.
#[allow(clippy::too_many_arguments)]
pub(super) async fn replacement_step(
    app: &App,
    tx: &mut crate::store::Tx,
    jar: CookieJar,
    lang: Lang,
    account: &LoginAccount,
    request: &AuthorizationRequest,
    request_id: &str,
    source: &str,
    now: i64,
) -> Result<Response, crate::Error> {
    record_password_step(
        tx,
        now,
        account,
        Outcome::Failure,
        serde_json::json!({"reason": "card stopped: a replacement card is needed", "client_id": request.client_id}),
        source,
    )
    .await?;
    let ticket = replacement::issue_ticket(tx, now, &account.person.id, request_id).await?;
    let client_name = clients::get(&app.store, &request.client_id).await?.map(|c| c.name);
    Ok(super::cards::replacement_page(app, jar, lang, &ticket, client_name.as_deref(), None, StatusCode::OK))
}

/// The card page that completes a login after the password.
pub(super) async fn card_step(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    person_id: &str,
    request: &AuthorizationRequest,
    request_id: &str,
) -> Result<Response, crate::Error> {
    let client_name = clients::get(&app.store, &request.client_id).await?.map(|c| c.name);
    super::cards::second_factor_page(app, jar, lang, person_id, request_id, client_name.as_deref()).await
}

/// A new login replaces the browser's session: the earlier one (whoever's it was, idle or not)
/// ends through the revocation module, with its tokens and the logout notices it owes, so that
/// its cookie can obtain nothing more.
pub(super) async fn end_previous_session(
    tx: &mut crate::store::Tx,
    jar: &CookieJar,
    actor: &Actor,
    now: i64,
) -> Result<(), crate::Error> {
    let Some(cookie) = jar.get(sessions::COOKIE_NAME) else { return Ok(()) };
    if let Some(id) = sessions::id_of_cookie(&mut **tx, cookie.value()).await? {
        revocation::revoke(tx, actor, now, Target::Session(&id), "replaced by a new login in the same browser").await?;
    }
    Ok(())
}

/// Starts the SSO session for a successful login, with its audit event, in `tx`; the browser's
/// earlier session ends.
pub(super) async fn start_session(
    app: &App,
    tx: &mut crate::store::Tx,
    jar: &CookieJar,
    account: &LoginAccount,
    request: &AuthorizationRequest,
    source: &str,
    now: i64,
) -> Result<(Session, String), crate::Error> {
    end_previous_session(tx, jar, &Actor::Person(account.person.id.clone()), now).await?;
    let (session, cookie_value) = sessions::create(
        tx,
        &app.config.session,
        now,
        sessions::NewSession {
            person_id: &account.person.id,
            account_id: &account.account_id,
            amr: &["pwd"],
            acr: crate::oidc::claims::ACR_PASSWORD,
            authenticator_id: None,
        },
    )
    .await?;
    record_password_step(
        tx,
        now,
        account,
        Outcome::Success,
        serde_json::json!({"sid": session.id, "client_id": request.client_id}),
        source,
    )
    .await?;
    Ok((session, cookie_value))
}

/// The audit event of a step of a password login for a known account.
async fn record_password_step(
    tx: &mut crate::store::Tx,
    now: i64,
    account: &LoginAccount,
    outcome: Outcome,
    detail: serde_json::Value,
    source: &str,
) -> Result<(), sqlx::Error> {
    let event = Event {
        actor: &Actor::Person(account.person.id.clone()),
        action: "login.password",
        target: format!("account:{}", account.account_id),
        outcome,
        detail,
        source_ip: Some(source.to_owned()),
    };
    audit::record(tx, now, event).await
}

/// Counts and audits a failed attempt; the caller answers with the same page whatever the reason.
async fn record_failure(
    app: &App,
    account: Option<&LoginAccount>,
    attempt: &Attempt<'_>,
    now: i64,
    reason: &str,
) -> Result<(), crate::Error> {
    let config = &app.config.password;
    let mut tx = app.store.begin().await?;
    lockout::source_failed(&mut tx, config, &attempt.source, now).await?;
    let mut locked_until = None;
    if let Some(account) = account.filter(|a| a.locked_until.is_none_or(|until| until <= now)) {
        locked_until = lockout::account_failed(&mut tx, config, &account.account_id, now).await?;
    }
    let login_id =
        LoginId::parse(attempt.login_id).map(|l| l.as_str().to_owned()).unwrap_or_else(|_| "(invalid)".into());
    audit::record(
        &mut tx,
        now,
        Event {
            actor: &Actor::Anonymous,
            action: "login.password",
            target: format!("login_id:{login_id}"),
            outcome: Outcome::Failure,
            detail: serde_json::json!({"reason": reason, "locked_until": locked_until}),
            source_ip: Some(attempt.source.clone()),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn login_form_again(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    request: &AuthorizationRequest,
    attempt: &Attempt<'_>,
) -> Result<Response, crate::Error> {
    let (jar, token) = csrf::issue(app, jar);
    let client_name = clients::get(&app.store, &request.client_id).await?.map(|c| c.name);
    let page = LoginPage {
        lang,
        switch_href: format!("/login?request={}&lang={}", urlencode(attempt.request_id), lang.other().code()),
        csrf_token: &token,
        request_id: attempt.request_id,
        login_id: attempt.login_id,
        client_name: client_name.as_deref(),
        error: Some(Msg::LoginFailed),
        card_login: app.webauthn.is_some(),
    };
    Ok((jar, pages::render(StatusCode::UNAUTHORIZED, &page)).into_response())
}

/// Issues the code for the pending request and sends the browser back to the consuming system.
pub(super) async fn finish_authorization(
    app: &App,
    lang: Lang,
    request: &AuthorizationRequest,
    session: &Session,
    request_id: &str,
) -> Result<Response, crate::Error> {
    Ok(match authorize::complete(app, request, session, Some(request_id)).await {
        Ok(response) => response,
        Err(error) => authorize::error_response(app, lang, error),
    })
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
        let request = authorize::load_pending(&app, &request_id).await?;
        match (session, request) {
            (Some(session), Some(request)) => finish_authorization(&app, lang, &request, &session, &request_id).await,
            _ => Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired)),
        }
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "continue after login failed");
        pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError)
    })
}

pub async fn home(State(app): State<App>, jar: CookieJar, Query(q): Query<LoginQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let session = match session_from_jar(&app, &jar).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "home page failed");
            return pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError);
        }
    };
    let person = match &session {
        Some(s) => directory::get_person(app.store.pool(), &s.person_id).await.ok().flatten(),
        None => None,
    };
    let name = person.map(|p| p.full_name());
    let (jar, token) = csrf::issue(&app, jar);
    let page = HomePage {
        lang,
        switch_href: format!("/?lang={}", lang.other().code()),
        person_name: name.as_deref(),
        csrf_token: &token,
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}

/// Ends this browser's session (RP-initiated logout arrives with the lifecycle issue).
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
        tracing::error!(error = %e, "logout failed");
        return pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError);
    }
    let jar = jar.remove(Cookie::build(sessions::COOKIE_NAME).path("/").build());
    (jar, pages::message_page(lang, StatusCode::OK, Msg::LogoutButton, Msg::LoggedOut, false)).into_response()
}
