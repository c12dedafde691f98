//! Token introspection (RFC 7662) and the live-state check it shares with userinfo.
//!
//! A token is active only while everything behind it still stands. A person's token: its own
//! row (not revoked, not expired), the client, the person (may still log in) and, for tokens
//! bound to one, the browser session. A system's own (client_credentials) token has no row:
//! the system (may be used, still in the token generation the jti carries) and the revocation
//! list. A revoked token is inactive at once, although its JWT has not expired. Either check
//! is one query (`oidc::live`), shared with the other calls of the moment (`oidc::token_cache`);
//! for a person's token, the state behind its row may be kept by this node for the second, and
//! then only the row is read. Nothing is kept of a system's token: its state is read each time.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::access::roles;
use crate::directory::Person;
use crate::store::Tx;
use crate::systems::ClientType;
use crate::App;

use super::access_tokens;
use super::client_auth::{authenticate_client, form_params};
use super::error::OAuthError;
use super::keys::Typ;
use super::live;
use super::refresh;

#[derive(Debug, Deserialize)]
struct AccessClaims {
    jti: String,
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
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
    /// The person, as read with the check (None for a client_credentials token).
    pub person: Option<Person>,
    /// The roles the token's person holds on its system now, for its login's acr.
    pub roles: Vec<String>,
    /// The scopes registered for the token's system.
    pub client_scopes: Vec<String>,
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
    if let Some(service) = ServiceToken::of(&claims) {
        return check_service_token(app, claims, service).await;
    }
    // The token's row is read from the database every time, so that a revocation committed on
    // any node holds at once; what stands behind it may be kept for the second (`token_cache`).
    let Some(row) = app.tokens.get(app.stamp(), &claims.jti).await? else { return Ok(None) };
    // The token's subject is its person, or for an older client_credentials token its client.
    if claims.sub != *row.person_id.as_ref().unwrap_or(&row.client_id) || !row.live() {
        return Ok(None);
    }
    let roles = roles::names_for_acr(row.held, claims.acr.as_deref().unwrap_or_default());
    Ok(Some(ActiveToken {
        jti: claims.jti,
        client_id: row.client_id,
        person_id: row.person_id,
        session_id: row.session_id,
        scope: row.scope,
        claims: row.claims,
        person: row.login.map(|login| login.person),
        roles,
        client_scopes: row.client.scopes,
        sub: claims.sub,
        iat: claims.iat,
        exp: claims.exp,
        sid: claims.sid,
        auth_time: claims.auth_time,
        acr: claims.acr,
    }))
}

/// A system's own token: its subject is the system (RFC 9068 §2.2), whose live state, token
/// generation and revocation list say whether it is active.
async fn check_service_token(
    app: &App,
    claims: AccessClaims,
    service: ServiceToken,
) -> Result<Option<ActiveToken>, crate::Error> {
    if !app.tokens.service_token_active(app.stamp(), &claims.jti, &claims.sub, service.generation).await? {
        return Ok(None);
    }
    Ok(Some(ActiveToken {
        client_id: claims.sub.clone(),
        person_id: None,
        session_id: None,
        scope: claims.scope.unwrap_or_default(),
        claims: None,
        person: None,
        roles: Vec::new(),
        client_scopes: Vec::new(),
        jti: claims.jti,
        sub: claims.sub,
        iat: claims.iat,
        exp: claims.exp,
        sid: None,
        auth_time: None,
        acr: None,
    }))
}

/// What a system's own token says of itself, once its signature is checked.
struct ServiceToken {
    generation: i64,
}

impl ServiceToken {
    /// None unless the jti carries a generation and the token names its system as both `sub`
    /// and `client_id` (anything else is looked up as a person's token, and has no row).
    fn of(claims: &AccessClaims) -> Option<ServiceToken> {
        let generation = access_tokens::service_generation(&claims.jti)?;
        (claims.client_id.as_deref() == Some(claims.sub.as_str())).then_some(ServiceToken { generation })
    }
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
        Some(active) => access_token_answer(&app, active),
        None => {
            // Only reads: on SQLite, no write lock.
            let mut tx = app.store.begin_read().await?;
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

fn access_token_answer(app: &App, token: ActiveToken) -> Value {
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
    if token.person_id.is_some() {
        if let Some(sid) = &token.sid {
            answer.insert("sid".into(), json!(sid));
        }
        if let Some(auth_time) = token.auth_time {
            answer.insert("auth_time".into(), json!(auth_time));
        }
        if let Some(acr) = &token.acr {
            answer.insert("acr".into(), json!(acr));
        }
        answer.insert("roles".into(), json!(token.roles));
    }
    Value::Object(answer)
}

/// A refresh token is shown only to the client it was issued to (RFC 7662 §4: a client must
/// not learn about another's refresh tokens).
async fn refresh_token_answer(app: &App, tx: &mut Tx, token: &str, client_id: &str) -> Result<Value, crate::Error> {
    let now = app.clock.now();
    let Some(grant) = refresh::find(tx, token).await? else { return Ok(inactive()) };
    if grant.client_id != client_id || grant.rotated || grant.revoked || grant.expires_at <= now {
        return Ok(inactive());
    }
    // The client asking is the grant's own, authenticated (so active) just now.
    let session = (!grant.offline).then_some(grant.session_id.as_str());
    let person = live::person_on_client(&mut **tx, now, &grant.person_id, &grant.client_id, session).await?;
    if !person.is_some_and(|p| p.usable()) {
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
        if let Some(service) = ServiceToken::of(&claims) {
            // A system's own token: its owner is in its signed claims; only a live one is
            // listed (an ended one needs no revoking).
            let dialect = tx.dialect();
            if live::service_token_active(&mut *tx, dialect, &claims.jti, &claims.sub, service.generation).await? {
                if claims.sub != client.client_id {
                    return Err(OAuthError::unauthorized_client("the token was not issued to this client"));
                }
                let target = crate::revocation::Target::ServiceAccessToken {
                    jti: &claims.jti,
                    client_id: &claims.sub,
                    expires_at: claims.exp,
                };
                crate::revocation::revoke(&mut tx, &actor, now, target, "revoked by the client (RFC 7009)").await?;
            }
            tx.commit().await?;
            return Ok(revoked_response());
        }
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
    Ok(revoked_response())
}

/// RFC 7009 §2.2: 200 with no body, whether or not there was anything to revoke.
fn revoked_response() -> Response {
    let mut response = ().into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
