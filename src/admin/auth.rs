//! Who is calling the admin API: a person in the console (`super::console`), or an API token —
//! opaque, stored hashed, with scopes and an expiry, owned by a person whose rights it uses.
//! The first token comes from a one-time bootstrap code printed on the server's console; it
//! lives a day and is owned by nobody. There is no default password anywhere.

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

/// Who is calling the admin API: a person in the console, or an API token.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A person logged in to the console with a card (`super::console`).
    Console { session_id: String, person_id: String, csrf_token: String },
    /// An API token; `owner` is the person whose rights it uses (None: the bootstrap token).
    Token { id: String, owner: Option<String> },
}

/// Who is calling the admin API, authenticated, with the rights they hold at this moment: a
/// console person's come from their administrative roles; a token's are its scopes that its
/// owner still holds (a token dies with its owner's right). Read at every request, so a right
/// that ends is refused from the next request on, in an open console session too.
/// Handlers authorise against it through `rights::Authorized`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub who: Caller,
    pub rights: Vec<Right>,
    /// When the caller's token ends; nothing it creates may outlive it. For a console person,
    /// the end of the console session.
    pub expires_at: UnixTime,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match &self.who {
            Caller::Console { person_id, .. } => Actor::Person(person_id.clone()),
            Caller::Token { id, .. } => Actor::ApiToken(id.clone()),
        }
    }
    /// The person acting, directly or through their token.
    pub fn person_id(&self) -> Option<&str> {
        match &self.who {
            Caller::Console { person_id, .. } => Some(person_id),
            Caller::Token { owner, .. } => owner.as_deref(),
        }
    }
    /// The API token's id, for an API token.
    pub fn token_id(&self) -> Option<&str> {
        match &self.who {
            Caller::Token { id, .. } => Some(id),
            Caller::Console { .. } => None,
        }
    }
    /// Whether the caller holds `right`.
    pub fn holds(&self, right: Right) -> bool {
        self.rights.contains(&right)
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
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match bearer {
            Some(token) => token_principal(app, token).await,
            None => super::console::session::principal_for_api(parts, app).await,
        }
    }
}

/// The principal of an API token: live, and holding its scopes' rights that its owner (a
/// person in service) still holds today.
async fn token_principal(app: &App, token: &str) -> Result<Principal, Problem> {
    let now = app.clock.now();
    let row = sqlx::query(
        "SELECT id, scopes, expires_at, owner_person_id FROM api_tokens
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(crypto::sha256_hex(token))
    .bind(now)
    .fetch_optional(app.store.pool())
    .await?
    .ok_or_else(Problem::unauthorized)?;
    let scopes: String = row.try_get("scopes")?;
    let owner: Option<String> = row.try_get("owner_person_id")?;
    let mut rights: Vec<Right> = scopes.split_whitespace().filter_map(Right::from_scope).collect();
    if let Some(owner) = &owner {
        let today = crate::directory::today_in_japan(now);
        let pool = app.store.pool();
        if !crate::directory::person_may_log_in(pool, owner, today).await.map_err(Problem::from)? {
            return Err(Problem::unauthorized());
        }
        let held = super::roles::rights_of(&super::roles::held_by(pool, owner, today).await?);
        rights.retain(|r| held.contains(r));
        if rights.is_empty() {
            // Every right it carried has ended with its owner's roles: the token is dead.
            return Err(Problem::unauthorized());
        }
    }
    Ok(Principal {
        who: Caller::Token { id: row.try_get("id")?, owner },
        rights,
        expires_at: row.try_get("expires_at")?,
    })
}

#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub id: String,
    pub name: String,
    /// Shown once; only its hash is stored.
    pub token: String,
    pub scopes: Vec<String>,
    pub expires_at: UnixTime,
    /// The person whose rights it uses; absent for the bootstrap token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Creates an API token. Scopes must be known; the lifetime is bounded to a year.
pub async fn create_token(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    owner: Option<&str>,
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
        "INSERT INTO api_tokens (id, name, token_hash, scopes, created_by, created_at, expires_at, owner_person_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&name)
    .bind(crypto::sha256_hex(&token))
    .bind(scopes.join(" "))
    .bind(actor.as_text())
    .bind(now)
    .bind(now + lifetime)
    .bind(owner)
    .execute(&mut **tx)
    .await?;
    Event::success(
        actor,
        "api_token.create",
        format!("api_token:{id}"),
        serde_json::json!({"name": name, "scopes": scopes, "expires_at": now + lifetime, "owner": owner}),
    )
    .record(tx, now)
    .await?;
    Ok(IssuedToken { id, name, token, scopes, expires_at: now + lifetime, owner: owner.map(str::to_owned) })
}

/// Why the CLI refused to issue a token for a person.
#[derive(Debug, thiserror::Error)]
pub enum OwnerRefused {
    #[error("nobody has the login ID {0}")]
    NoSuchLogin(String),
    #[error("{login} does not hold {scope} through an administrative role today")]
    NotHeld { login: String, scope: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Issues (from the server's command line) an API token owned by the person with `login_id`,
/// with scopes they hold today through their administrative roles: how an HR system or a
/// script gets its token without anyone handing on a right they do not hold.
pub async fn create_for_owner(
    store: &Store,
    now: UnixTime,
    login_id: &str,
    name: &str,
    scopes: &[String],
    lifetime: i64,
) -> Result<IssuedToken, OwnerRefused> {
    let login = crate::directory::LoginId::parse(login_id).map_err(|_| OwnerRefused::NoSuchLogin(login_id.into()))?;
    let account = crate::directory::find_login_account(store, &login)
        .await
        .map_err(|e| OwnerRefused::Invalid(e.to_string()))?
        .ok_or_else(|| OwnerRefused::NoSuchLogin(login_id.into()))?;
    check_scopes(scopes).map_err(|p| OwnerRefused::Invalid(p.detail.unwrap_or_default()))?;
    let feed = Right::HrFeed.scope();
    if scopes.iter().any(|s| s == feed) && scopes.iter().any(|s| s != feed) {
        return Err(OwnerRefused::Invalid("hr:feed is granted alone: an HR feed's token carries no other right".into()));
    }
    let today = crate::directory::today_in_japan(now);
    let held = super::roles::rights_of(&super::roles::held_by(store.pool(), &account.person.id, today).await?);
    if let Some(scope) = scopes.iter().find(|s| !Right::from_scope(s).is_some_and(|r| held.contains(&r))) {
        return Err(OwnerRefused::NotHeld { login: login_id.into(), scope: scope.clone() });
    }
    let mut tx = store.begin().await?;
    let issued = create_token(&mut tx, &Actor::Cli, now, Some(&account.person.id), name, scopes, lifetime)
        .await
        .map_err(|p| OwnerRefused::Invalid(p.detail.unwrap_or_default()))?;
    tx.commit().await?;
    Ok(issued)
}

/// An API token as administrators see it: never the token, never its hash.
#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Who created it, in the audit log's actor form.
    pub created_by: String,
    /// The person whose rights it uses (None: the bootstrap token and what it made).
    pub owner: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Every API token, newest first (revoked and expired ones too: they are records).
pub async fn list_tokens(store: &Store) -> Result<Vec<TokenInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, scopes, created_by, created_at, expires_at, revoked_at, owner_person_id FROM api_tokens
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
                owner: row.try_get("owner_person_id")?,
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

/// True when nobody can administer Sekimori: no security manager holds the role today and no
/// bootstrap token is live (first start, or every security manager's term has run out).
pub async fn needs_bootstrap(store: &Store, now: UnixTime) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM api_tokens WHERE revoked_at IS NULL AND expires_at > $1 AND owner_person_id IS NULL",
    )
    .bind(now)
    .fetch_one(store.pool())
    .await?;
    if row.try_get::<i64, _>("n")? > 0 {
        return Ok(false);
    }
    let today = crate::directory::today_in_japan(now);
    Ok(super::roles::holders(store.pool(), super::roles::AdminRole::SecurityManager, today).await?.is_empty())
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

/// Exchanges a bootstrap code, once, for a token that lives a day (see [`super::roles::bootstrap_rights`]).
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
    // A day of the security manager's rights and what setting up needs: enough to register the
    // first people and name the first security manager (a time-limited grant), nothing more.
    let scopes: Vec<String> = super::roles::bootstrap_rights().iter().map(|r| r.scope().to_owned()).collect();
    let actor = Actor::System;
    let issued = create_token(&mut tx, &actor, now, None, name, &scopes, BOOTSTRAP_TOKEN_TTL).await?;
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
