//! CSRF protection for every form: a random value in a SameSite=Strict, HttpOnly cookie, and
//! in the form an HMAC of it under a key derived from the master key. A forged cross-site
//! POST has neither the cookie (SameSite) nor a way to compute the form token (HMAC).

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto;

pub const COOKIE_NAME: &str = "sekimori_csrf";

fn form_token(key: &[u8; 32], cookie_value: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(b"sekimori-csrf-v1:");
    mac.update(cookie_value.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Returns the jar (with a new CSRF cookie if it had none) and the token for the form.
pub fn issue(key: &[u8; 32], jar: CookieJar, secure: bool) -> (CookieJar, String) {
    if let Some(existing) = jar.get(COOKIE_NAME).map(|c| c.value().to_owned()) {
        if existing.len() >= 32 {
            let token = form_token(key, &existing);
            return (jar, token);
        }
    }
    let value = crypto::random_token(32);
    let token = form_token(key, &value);
    let cookie = Cookie::build((COOKIE_NAME, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .build();
    (jar.add(cookie), token)
}

/// True when the form's token belongs to this browser's CSRF cookie.
pub fn verify(key: &[u8; 32], jar: &CookieJar, submitted: Option<&str>) -> bool {
    let (Some(cookie), Some(submitted)) = (jar.get(COOKIE_NAME), submitted) else {
        return false;
    };
    let expected = form_token(key, cookie.value());
    !expected.is_empty() && crypto::ct_eq(expected.as_bytes(), submitted.as_bytes())
}

/// A submitted form whose CSRF token has been checked: handlers that take this never see a
/// forged request, and nothing is read or written before the check.
pub struct CheckedForm {
    pub params: crate::oidc::params::Params,
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
        let body =
            axum::body::Bytes::from_request(req, app).await.map_err(axum::response::IntoResponse::into_response)?;
        let params = crate::oidc::params::Params::parse(&body);
        let lang = super::lang_for(&jar, params.get("lang").ok().flatten());
        if !verify(&app.csrf_key, &jar, params.get("csrf_token").ok().flatten()) {
            return Err(super::pages::error_page(lang, axum::http::StatusCode::FORBIDDEN, super::Msg::CsrfFailed));
        }
        Ok(CheckedForm { params, jar, lang })
    }
}
