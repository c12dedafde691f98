//! `id_token_hint` (OIDC Core §3.1.2.1, RP-Initiated Logout §2): an ID token this provider
//! issued, presented back to name a person or a session.

use serde::Deserialize;

use crate::App;

use super::keys::Typ;

/// What an `id_token_hint` says, once its signature and issuer are checked. Its expiry does
/// not matter (§2: the hint is usually an expired ID token).
#[derive(Debug, Deserialize)]
pub struct Hint {
    pub sub: String,
    aud: serde_json::Value,
    #[serde(default)]
    pub sid: Option<String>,
}

impl Hint {
    pub fn audience(&self) -> Option<&str> {
        match &self.aud {
            serde_json::Value::String(aud) => Some(aud),
            serde_json::Value::Array(auds) if auds.len() == 1 => auds.first().and_then(|a| a.as_str()),
            _ => None,
        }
    }
}

/// The ID token `token` if this provider issued it (signature, issuer, type).
pub fn verify(app: &App, token: &str) -> Option<Hint> {
    // An ID token is typ JWT (or has none); access and logout tokens have their own types.
    app.keys.verify(token, &app.config.issuer, Typ::JwtOrAbsent, &["iss", "sub", "aud"], false)
}

/// The subject of an ID token this provider issued (for `id_token_hint` at the authorization
/// endpoint); None when the token is not one of ours.
pub fn hinted_subject(app: &App, token: &str) -> Option<String> {
    verify(app, token).map(|h| h.sub)
}
