//! Password pages: the self-service change, the forced change when a password has expired
//! (the login completes only after it), and the one-time reset link an administrator issues.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use crate::audit::Actor;
use crate::directory;
use crate::login::{self, Attempt};
use crate::oidc::flow;
use crate::password::lockout::{self, Verdict};
use crate::password::policy::{self, ChangeReason, ChangeRefused, PasswordChange};
use crate::password::tickets::{self, Purpose};
use crate::sessions;
use crate::App;

use super::csrf::{self, CheckedForm};
use super::login::{choose_lang, finish_authorization, render_step};
use super::pages::{self, internal, PasswordPage};
use super::{session_from_jar, Lang, Msg, SourceIp};

fn lead_for(purpose: Purpose) -> Msg {
    match purpose {
        Purpose::Expired => Msg::PasswordExpiredLead,
        Purpose::Reset => Msg::ResetLead,
    }
}

/// A one-time-ticket page: the reset link (setting a password, perhaps the first) or the forced
/// change of an expired one. It names the login ID, which a new hire who got only the link
/// does not know yet.
#[allow(clippy::too_many_arguments)]
fn ticket_page(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    ticket: &str,
    purpose: Purpose,
    login_id: &str,
    errors: Vec<String>,
    status: StatusCode,
) -> Response {
    let (jar, token) = csrf::issue(app, jar);
    let page = PasswordPage {
        lang,
        switch_href: format!("/password/reset?ticket={}&lang={}", super::login::urlencode(ticket), lang.other().code()),
        csrf_token: &token,
        action: "/password/reset",
        lead: Some(lead_for(purpose)),
        errors,
        ask_current: false,
        ticket: Some(ticket),
        request_id: None,
        title: match purpose {
            Purpose::Reset => Msg::SetPasswordTitle,
            Purpose::Expired => Msg::ChangePasswordTitle,
        },
        login_id: Some(login_id),
        back_to_my_page: false,
    };
    (jar, pages::render(status, &page)).into_response()
}

/// The change form shown in place of a completed login when the password has expired.
pub fn forced_change_page(app: &App, jar: CookieJar, lang: Lang, ticket: &str, login_id: &str) -> Response {
    ticket_page(app, jar, lang, ticket, Purpose::Expired, login_id, Vec::new(), StatusCode::OK)
}

/// The login ID of a ticket's account.
async fn login_id_of(app: &App, account_id: &str) -> Result<String, crate::Error> {
    Ok(directory::get_login_account(app.store.pool(), account_id)
        .await?
        .ok_or(directory::DirectoryError::NotFound("account"))?
        .login_id)
}

#[derive(Deserialize)]
pub struct TicketQuery {
    ticket: Option<String>,
    lang: Option<String>,
}

pub async fn reset_page(State(app): State<App>, jar: CookieJar, Query(q): Query<TicketQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let ticket = q.ticket.unwrap_or_default();
    let found = async {
        let Some(found) = tickets::find(app.store.pool(), &ticket, app.clock.now()).await? else { return Ok(None) };
        let login_id = login_id_of(&app, &found.account_id).await?;
        Ok::<_, crate::Error>(Some((found.purpose, login_id)))
    }
    .await;
    match found {
        Ok(Some((purpose, login_id))) => {
            ticket_page(&app, jar, lang, &ticket, purpose, &login_id, Vec::new(), StatusCode::OK)
        }
        Ok(None) => (jar, pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::TicketInvalid)).into_response(),
        Err(e) => internal(lang, e),
    }
}

fn localised(lang: Lang, refused: &ChangeRefused, history: usize) -> Vec<String> {
    refused.messages(history).into_iter().map(|(ja, en)| if lang == Lang::Ja { ja } else { en }).collect()
}

pub async fn reset_submit(State(app): State<App>, SourceIp(source): SourceIp, form: CheckedForm) -> Response {
    let (jar, lang) = (form.jar.clone(), form.lang);
    let (Some(ticket), Some(new), Some(confirm)) =
        (form.field("ticket"), form.field("new_password"), form.field("confirm_password"))
    else {
        return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm);
    };
    let found = match tickets::find(app.store.pool(), ticket, app.clock.now()).await {
        Ok(Some(found)) => found,
        Ok(None) => return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::TicketInvalid),
        Err(e) => return internal(lang, e),
    };
    let result = async {
        let account = directory::get_login_account(app.store.pool(), &found.account_id)
            .await?
            .ok_or(directory::DirectoryError::NotFound("account"))?;
        let actor = Actor::Person(account.person.id.clone());
        let reason = match found.purpose {
            Purpose::Expired => ChangeReason::Expired,
            Purpose::Reset => ChangeReason::Reset,
        };
        let change = PasswordChange {
            account_id: &found.account_id,
            new_password: new,
            confirmation: confirm,
            reason,
            keep_session: None,
            ticket: Some(ticket),
        };
        if let Err(refused) = policy::change(&app, &actor, change, app.clock.now()).await? {
            if let ChangeRefused::TicketSpent = refused {
                return Ok(pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::TicketInvalid));
            }
            let errors = localised(lang, &refused, app.config.password.history);
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(ticket_page(&app, jar, lang, ticket, found.purpose, &account.login_id, errors, status));
        }
        let now = app.clock.now();
        let mut tx = app.store.begin().await?;
        // After an expired password is replaced, the interrupted login completes.
        let pending = match &found.request_id {
            Some(id) if found.purpose == Purpose::Expired => {
                flow::load_pending(&app, id, app.clock.now()).await?.map(|r| (id.clone(), r))
            }
            _ => None,
        };
        let Some((request_id, request)) = pending else {
            tx.commit().await?;
            let title = if found.purpose == Purpose::Reset { Msg::SetPasswordTitle } else { Msg::ChangePasswordTitle };
            return Ok(pages::message_page(lang, StatusCode::OK, title, Msg::PasswordChangedLogIn, false));
        };
        let account = directory::get_login_account(&mut *tx, &found.account_id)
            .await?
            .ok_or(directory::DirectoryError::NotFound("account"))?;
        // The new password replaces the old one, not the card: a card holder still shows it.
        let source = source.unwrap_or_else(|| "unknown".into());
        let previous_session = jar.get(sessions::COOKIE_NAME).map(|c| c.value().to_owned());
        let attempt = Attempt {
            login_id: &account.login_id,
            password: new,
            source: &source,
            previous_session: previous_session.as_deref(),
        };
        let step = login::after_password(&app, &mut tx, &account, &request, &request_id, &attempt, now).await?;
        tx.commit().await?;
        render_step(&app, jar, lang, &request, &request_id, &account.login_id, step).await
    }
    .await;
    result.unwrap_or_else(|e: crate::Error| internal(lang, e))
}

#[derive(Deserialize)]
pub struct ChangeQuery {
    request: Option<String>,
    lang: Option<String>,
}

fn change_page(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    request_id: Option<&str>,
    errors: Vec<String>,
    status: StatusCode,
) -> Response {
    let (jar, token) = csrf::issue(app, jar);
    let page = PasswordPage {
        lang,
        switch_href: format!("/password?lang={}", lang.other().code()),
        csrf_token: &token,
        action: "/password",
        lead: None,
        errors,
        ask_current: true,
        ticket: None,
        request_id,
        title: Msg::ChangePasswordTitle,
        login_id: None,
        back_to_my_page: request_id.is_none(),
    };
    (jar, pages::render(status, &page)).into_response()
}

pub async fn change_form(State(app): State<App>, jar: CookieJar, Query(q): Query<ChangeQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    match session_from_jar(&app, &jar).await {
        Ok(Some(_)) => change_page(&app, jar, lang, q.request.as_deref(), Vec::new(), StatusCode::OK),
        Ok(None) => super::my::to_login("/password"),
        Err(e) => internal(lang, e),
    }
}

pub async fn change_submit(State(app): State<App>, SourceIp(source): SourceIp, form: CheckedForm) -> Response {
    let (jar, lang) = (form.jar.clone(), form.lang);
    let (Some(current), Some(new), Some(confirm)) =
        (form.field("current_password"), form.field("new_password"), form.field("confirm_password"))
    else {
        return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm);
    };
    let request_id = form.field("request").filter(|r| r.len() <= 64);
    let result = async {
        let Some(session) = session_from_jar(&app, &jar).await? else {
            return Ok(pages::message_page(
                lang,
                StatusCode::UNAUTHORIZED,
                Msg::ChangePasswordTitle,
                Msg::NotLoggedIn,
                true,
            ));
        };
        let account = directory::get_login_account(app.store.pool(), &session.account_id)
            .await?
            .ok_or(directory::DirectoryError::NotFound("account"))?;
        let actor = Actor::Person(account.person.id.clone());
        let now = app.clock.now();
        match lockout::verify_password(&app, &account, current, "password.change", source.as_deref(), now).await? {
            Verdict::Right => {}
            Verdict::Wrong { .. } => {
                let errors = vec![Msg::CurrentPasswordWrong.text(lang).to_owned()];
                return Ok(change_page(&app, jar, lang, request_id, errors, StatusCode::UNPROCESSABLE_ENTITY));
            }
            Verdict::Locked { .. } => {
                let errors = vec![Msg::AccountPaused.text(lang).to_owned()];
                return Ok(change_page(&app, jar, lang, request_id, errors, StatusCode::TOO_MANY_REQUESTS));
            }
        }
        let change = PasswordChange {
            account_id: &account.account_id,
            new_password: new,
            confirmation: confirm,
            reason: ChangeReason::SelfService,
            keep_session: Some(&session.id),
            ticket: None,
        };
        let changed = policy::change(&app, &actor, change, now).await?;
        if let Err(refused) = changed {
            let errors = localised(lang, &refused, app.config.password.history);
            return Ok(change_page(&app, jar, lang, request_id, errors, StatusCode::UNPROCESSABLE_ENTITY));
        }
        if let Some(request_id) = request_id {
            if let Some(request) = flow::load_pending(&app, request_id, app.clock.now()).await? {
                return finish_authorization(&app, lang, &request, &session, request_id).await;
            }
        }
        Ok(pages::message_page(lang, StatusCode::OK, Msg::ChangePasswordTitle, Msg::PasswordChanged, false))
    }
    .await;
    result.unwrap_or_else(|e: crate::Error| internal(lang, e))
}
