//! CSRF protection for every form.
//!
//! - The browser holds a CSRF cookie whose value the server issued: random bytes and an HMAC
//!   of them under a key derived from the master key. A value the server did not sign (planted
//!   by a sibling subdomain or a plain-http page) is replaced, never adopted.
//! - The form token is an HMAC of that cookie and of the browser's session cookie. A token read
//!   on another browser — an attacker's own visit to the login page — fits neither this
//!   browser's session nor, once the cookie is rotated at login, its CSRF cookie.
//! - With Secure cookies the cookie is named `__Host-sekimori_csrf`, which only this origin over
//!   https can set; it is SameSite=Strict and HttpOnly.
//! - A form posted from another site, or from a sibling subdomain of this one, is refused from
//!   the browser's `Sec-Fetch-Site` before its token is even looked at.

use axum::http::HeaderMap;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto;
use crate::sessions;
use crate::App;

/// The CSRF cookie's name: with the `__Host-` prefix when cookies are Secure.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-sekimori_csrf"
    } else {
        "sekimori_csrf"
    }
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return String::new() };
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A new cookie value: `random.signature`.
fn new_cookie_value(key: &[u8; 32]) -> String {
    let random = crypto::random_token(32);
    let signature = mac(key, &[b"sekimori-csrf-cookie-v2", random.as_bytes()]);
    format!("{random}.{signature}")
}

/// Whether the server issued this cookie value.
fn is_issued(key: &[u8; 32], value: &str) -> bool {
    let Some((random, signature)) = value.split_once('.') else { return false };
    let expected = mac(key, &[b"sekimori-csrf-cookie-v2", random.as_bytes()]);
    random.len() >= 32 && !expected.is_empty() && crypto::ct_eq(expected.as_bytes(), signature.as_bytes())
}

/// The form token for this browser's CSRF cookie and session cookie (if any).
fn form_token(key: &[u8; 32], cookie_value: &str, session_cookie: Option<&str>) -> String {
    let session = session_cookie.map(crypto::sha256_hex).unwrap_or_default();
    mac(key, &[b"sekimori-csrf-form-v2", cookie_value.as_bytes(), session.as_bytes()])
}

fn cookie(app: &App, value: String) -> Cookie<'static> {
    let secure = app.config.secure_cookies();
    Cookie::build((cookie_name(secure), value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .build()
}

fn session_cookie(jar: &CookieJar) -> Option<String> {
    jar.get(sessions::COOKIE_NAME).map(|c| c.value().to_owned())
}

/// Returns the jar (with a new CSRF cookie unless it held one the server issued) and the token
/// for the form. Call it after any change to the session cookie in the same response.
pub fn issue(app: &App, jar: CookieJar) -> (CookieJar, String) {
    let name = cookie_name(app.config.secure_cookies());
    let existing = jar.get(name).map(|c| c.value().to_owned()).filter(|v| is_issued(&app.csrf_key, v));
    let (jar, value) = match existing {
        Some(value) => (jar, value),
        None => {
            let value = new_cookie_value(&app.csrf_key);
            (jar.add(cookie(app, value.clone())), value)
        }
    };
    let token = form_token(&app.csrf_key, &value, session_cookie(&jar).as_deref());
    (jar, token)
}

/// A new CSRF cookie: at login, so that nothing issued before it is accepted after.
pub fn rotate(app: &App, jar: CookieJar) -> CookieJar {
    jar.add(cookie(app, new_cookie_value(&app.csrf_key)))
}

/// True when the form's token belongs to this browser's CSRF cookie and session.
pub fn verify(app: &App, jar: &CookieJar, submitted: Option<&str>) -> bool {
    let name = cookie_name(app.config.secure_cookies());
    let (Some(cookie), Some(submitted)) = (jar.get(name), submitted) else {
        return false;
    };
    if !is_issued(&app.csrf_key, cookie.value()) {
        return false;
    }
    let expected = form_token(&app.csrf_key, cookie.value(), session_cookie(jar).as_deref());
    !expected.is_empty() && crypto::ct_eq(expected.as_bytes(), submitted.as_bytes())
}

/// False when the browser says the request was sent by another site or a sibling subdomain
/// (`Sec-Fetch-Site: cross-site | same-site`). Browsers that do not send the header, and
/// non-browser clients, are judged by the token alone.
pub fn from_this_origin(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => !(site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site")),
        None => true,
    }
}

/// A submitted form whose CSRF token has been checked: handlers that take this never see a
/// forged request, and nothing is read or written before the check.
pub struct CheckedForm {
    pub params: crate::params::Params,
    pub jar: CookieJar,
    pub lang: super::Lang,
}

impl CheckedForm {
    /// The value of a field sent once; None when missing, empty or repeated.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.params.get(name).ok().flatten()
    }
}

impl axum::extract::FromRequest<crate::App> for CheckedForm {
    type Rejection = axum::response::Response;

    async fn from_request(req: axum::extract::Request, app: &crate::App) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(req.headers());
        let same_origin = from_this_origin(req.headers());
        let body =
            axum::body::Bytes::from_request(req, app).await.map_err(axum::response::IntoResponse::into_response)?;
        let params = crate::params::Params::parse(&body);
        let lang = super::lang_for(&jar, params.get("lang").ok().flatten());
        if !same_origin || !verify(app, &jar, params.get("csrf_token").ok().flatten()) {
            return Err(super::pages::error_page(lang, axum::http::StatusCode::FORBIDDEN, super::Msg::CsrfFailed));
        }
        Ok(CheckedForm { params, jar, lang })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_the_server_signed_count_as_issued() {
        let key = [7u8; 32];
        let value = new_cookie_value(&key);
        assert!(is_issued(&key, &value));
        assert!(!is_issued(&[8u8; 32], &value), "another key did not issue it");
        assert!(!is_issued(&key, &"A".repeat(40)), "a long planted value is not adopted");
        let (random, _) = value.split_once('.').unwrap();
        assert!(!is_issued(&key, &format!("{random}.forged")));
    }

    #[test]
    fn the_form_token_depends_on_the_session() {
        let key = [7u8; 32];
        let value = new_cookie_value(&key);
        assert_ne!(form_token(&key, &value, None), form_token(&key, &value, Some("session-a")));
        assert_ne!(form_token(&key, &value, Some("session-a")), form_token(&key, &value, Some("session-b")));
    }

    #[test]
    fn posts_from_other_sites_and_sibling_subdomains_are_not_from_this_origin() {
        let mut headers = HeaderMap::new();
        assert!(from_this_origin(&headers));
        for (site, ok) in [("same-origin", true), ("none", true), ("same-site", false), ("cross-site", false)] {
            headers.insert("sec-fetch-site", site.parse().unwrap());
            assert_eq!(from_this_origin(&headers), ok, "{site}");
        }
    }
}
