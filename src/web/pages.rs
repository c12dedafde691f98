//! Server-rendered pages (askama templates, autoescaped).

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::i18n::{Lang, Msg};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: &'a str,
    pub request_id: &'a str,
    pub login_id: &'a str,
    pub client_name: Option<&'a str>,
    pub error: Option<Msg>,
    /// Offer "log in with an IC card" (WebAuthn is available).
    pub card_login: bool,
}

impl LoginPage<'_> {
    /// After a failed login the ID is already filled in: the cursor goes to the password.
    pub fn refocus_password(&self) -> bool {
        self.error.is_some() && !self.login_id.is_empty()
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub lang: Lang,
    pub switch_href: String,
    pub title: Msg,
    pub message: Msg,
    pub is_error: bool,
    /// Where the person can go from here (the login, the home page), if anywhere.
    pub link: Option<(&'static str, Msg)>,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub lang: Lang,
    pub switch_href: String,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: &'a str,
    pub action: &'a str,
    pub lead: Option<Msg>,
    pub errors: Vec<String>,
    pub ask_current: bool,
    pub ticket: Option<&'a str>,
    pub request_id: Option<&'a str>,
    /// The page's title: setting a password (a reset link, a first password) or changing one.
    pub title: Msg,
    /// The login ID the password is for, shown where the person may not know it yet (a reset
    /// link, a first login).
    pub login_id: Option<&'a str>,
    /// The person is logged in: the page links back to their page.
    pub back_to_my_page: bool,
}

#[derive(Template)]
#[template(path = "expires_soon.html")]
pub struct ExpiresSoonPage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: &'a str,
    pub request_id: &'a str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "end_session.html")]
pub struct EndSessionPage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: &'a str,
    pub client_name: Option<&'a str>,
    pub client_id: &'a str,
    pub post_logout_redirect_uri: &'a str,
    pub state: &'a str,
}

/// A page with a title and one message (and the way on that the message calls for).
pub fn message_page(lang: Lang, status: StatusCode, title: Msg, message: Msg, is_error: bool) -> Response {
    let switch_href = format!("/?lang={}", lang.other().code());
    render(status, &MessagePage { lang, switch_href, title, message, is_error, link: link_for(message) })
}

/// The way on from a message: a person who is told they are logged out, or that a login has
/// expired, is offered the login; one who is lost, the home page.
fn link_for(message: Msg) -> Option<(&'static str, Msg)> {
    match message {
        Msg::LoggedOut | Msg::NotLoggedIn | Msg::LoginRequestExpired | Msg::PasswordChangedLogIn => {
            Some(("/login", Msg::GoToLogin))
        }
        Msg::PageNotFound | Msg::CsrfFailed | Msg::AccountUnusable => Some(("/", Msg::GoHome)),
        Msg::PasswordChanged | Msg::CardLostDone => Some(("/my", Msg::BackToMyPage)),
        _ => None,
    }
}

/// Renders a page with the headers every page carries.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

pub fn error_page(lang: Lang, status: StatusCode, message: Msg) -> Response {
    let switch_href = format!("/?lang={}", lang.other().code());
    let title = Msg::ErrorTitle;
    render(status, &MessagePage { lang, switch_href, title, message, is_error: true, link: link_for(message) })
}

/// The one error of the pages: a message shown with its status, or an internal failure,
/// logged here, once, and shown as "internal error" (never its cause).
#[derive(Debug)]
pub struct PageError {
    pub lang: Lang,
    pub status: StatusCode,
    pub message: Msg,
    cause: Option<crate::Error>,
}

impl PageError {
    pub fn shown(lang: Lang, status: StatusCode, message: Msg) -> Self {
        PageError { lang, status, message, cause: None }
    }

    /// An internal failure; or, when the database gave way to another request changing the
    /// same records (`store::is_transient`: nothing was written), 503 asking to try again.
    pub fn internal(lang: Lang, cause: impl Into<crate::Error>) -> Self {
        let cause = cause.into();
        if cause.is_transient() {
            tracing::warn!(error = %cause, "page request gave way to another; answered 503");
            return PageError { lang, status: StatusCode::SERVICE_UNAVAILABLE, message: Msg::GaveWay, cause: None };
        }
        PageError { lang, status: StatusCode::INTERNAL_SERVER_ERROR, message: Msg::InternalError, cause: Some(cause) }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(error = %cause, "page failed");
        }
        let mut response = error_page(self.lang, self.status, self.message);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The page for an internal failure (see [`PageError`]).
pub fn internal(lang: Lang, cause: impl Into<crate::Error>) -> Response {
    PageError::internal(lang, cause).into_response()
}
