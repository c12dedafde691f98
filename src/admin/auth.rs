//! Who is calling the admin API. Automation and the first administrator use API tokens:
//! opaque, stored hashed, each with scopes and an expiry. Each call names the scope it needs.
//! The first token comes from a one-time bootstrap code printed on the server's console —
//! there is no default password anywhere.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use serde::Serialize;
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::crypto;
use crate::directory::{DirectoryError, InvalidField};
use crate::store::{Store, Tx};
use crate::App;

use super::problem::Problem;
use super::rights::Right;

/// Every scope an API token can carry: one per [`Right`].
pub static SCOPES: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| Right::ALL.iter().map(|r| r.scope()).collect());

/// Who is calling the admin API, authenticated: today an API token and the rights (scopes) it
/// carries; with people as administrators, a person and the administrative grants they hold.
/// Handlers authorise against it through `rights::Authorized`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub scopes: Vec<String>,
    /// When the caller's token ends; nothing it creates may outlive it.
    pub expires_at: UnixTime,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::ApiToken(self.token_id.clone())
    }
    /// Whether the caller holds `right`.
    pub fn holds(&self, right: Right) -> bool {
        self.scopes.iter().any(|s| s == right.scope())
    }
    /// Refuses the call unless the caller holds `right`.
    pub fn require(&self, right: Right) -> Result<(), Problem> {
        if self.holds(right) {
            Ok(())
        } else {
            Err(Problem::forbidden(right.scope()))
        }
    }
}

impl FromRequestParts<App> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(Problem::unauthorized)?;
        let row = sqlx::query(
            "SELECT id, scopes, expires_at FROM api_tokens
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(crypto::sha256_hex(token))
        .bind(app.clock.now())
        .fetch_optional(app.store.pool())
        .await?
        .ok_or_else(Problem::unauthorized)?;
        let scopes: String = row.try_get("scopes")?;
        Ok(Principal {
            token_id: row.try_get("id")?,
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            expires_at: row.try_get("expires_at")?,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub id: String,
    pub name: String,
    /// Shown once; only its hash is stored.
    pub token: String,
    pub scopes: Vec<String>,
    pub expires_at: UnixTime,
}

/// Creates an API token. Scopes must be known; the lifetime is bounded to a year.
pub async fn create_token(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    name: &str,
    scopes: &[String],
    lifetime: i64,
) -> Result<IssuedToken, Problem> {
    let name = crate::directory::types::parse_name("name", name).map_err(DirectoryError::from)?;
    check_scopes(scopes)?;
    if !(60..=366 * 86_400).contains(&lifetime) {
        return Err(DirectoryError::from(InvalidField {
            field: "expires_in",
            reason: "must be between 60 seconds and one year".into(),
        })
        .into());
    }
    let token = format!("skm_{}", crypto::random_token(32));
    let id = uuid::Uuid::new_v4().to_string();
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    sqlx::query(
        "INSERT INTO api_tokens (id, name, token_hash, scopes, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&name)
    .bind(crypto::sha256_hex(&token))
    .bind(scopes.join(" "))
    .bind(actor.as_text())
    .bind(now)
    .bind(now + lifetime)
    .execute(&mut **tx)
    .await?;
    Event::success(
        actor,
        "api_token.create",
        format!("api_token:{id}"),
        serde_json::json!({"name": name, "scopes": scopes, "expires_at": now + lifetime}),
    )
    .record(tx, now)
    .await?;
    Ok(IssuedToken { id, name, token, scopes, expires_at: now + lifetime })
}

/// An API token as administrators see it: never the token, never its hash.
#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Who created it, in the audit log's actor form.
    pub created_by: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Every API token, newest first (revoked and expired ones too: they are records).
pub async fn list_tokens(store: &Store) -> Result<Vec<TokenInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, scopes, created_by, created_at, expires_at, revoked_at FROM api_tokens
         ORDER BY created_at DESC, id",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let scopes: String = row.try_get("scopes")?;
            Ok(TokenInfo {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                created_by: row.try_get("created_by")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        })
        .collect()
}

/// Revokes an API token at once (a leaked or no longer needed one), through the revocation
/// module; false when there is no such token. Revoking a revoked token changes nothing and is
/// not recorded again.
pub async fn revoke_token(tx: &mut Tx, actor: &Actor, now: UnixTime, id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT revoked_at FROM api_tokens WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    let Some(row) = row else { return Ok(false) };
    if row.try_get::<Option<UnixTime>, _>("revoked_at")?.is_none() {
        let target = crate::revocation::Target::ApiToken(id);
        crate::revocation::revoke(tx, actor, now, target, "revoked by an administrator").await?;
    }
    Ok(true)
}

/// Refuses an empty scope list or a scope that does not exist (422, field `scopes`).
pub fn check_scopes(scopes: &[String]) -> Result<(), Problem> {
    let invalid = |reason: String| Problem::from(DirectoryError::from(InvalidField { field: "scopes", reason }));
    if scopes.is_empty() {
        return Err(invalid("at least one scope is required".into()));
    }
    if let Some(unknown) = scopes.iter().find(|s| Right::from_scope(s).is_none()) {
        return Err(invalid(format!("unknown scope {unknown}")));
    }
    Ok(())
}

/// Lifetime of the code printed on the console, and of the token it is exchanged for.
pub const BOOTSTRAP_CODE_TTL: i64 = 3600;
pub const BOOTSTRAP_TOKEN_TTL: i64 = 86_400;

/// True when no usable API token exists, i.e. nobody can administer Sekimori yet.
pub async fn needs_bootstrap(store: &Store, now: UnixTime) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens WHERE revoked_at IS NULL AND expires_at > $1")
        .bind(now)
        .fetch_one(store.pool())
        .await?;
    Ok(row.try_get::<i64, _>("n")? == 0)
}

/// When the unused bootstrap code still valid at `now` expires, if there is one.
pub async fn pending_bootstrap_code_expiry(store: &Store, now: UnixTime) -> Result<Option<UnixTime>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT MAX(expires_at) AS expires_at FROM bootstrap_codes WHERE used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .fetch_one(store.pool())
    .await?;
    row.try_get("expires_at")
}

/// Issues a one-time bootstrap code, invalidating any earlier unused one.
pub async fn issue_bootstrap_code(store: &Store, actor: &Actor, now: UnixTime) -> Result<String, sqlx::Error> {
    let code = crypto::random_token(20);
    let mut tx = store.begin().await?;
    sqlx::query("UPDATE bootstrap_codes SET expires_at = $1 WHERE used_at IS NULL AND expires_at > $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO bootstrap_codes (id, code_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(crypto::sha256_hex(&code))
        .bind(now)
        .bind(now + BOOTSTRAP_CODE_TTL)
        .execute(&mut *tx)
        .await?;
    Event::success(
        actor,
        "bootstrap.code_issued",
        "bootstrap",
        serde_json::json!({"expires_at": now + BOOTSTRAP_CODE_TTL}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok(code)
}

/// Exchanges a bootstrap code, once, for a short-lived token with every scope.
pub async fn redeem_bootstrap_code(app: &App, code: &str, name: &str) -> Result<IssuedToken, Problem> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let used = sqlx::query(
        "UPDATE bootstrap_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING id",
    )
    .bind(now)
    .bind(crypto::sha256_hex(code))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = used else {
        Event::failure(
            &Actor::Anonymous,
            "bootstrap.redeem",
            "bootstrap",
            serde_json::json!({"reason": "invalid, used or expired code"}),
        )
        .record(&mut tx, now)
        .await?;
        tx.commit().await?;
        return Err(Problem::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the bootstrap code is invalid, used or expired".to_owned(),
        ));
    };
    let code_id: String = row.try_get("id")?;
    let scopes: Vec<String> = SCOPES.iter().map(|s| s.to_string()).collect();
    let actor = Actor::System;
    let issued = create_token(&mut tx, &actor, now, name, &scopes, BOOTSTRAP_TOKEN_TTL).await?;
    Event::success(
        &actor,
        "bootstrap.redeem",
        format!("bootstrap:{code_id}"),
        serde_json::json!({"api_token": issued.id}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok(issued)
}
