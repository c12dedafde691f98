//! The one place that decides what a token says about a person. Later capabilities (roles per
//! system, acr from authenticators) add claims here and nowhere else.

use serde_json::{json, Map, Value};

use crate::access::clients::Client;
use crate::clock::UnixTime;
use crate::crypto;
use crate::directory::Person;

/// How and when the person authenticated, carried from session to code to token.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub session_id: String,
    pub auth_time: UnixTime,
    pub acr: String,
    pub amr: Vec<String>,
}

/// Claims released for the granted scopes (OIDC Core §5.4), in userinfo and the ID token.
pub fn scope_claims(person: &Person, scopes: &[&str]) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(person.id));
    if scopes.contains(&"profile") {
        claims.insert("name".into(), json!(person.full_name()));
        claims.insert("family_name".into(), json!(person.family_name));
        claims.insert("given_name".into(), json!(person.given_name));
        // OIDC Core §5.2: the reading in katakana as a language-tagged claim.
        claims
            .insert("name#ja-Kana-JP".into(), json!(format!("{} {}", person.family_name_kana, person.given_name_kana)));
        claims.insert("family_name#ja-Kana-JP".into(), json!(person.family_name_kana));
        claims.insert("given_name#ja-Kana-JP".into(), json!(person.given_name_kana));
        claims.insert("preferred_username".into(), json!(person.employee_number));
        claims.insert("employee_number".into(), json!(person.employee_number));
    }
    if scopes.contains(&"email") {
        if let Some(email) = &person.email {
            claims.insert("email".into(), json!(email));
            // Addresses come from HR, not from the person; Sekimori does not verify them itself.
            claims.insert("email_verified".into(), json!(false));
        }
    }
    claims
}

/// OIDC Core §3.3.2.11: left half of the SHA-256 of the access token, base64url.
pub fn at_hash(access_token: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(access_token.as_bytes());
    let (left, _) = digest.split_at(16);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(left)
}

pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client: &'a Client,
    pub person: &'a Person,
    pub auth: &'a AuthContext,
    pub scopes: &'a [&'a str],
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
    pub now: UnixTime,
    pub ttl: i64,
}

pub fn id_token(input: IdTokenInput<'_>) -> Value {
    let mut claims = scope_claims(input.person, input.scopes);
    claims.insert("iss".into(), json!(input.issuer));
    claims.insert("aud".into(), json!(input.client.client_id));
    claims.insert("azp".into(), json!(input.client.client_id));
    claims.insert("iat".into(), json!(input.now));
    claims.insert("exp".into(), json!(input.now + input.ttl));
    claims.insert("auth_time".into(), json!(input.auth.auth_time));
    claims.insert("sid".into(), json!(input.auth.session_id));
    claims.insert("acr".into(), json!(input.auth.acr));
    claims.insert("amr".into(), json!(input.auth.amr));
    claims.insert("at_hash".into(), json!(at_hash(input.access_token)));
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    Value::Object(claims)
}

/// RFC 9068 access token claims; `jti` is the key of its row in `access_tokens`.
pub fn access_token(
    issuer: &str,
    client: &Client,
    person_id: &str,
    auth: &AuthContext,
    scope: &str,
    jti: &str,
    now: UnixTime,
) -> Value {
    json!({
        "iss": issuer,
        "sub": person_id,
        "aud": client.client_id,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + client.access_token_ttl,
        "jti": jti,
        "scope": scope,
        "sid": auth.session_id,
        "auth_time": auth.auth_time,
        "acr": auth.acr,
        "amr": auth.amr,
    })
}

/// A new token id.
pub fn new_jti() -> String {
    crypto::random_token(16)
}
