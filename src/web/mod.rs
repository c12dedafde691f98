//! The browser-facing side of the public listener: the authorization endpoint's rendering,
//! the login pages (password, card, replacement card, password change and reset), the direct
//! login and マイページ, logout (RP-initiated too), the self-service card pages, the access pages
//! (roles, requests, approvals, a section's systems, reviews, notices); CSRF, cookies,
//! languages.

pub mod access;
pub mod authorize;
pub mod cards;
pub mod csrf;
pub mod i18n;
pub mod login;
pub mod logout;
pub mod my;
pub mod pages;
pub mod password;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

pub use i18n::{Lang, Msg};

use crate::sessions::{self, Session};
use crate::App;

pub const LANG_COOKIE: &str = "sekimori_lang";

pub fn router() -> Router<App> {
    Router::new()
        .route("/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/end_session", get(logout::end_session_get).post(logout::end_session_post))
        .route("/end_session/confirm", axum::routing::post(logout::confirm))
        .route("/", get(login::home))
        .route("/login", get(login::login_page).post(login::login_submit))
        .route("/login/continue", axum::routing::post(login::continue_login))
        .route("/logout", axum::routing::post(login::logout))
        .route("/my", get(my::my_page))
        .route("/my/sessions/{id}/end", axum::routing::post(my::end_session))
        .route("/my/grants/{id}/end", axum::routing::post(my::end_grant))
        .route("/my/access", get(access::mine::page))
        .route("/my/access/requests", axum::routing::post(access::mine::submit))
        .route("/my/access/requests/{id}/withdraw", axum::routing::post(access::mine::withdraw))
        .route("/my/approvals", get(access::approvals::page))
        .route("/my/approvals/{id}", axum::routing::post(access::approvals::decide))
        .route("/my/systems", get(access::systems::page))
        .route("/my/systems/grants", axum::routing::post(access::systems::grant))
        .route("/my/systems/deputies", axum::routing::post(access::systems::designate))
        .route("/my/systems/deputies/{id}/end", axum::routing::post(access::systems::end_deputy))
        .route("/my/reviews", get(access::reviews::page).post(access::reviews::open))
        .route("/my/reviews/{id}/grants/{grant_id}", axum::routing::post(access::reviews::decide))
        .route("/my/notices", get(access::notices::page))
        .route("/password", get(password::change_form).post(password::change_submit))
        .route("/password/reset", get(password::reset_page).post(password::reset_submit))
        .route("/static/sekimori.css", get(stylesheet))
        .route("/static/webauthn.js", get(cards::script))
        .route("/login/card/passwordless", get(cards::passwordless))
        .route("/login/card/step-up", get(cards::step_up))
        .route("/login/card/replace", get(cards::replacement_form).post(cards::start_replacement))
        .route("/webauthn/login", axum::routing::post(cards::finish_login))
        .route("/webauthn/register", axum::routing::post(cards::finish_registration))
        .route("/authenticators", get(cards::list))
        .route("/authenticators/enroll", axum::routing::post(cards::enroll))
        .route("/authenticators/{id}/lost", get(cards::confirm_lost).post(cards::report_lost))
        .fallback(not_found)
}

/// Sekimori's own page for an address that does not exist (not the browser's bare one).
async fn not_found(jar: CookieJar) -> axum::response::Response {
    pages::error_page(lang_for(&jar, None), axum::http::StatusCode::NOT_FOUND, Msg::PageNotFound)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        include_str!("../../static/sekimori.css"),
    )
}

/// The page language: an explicit choice (`lang=` or the client's `ui_locales`), then the
/// language cookie, then Japanese.
pub fn lang_for(jar: &CookieJar, hint: Option<&str>) -> Lang {
    hint.and_then(Lang::from_ui_locales)
        .or_else(|| jar.get(LANG_COOKIE).and_then(|c| Lang::parse(c.value())))
        .unwrap_or(Lang::Ja)
}

/// Remembers an explicit language choice.
pub fn remember_lang(jar: CookieJar, lang: Lang, secure: bool) -> CookieJar {
    jar.add(
        Cookie::build((LANG_COOKIE, lang.code()))
            .path("/")
            .secure(secure)
            .same_site(SameSite::Lax)
            .max_age(time::Duration::days(365))
            .build(),
    )
}

/// The live SSO session of this browser, if any.
pub async fn session_from_jar(app: &App, jar: &CookieJar) -> Result<Option<Session>, sqlx::Error> {
    match jar.get(sessions::COOKIE_NAME) {
        Some(cookie) => sessions::lookup(&app.store, &app.config.session, app.clock.now(), cookie.value()).await,
        None => Ok(None),
    }
}

/// The caller's address (for audit and throttling): the peer address, or — when the peer is
/// one of the configured `trusted_proxies` (the external-access server) — the nearest address
/// in `X-Forwarded-For` that is not a trusted proxy. Without this, every login behind a proxy
/// would share the proxy's address and one attacker could throttle everyone.
#[derive(Debug, Clone)]
pub struct SourceIp(pub Option<String>);

impl FromRequestParts<App> for SourceIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let trusted = &app.config.trusted_proxies;
        Ok(SourceIp(peer.map(|peer| client_address(peer, trusted, &parts.headers).to_string())))
    }
}

/// Walks `X-Forwarded-For` from the right while the hop is a trusted proxy.
fn client_address(peer: std::net::IpAddr, trusted: &[std::net::IpAddr], headers: &HeaderMap) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().parse::<std::net::IpAddr>().ok())
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) => {
                client = ip;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            // An unparsable hop cannot be trusted further: stop at the last good one.
            None => break,
        }
    }
    client
}

/// Security headers for every public response.
pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // No form-action: after login the browser follows a redirect to the consuming system,
    // which form-action would block.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 192.0.2.7"));
        // From an untrusted peer the header is ignored.
        assert_eq!(client_address("198.51.100.1".parse().unwrap(), &[proxy], &headers).to_string(), "198.51.100.1");
        // From the proxy, the nearest untrusted hop is the client (the left part can be forged).
        assert_eq!(client_address(proxy, &[proxy], &headers).to_string(), "192.0.2.7");
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_address(proxy, &[proxy], &headers), proxy);
    }
}
