//! Token introspection (RFC 7662) and the live-state check it shares with userinfo.
//!
//! A token is active only while everything behind it still stands: its own row (not revoked,
//! not expired), the client, the person (may still log in) and, for tokens bound to one, the
//! browser session. A revoked token is inactive at once, although its JWT has not expired.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::access::roles;
use crate::directory;
use crate::sessions;
use crate::store::Tx;
use crate::systems::{self, ClientType};
use crate::App;

use super::client_auth::{authenticate_client, form_params};
use super::error::OAuthError;
use super::keys::Typ;
use super::refresh;

#[derive(Debug, Deserialize)]
struct AccessClaims {
    jti: String,
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    auth_time: Option<i64>,
    #[serde(default)]
    pub acr: Option<String>,
}

/// An access token that is active now.
#[derive(Debug, Clone)]
pub struct ActiveToken {
    pub jti: String,
    pub client_id: String,
    /// None for a client_credentials token.
    pub person_id: Option<String>,
    /// The browser session the token was issued in, if it is bound to one.
    pub session_id: Option<String>,
    pub scope: String,
    pub claims: Option<String>,
    sub: String,
    iat: i64,
    exp: i64,
    sid: Option<String>,
    auth_time: Option<i64>,
    pub acr: Option<String>,
}

/// Verifies an access token this server issued and its live state.
pub async fn check_access_token(app: &App, token: &str) -> Result<Option<ActiveToken>, crate::Error> {
    let Some(claims) = verify_jwt(app, token) else { return Ok(None) };
    let now = app.clock.now();
    let row = sqlx::query(
        "SELECT client_id, person_id, session_id, scope, claims FROM access_tokens
         WHERE jti = $1 AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(&claims.jti)
    .bind(now)
    .fetch_optional(app.store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let client_id: String = row.try_get("client_id")?;
    let person_id: Option<String> = row.try_get("person_id")?;
    let session_id: Option<String> = row.try_get("session_id")?;
    // The token's subject is its person, or for client_credentials its client.
    if claims.sub != *person_id.as_ref().unwrap_or(&client_id) {
        return Ok(None);
    }
    if !systems::get(&app.store, &client_id).await?.is_some_and(|c| c.is_active()) {
        return Ok(None);
    }
    if let Some(person_id) = &person_id {
        if !directory::person_may_log_in(app.store.pool(), person_id, directory::today_in_japan(now)).await? {
            return Ok(None);
        }
    }
    if let Some(sid) = &session_id {
        if !sessions::is_live(app.store.pool(), now, sid).await? {
            return Ok(None);
        }
    }
    Ok(Some(ActiveToken {
        jti: claims.jti,
        client_id,
        person_id,
        session_id,
        scope: row.try_get("scope")?,
        claims: row.try_get("claims")?,
        sub: claims.sub,
        iat: claims.iat,
        exp: claims.exp,
        sid: claims.sid,
        auth_time: claims.auth_time,
        acr: claims.acr,
    }))
}

/// The signature, issuer, expiry and `typ` of an access token; None for anything else.
fn verify_jwt(app: &App, token: &str) -> Option<AccessClaims> {
    // typ at+jwt (RFC 9068 §4) keeps an ID token or logout token from passing as an access token.
    let claims: AccessClaims =
        app.keys.verify(token, &app.config.issuer, Typ::Exactly("at+jwt"), &["exp", "iss", "sub"], true)?;
    // Sekimori's clock is the one that counts.
    (claims.exp > app.clock.now()).then_some(claims)
}

/// RFC 7662 §2: confidential clients only; the answer never says why a token is inactive.
pub async fn introspect(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let params = form_params(&headers, &body)?;
    let client = authenticate_client(&app, &headers, &params).await?;
    if client.client_type == ClientType::Public {
        return Err(OAuthError::invalid_client("introspection needs an authenticated (confidential) client"));
    }
    let token = params
        .get("token")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    // §2.1: the hint only says where to look first; an unknown hint is ignored.
    let answer = match check_access_token(&app, token).await? {
        Some(active) => access_token_answer(&app, active).await?,
        None => {
            let mut tx = app.store.begin().await?;
            let answer = refresh_token_answer(&app, &mut tx, token, &client.client_id).await?;
            tx.commit().await?;
            answer
        }
    };
    let mut response = Json(answer).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn inactive() -> Value {
    json!({"active": false})
}

async fn access_token_answer(app: &App, token: ActiveToken) -> Result<Value, crate::Error> {
    let mut answer = Map::new();
    answer.insert("active".into(), json!(true));
    answer.insert("scope".into(), json!(token.scope));
    answer.insert("client_id".into(), json!(token.client_id));
    answer.insert("token_type".into(), json!("Bearer"));
    answer.insert("exp".into(), json!(token.exp));
    answer.insert("iat".into(), json!(token.iat));
    answer.insert("sub".into(), json!(token.sub));
    answer.insert("aud".into(), json!(token.client_id));
    answer.insert("iss".into(), json!(app.config.issuer));
    answer.insert("jti".into(), json!(token.jti));
    if let Some(person_id) = &token.person_id {
        if let Some(sid) = &token.sid {
            answer.insert("sid".into(), json!(sid));
        }
        if let Some(auth_time) = token.auth_time {
            answer.insert("auth_time".into(), json!(auth_time));
        }
        if let Some(acr) = &token.acr {
            answer.insert("acr".into(), json!(acr));
        }
        let today = crate::directory::today_in_japan(app.clock.now());
        let acr = token.acr.as_deref().unwrap_or_default();
        let roles = roles::held_on(app.store.pool(), person_id, &token.client_id, today, acr).await?;
        answer.insert("roles".into(), json!(roles));
    }
    Ok(Value::Object(answer))
}

/// A refresh token is shown only to the client it was issued to (RFC 7662 §4: a client must
/// not learn about another's refresh tokens).
async fn refresh_token_answer(app: &App, tx: &mut Tx, token: &str, client_id: &str) -> Result<Value, crate::Error> {
    let now = app.clock.now();
    let Some(grant) = refresh::find(tx, token).await? else { return Ok(inactive()) };
    if grant.client_id != client_id || grant.rotated || grant.revoked || grant.expires_at <= now {
        return Ok(inactive());
    }
    if !directory::person_may_log_in(&mut **tx, &grant.person_id, directory::today_in_japan(now)).await? {
        return Ok(inactive());
    }
    if !grant.offline && !sessions::is_live(&mut **tx, now, &grant.session_id).await? {
        return Ok(inactive());
    }
    if !systems::get(&app.store, &grant.client_id).await?.is_some_and(|c| c.is_active()) {
        return Ok(inactive());
    }
    Ok(json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": grant.scope,
        "client_id": grant.client_id,
        "sub": grant.person_id,
        "exp": grant.expires_at,
        "iss": app.config.issuer,
        "sid": grant.session_id,
        "auth_time": grant.auth.auth_time,
    }))
}

/// RFC 7009: the client's own tokens only; an unknown or already dead token is no error.
pub async fn revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let params = form_params(&headers, &body)?;
    let client = authenticate_client(&app, &headers, &params).await?;
    let token = params
        .get("token")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = app.clock.now();
    let actor = crate::audit::Actor::Client(client.client_id.clone());
    let mut tx = app.store.begin().await?;
    if let Some(claims) = verify_jwt(&app, token) {
        let owner = sqlx::query("SELECT client_id FROM access_tokens WHERE jti = $1 AND revoked_at IS NULL")
            .bind(&claims.jti)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = owner {
            let owner: String = row.try_get("client_id")?;
            if owner != client.client_id {
                return Err(OAuthError::unauthorized_client("the token was not issued to this client"));
            }
            crate::revocation::revoke(
                &mut tx,
                &actor,
                now,
                crate::revocation::Target::AccessToken(&claims.jti),
                "revoked by the client (RFC 7009)",
            )
            .await?;
        }
    } else if let Some(grant) = refresh::find(&mut tx, token).await? {
        if grant.client_id != client.client_id {
            return Err(OAuthError::unauthorized_client("the token was not issued to this client"));
        }
        if !grant.revoked {
            // §2.1: revoking a refresh token ends its grant and the access tokens from it.
            crate::revocation::revoke(
                &mut tx,
                &actor,
                now,
                crate::revocation::Target::Grant(&grant.family_id),
                "revoked by the client (RFC 7009)",
            )
            .await?;
        }
    }
    tx.commit().await?;
    let mut response = ().into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
