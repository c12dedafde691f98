//! Password pages: the self-service change, the forced change when a password has expired
//! (the login completes only after it), and the one-time reset link an administrator issues.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use sqlx::Row;

use crate::audit::Actor;
use crate::crypto;
use crate::directory;
use crate::oidc::authorize;
use crate::password::lockout::{self, Verdict};
use crate::password::policy::{self, ChangeReason, ChangeRefused};
use crate::store::Tx;
use crate::App;

use super::csrf::{self, CheckedForm};
use super::login::{
    card_gate, card_step, choose_lang, finish_authorization, replacement_step, start_session, with_new_session,
    CardGate,
};
use super::pages::{self, PasswordPage};
use super::{session_from_jar, Lang, Msg, SourceIp};

/// Lifetime of a ticket to replace an expired password during login.
const EXPIRED_TICKET_TTL: i64 = 600;
/// Lifetime of a reset link.
pub const RESET_TICKET_TTL: i64 = 86_400;

/// Creates a one-time ticket for setting a new password; only its hash is stored.
pub async fn issue_ticket(
    tx: &mut Tx,
    app: &App,
    account_id: &str,
    purpose: &str,
    request_id: Option<&str>,
    actor: &Actor,
) -> Result<String, sqlx::Error> {
    let ticket = crypto::random_token(32);
    let now = app.clock.now();
    let ttl = if purpose == "reset" { RESET_TICKET_TTL } else { EXPIRED_TICKET_TTL };
    sqlx::query(
        "INSERT INTO password_tickets (id, ticket_hash, account_id, purpose, authorization_request_id, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(crypto::sha256_hex(&ticket))
    .bind(account_id)
    .bind(purpose)
    .bind(request_id)
    .bind(format!("{actor:?}"))
    .bind(now)
    .bind(now + ttl)
    .execute(&mut **tx)
    .await?;
    Ok(ticket)
}

struct Ticket {
    account_id: String,
    purpose: String,
    request_id: Option<String>,
}

async fn find_ticket(app: &App, ticket: &str) -> Result<Option<Ticket>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT account_id, purpose, authorization_request_id FROM password_tickets
         WHERE ticket_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(crypto::sha256_hex(ticket))
    .bind(app.clock.now())
    .fetch_optional(app.store.pool())
    .await?;
    row.map(|r| {
        Ok(Ticket {
            account_id: r.try_get("account_id")?,
            purpose: r.try_get("purpose")?,
            request_id: r.try_get("authorization_request_id")?,
        })
    })
    .transpose()
}

fn ticket_page(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    ticket: &str,
    lead: Msg,
    errors: Vec<String>,
    status: StatusCode,
) -> Response {
    let (jar, token) = csrf::issue(app, jar);
    let page = PasswordPage {
        lang,
        switch_href: format!("/password/reset?ticket={}&lang={}", super::login::urlencode(ticket), lang.other().code()),
        csrf_token: &token,
        action: "/password/reset",
        lead: Some(lead),
        errors,
        ask_current: false,
        ticket: Some(ticket),
        request_id: None,
    };
    (jar, pages::render(status, &page)).into_response()
}

/// The change form shown in place of a completed login when the password has expired.
pub fn forced_change_page(app: &App, jar: CookieJar, lang: Lang, ticket: &str, errors: Vec<String>) -> Response {
    ticket_page(app, jar, lang, ticket, Msg::PasswordExpiredLead, errors, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct TicketQuery {
    ticket: Option<String>,
    lang: Option<String>,
}

pub async fn reset_page(State(app): State<App>, jar: CookieJar, Query(q): Query<TicketQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let ticket = q.ticket.unwrap_or_default();
    match find_ticket(&app, &ticket).await {
        Ok(Some(found)) => {
            let lead = if found.purpose == "expired" { Msg::PasswordExpiredLead } else { Msg::ResetLead };
            ticket_page(&app, jar, lang, &ticket, lead, Vec::new(), StatusCode::OK)
        }
        Ok(None) => (jar, pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::TicketInvalid)).into_response(),
        Err(e) => internal(lang, e),
    }
}

fn internal(lang: Lang, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "password page failed");
    pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError)
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
    let found = match find_ticket(&app, ticket).await {
        Ok(Some(found)) => found,
        Ok(None) => return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::TicketInvalid),
        Err(e) => return internal(lang, e),
    };
    let result = async {
        let account = directory::get_login_account(app.store.pool(), &found.account_id)
            .await?
            .ok_or(directory::DirectoryError::NotFound("account"))?;
        let actor = Actor::Person(account.person.id.clone());
        let reason = if found.purpose == "expired" { ChangeReason::Expired } else { ChangeReason::Reset };
        if let Err(refused) = policy::change(&app, &actor, &found.account_id, new, confirm, reason, None).await? {
            let lead = if found.purpose == "expired" { Msg::PasswordExpiredLead } else { Msg::ResetLead };
            let errors = localised(lang, &refused, app.config.password.history);
            return Ok(ticket_page(&app, jar, lang, ticket, lead, errors, StatusCode::UNPROCESSABLE_ENTITY));
        }
        let now = app.clock.now();
        let mut tx = app.store.begin().await?;
        sqlx::query("UPDATE password_tickets SET used_at = $1 WHERE ticket_hash = $2")
            .bind(now)
            .bind(crypto::sha256_hex(ticket))
            .execute(&mut *tx)
            .await?;
        // After an expired password is replaced, the interrupted login completes.
        let pending = match &found.request_id {
            Some(id) if found.purpose == "expired" => authorize::load_pending(&app, id).await?.map(|r| (id.clone(), r)),
            _ => None,
        };
        let Some((request_id, request)) = pending else {
            tx.commit().await?;
            return Ok(pages::message_page(
                lang,
                StatusCode::OK,
                Msg::ChangePasswordTitle,
                Msg::PasswordChangedLogIn,
                false,
            ));
        };
        let account = directory::get_login_account(&mut *tx, &found.account_id)
            .await?
            .ok_or(directory::DirectoryError::NotFound("account"))?;
        // The new password replaces the old one, not the card: a card holder still shows it.
        let source = source.unwrap_or_else(|| "unknown".into());
        match card_gate(&app, &mut tx, &account.person.id, &request, now).await? {
            CardGate::Card => {
                tx.commit().await?;
                return card_step(&app, jar, lang, &account.person.id, &request, &request_id).await;
            }
            CardGate::Replacement => {
                let page =
                    replacement_step(&app, &mut tx, jar, lang, &account, &request, &request_id, &source, now).await?;
                tx.commit().await?;
                return Ok(page);
            }
            CardGate::Pass => {}
        }
        let (session, cookie_value) = start_session(&app, &mut tx, &jar, &account, &request, &source, now).await?;
        tx.commit().await?;
        let jar = with_new_session(&app, jar, cookie_value);
        Ok((jar, finish_authorization(&app, lang, &request, &session, &request_id).await?).into_response())
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
    };
    (jar, pages::render(status, &page)).into_response()
}

pub async fn change_form(State(app): State<App>, jar: CookieJar, Query(q): Query<ChangeQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    match session_from_jar(&app, &jar).await {
        Ok(Some(_)) => change_page(&app, jar, lang, q.request.as_deref(), Vec::new(), StatusCode::OK),
        Ok(None) => {
            (jar, pages::message_page(lang, StatusCode::UNAUTHORIZED, Msg::ChangePasswordTitle, Msg::NotLoggedIn, true))
                .into_response()
        }
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
        let changed = policy::change(
            &app,
            &actor,
            &account.account_id,
            new,
            confirm,
            ChangeReason::SelfService,
            Some(&session.id),
        )
        .await?;
        if let Err(refused) = changed {
            let errors = localised(lang, &refused, app.config.password.history);
            return Ok(change_page(&app, jar, lang, request_id, errors, StatusCode::UNPROCESSABLE_ENTITY));
        }
        if let Some(request_id) = request_id {
            if let Some(request) = authorize::load_pending(&app, request_id).await? {
                return finish_authorization(&app, lang, &request, &session, request_id).await;
            }
        }
        Ok(pages::message_page(lang, StatusCode::OK, Msg::ChangePasswordTitle, Msg::PasswordChanged, false))
    }
    .await;
    result.unwrap_or_else(|e: crate::Error| internal(lang, e))
}
