//! The admin console: server-rendered pages on the admin listener for the people who administer
//! Sekimori (R7, R8). A person logs in with a card through Sekimori's own authorization endpoint
//! (`login`); what each page offers follows the rights their administrative roles give today
//! (`super::roles`), read again at every request. Every change goes through the same domain
//! functions as the JSON API. Japanese first, English available; no script; strict CSP.

pub mod login;
mod operations;
mod pages;
pub mod session;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::crypto;
use crate::directory;
use crate::web::i18n::Lang;
use crate::App;

use super::auth::Principal;
use super::problem::Problem;
use super::rights::Right;
use super::roles::AdminRole;
use session::ConsoleSession;

/// The console's pages.
pub fn router() -> Router<App> {
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/login", get(login::start))
        .route("/console/callback", get(login::callback))
        .route("/console/logout", post(login::logout))
        .route("/console/roles", get(pages::roles).post(pages::grant_role))
        .route("/console/roles/{id}/end", post(pages::end_role))
        .route("/console/hotline", get(pages::hotline))
        .route("/console/hotline/{id}/lost", post(pages::report_lost))
        .route("/console/people", get(pages::people))
        .route("/console/people/{id}", get(pages::person))
        .route("/console/audit", get(pages::audit))
        .route("/console/emergency", get(operations::emergency).post(operations::stop))
        .route("/console/emergency/{id}/lift", post(operations::lift))
        .route("/console/reports", get(operations::reports))
        .route("/console/systems", get(operations::systems).post(operations::register))
        .route("/console/hr", get(operations::hr))
        .route("/console/hr/{id}", post(operations::decide_batch))
        .route("/console/console.css", get(style))
}

/// No script runs on the console; forms post only to it; nothing frames it.
const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")],
        concat!(include_str!("../../../static/sekimori.css"), include_str!("../../../static/console.css")),
    )
}

/// The page language: `?lang=` when given (remembered in a cookie), else the cookie, else the
/// browser's first preference, else Japanese.
pub fn lang_of(parts_headers: &axum::http::HeaderMap, query: Option<&str>) -> Lang {
    let from_query = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lang").and_then(|(_, v)| Lang::parse(&v))
    });
    let from_cookie = cookie_named(parts_headers, LANG_COOKIE).and_then(|value| Lang::parse(&value));
    let from_browser = parts_headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|tag| Lang::parse(tag.split(';').next().unwrap_or("")));
    from_query.or(from_cookie).or(from_browser).unwrap_or(Lang::Ja)
}

const LANG_COOKIE: &str = "sekimori_console_lang";

/// The value of the cookie `name` in a request, if any.
pub fn cookie_named(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// A person logged in to the console, with what their roles allow today.
pub struct Console {
    pub session: ConsoleSession,
    pub principal: Principal,
    pub roles: Vec<AdminRole>,
    pub name: String,
    pub lang: Lang,
    /// The path and query asked for, for the language switch.
    pub path: String,
}

impl Console {
    pub fn holds(&self, right: Right) -> bool {
        self.principal.holds(right)
    }
    /// Refuses the page unless the person holds `right`.
    pub fn require(&self, right: Right) -> Result<(), PageError> {
        if self.holds(right) {
            Ok(())
        } else {
            Err(PageError::new(self.lang, StatusCode::FORBIDDEN, None))
        }
    }
    /// Refuses a form not carrying this session's CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PageError> {
        if crypto::ct_eq(sent.as_bytes(), self.session.csrf_token.as_bytes()) {
            Ok(())
        } else {
            Err(PageError::new(self.lang, StatusCode::FORBIDDEN, Some("the form has expired: open the page again".into())))
        }
    }
    /// The frame every page is drawn in.
    pub fn frame(&self, title: &'static str, title_en: &'static str) -> Frame {
        let l = self.lang;
        let mut nav = vec![NavItem { href: "/console", label: l.pick("ホーム", "Home") }];
        let sections: [(Right, &'static str, &'static str, &'static str); 8] = [
            (Right::AdminRolesGrant, "/console/roles", "管理者権限", "Administrative roles"),
            (Right::EmergencyStop, "/console/emergency", "緊急停止", "Emergency stop"),
            (Right::Hotline, "/console/hotline", "紛失受付", "Lost-card hotline"),
            (Right::DirectoryRead, "/console/people", "職員", "People"),
            (Right::ClientsRead, "/console/systems", "業務システム", "Consuming systems"),
            (Right::HrAdmin, "/console/hr", "人事連携", "HR feed"),
            (Right::AuditRead, "/console/audit", "アクセス記録", "Access records"),
            (Right::ReportsRead, "/console/reports", "報告", "Reports"),
        ];
        for (right, href, ja, en) in sections {
            if self.holds(right) {
                nav.push(NavItem { href, label: l.pick(ja, en) });
            }
        }
        Frame {
            lang: l,
            title: l.pick(title, title_en),
            user_name: self.name.clone(),
            csrf: self.session.csrf_token.clone(),
            nav,
            switch_href: switch_href(&self.path, l.other()),
        }
    }
}

/// The link to the same page in `to`.
fn switch_href(path: &str, to: Lang) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut kept: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "lang").map(|(k, v)| (k.into(), v.into())).collect();
    kept.push(("lang".into(), to.code().into()));
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish();
    format!("{base}?{query}")
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
}

/// What the console's base template needs.
pub struct Frame {
    pub lang: Lang,
    pub title: &'static str,
    pub user_name: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub switch_href: String,
}

impl FromRequestParts<App> for Console {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let lang = lang_of(&parts.headers, parts.uri.query());
        let not_logged_in = || PageError { lang, status: StatusCode::UNAUTHORIZED, detail: None, login: true };
        let token = session::cookie_value(&parts.headers).ok_or_else(not_logged_in)?;
        let session = session::lookup(app, &token).await.page(lang)?;
        let session = session.ok_or_else(not_logged_in)?;
        let Some((principal, roles)) =
            session::principal(app, &session).await.page(lang)?
        else {
            // The roles ended while the session was open: nothing is allowed any more.
            return Err(PageError::new(lang, StatusCode::FORBIDDEN, Some(no_role_text(lang).into())));
        };
        let person = directory::get_person(app.store.pool(), &session.person_id)
            .await
            .page(lang)?
            .ok_or_else(not_logged_in)?;
        Ok(Console {
            name: person.full_name(),
            path: parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/console".into()),
            session,
            principal,
            roles,
            lang,
        })
    }
}

fn no_role_text(lang: Lang) -> &'static str {
    lang.pick(
        "管理者権限がありません（期限切れまたは取り消し）。",
        "You hold no administrative role (it has ended or was revoked).",
    )
}

/// A page refused or failed: drawn as a message page with its status.
#[derive(Debug)]
pub struct PageError {
    lang: Lang,
    status: StatusCode,
    detail: Option<String>,
    /// Whether to offer the login link.
    login: bool,
}

impl PageError {
    pub fn new(lang: Lang, status: StatusCode, detail: Option<String>) -> Self {
        PageError { lang, status, detail, login: false }
    }
    pub fn from_problem(lang: Lang, problem: Problem) -> Self {
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A database failure's text stays in the log, not on the page.
        let detail = if status.is_server_error() { None } else { problem.detail };
        PageError { lang, status, detail, login: status == StatusCode::UNAUTHORIZED }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let l = self.lang;
        let title = match self.status {
            StatusCode::UNAUTHORIZED => l.pick("ログインしてください", "Please log in"),
            StatusCode::FORBIDDEN => l.pick("権限がありません", "Not allowed"),
            StatusCode::NOT_FOUND => l.pick("見つかりません", "Not found"),
            StatusCode::CONFLICT => l.pick("この操作はできません", "This cannot be done"),
            s if s.is_client_error() => l.pick("入力を確認してください", "Please check what you entered"),
            _ => l.pick("エラーが発生しました", "Something went wrong"),
        };
        let page = pages::MessagePage {
            lang: l,
            title,
            detail: self.detail.unwrap_or_default(),
            login: self.login,
        };
        render(self.status, &page)
    }
}

/// A domain or database failure drawn as a console page.
pub trait OrPage<T> {
    fn page(self, lang: Lang) -> Result<T, PageError>;
}

impl<T, E: Into<Problem>> OrPage<T> for Result<T, E> {
    fn page(self, lang: Lang) -> Result<T, PageError> {
        self.map_err(|e| PageError::from_problem(lang, e.into()))
    }
}

/// Renders a template as the console serves every page: no caching, strict CSP.
pub fn render(status: StatusCode, template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "console page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Sets the language cookie when the page was asked for in a language.
pub fn remember_lang(mut response: Response, query: Option<&str>, lang: Lang) -> Response {
    let asked = query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "lang"));
    if asked {
        let cookie = format!("{LANG_COOKIE}={}; Path=/console; SameSite=Lax; Max-Age=31536000", lang.code());
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}
