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

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub lang: Lang,
    pub switch_href: String,
    pub title: Msg,
    pub message: Msg,
    pub is_error: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub lang: Lang,
    pub switch_href: String,
    pub person_name: Option<&'a str>,
    pub csrf_token: &'a str,
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

/// A page with a title and one message.
pub fn message_page(lang: Lang, status: StatusCode, title: Msg, message: Msg, is_error: bool) -> Response {
    render(
        status,
        &MessagePage { lang, switch_href: format!("/?lang={}", lang.other().code()), title, message, is_error },
    )
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
    render(
        status,
        &MessagePage {
            lang,
            switch_href: format!("/?lang={}", lang.other().code()),
            title: Msg::ErrorTitle,
            message,
            is_error: true,
        },
    )
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

    pub fn internal(lang: Lang, cause: impl Into<crate::Error>) -> Self {
        PageError {
            lang,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: Msg::InternalError,
            cause: Some(cause.into()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(error = %cause, "page failed");
        }
        error_page(self.lang, self.status, self.message)
    }
}

/// The page for an internal failure (see [`PageError`]).
pub fn internal(lang: Lang, cause: impl Into<crate::Error>) -> Response {
    PageError::internal(lang, cause).into_response()
}
