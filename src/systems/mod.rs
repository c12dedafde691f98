//! Consuming systems (税務, 福祉, 図書館…) registered as OIDC clients: registration and
//! reading here; everyday administration in [`changes`] (change the settings), [`status`]
//! (disable, enable) and [`secret`] (rotation with a grace period).

pub mod cache;
mod changes;
mod rules;
mod secret;
mod status;

pub use changes::{update, ClientChanges};
pub use rules::validate_redirect_uri;
pub use secret::{rotate_secret, RotatedSecret, DEFAULT_SECRET_GRACE, MAX_SECRET_GRACE};
pub use status::{disable, enable};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::TokenConfig;
use crate::crypto;
use crate::directory::{self, InvalidField};
use crate::store::{OnConstraint, Store, Tx};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("client not found")]
    NotFound,
    #[error("a client with this client_id already exists")]
    Conflict,
    /// The client's present state does not allow the change (already disabled, no secret).
    #[error("{0}")]
    StateConflict(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<directory::DirectoryError> for ClientError {
    fn from(e: directory::DirectoryError) -> Self {
        match e {
            directory::DirectoryError::Invalid(i) => ClientError::Invalid(i),
            directory::DirectoryError::Database(d) => ClientError::Database(d),
            directory::DirectoryError::NotFound(_) | directory::DirectoryError::Conflict(_) => {
                ClientError::Invalid(InvalidField { field: "owner_org_unit_id", reason: e.to_string() })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// Has a secret: a server-side application.
    Confidential,
    /// Has no secret (a browser or native application): PKCE is mandatory.
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }
    fn parse(value: &str) -> Result<Self, InvalidField> {
        match value {
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "none" => Ok(Self::None),
            _ => Err(InvalidField { field: "token_endpoint_auth_method", reason: "unsupported method".into() }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    RS256,
    ES256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
        }
    }
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        match value {
            "RS256" => Ok(Self::RS256),
            "ES256" => Ok(Self::ES256),
            _ => Err(InvalidField { field: "id_token_signed_response_alg", reason: "must be RS256 or ES256".into() }),
        }
    }
}

/// The grants a client may use (RFC 6749 §4, §6). No implicit, hybrid or password grant exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

/// A registered consuming system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub owner_org_unit_id: Option<String>,
    pub client_type: ClientType,
    pub token_endpoint_auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub id_token_signed_response_alg: SigningAlg,
    pub require_pkce: bool,
    pub access_token_ttl: i64,
    pub grant_types: Vec<GrantType>,
    /// Scopes this client may ask for with client_credentials (its system-to-system calls).
    pub service_scopes: Vec<String>,
    /// Seconds a refresh-token family lives from the login that started it.
    pub refresh_token_ttl: i64,
    /// Where OpenID Back-Channel Logout notices for this client go.
    pub backchannel_logout_uri: Option<String>,
    /// `active` or `disabled`.
    pub status: String,
    /// When the system was disabled; None while it is active.
    pub disabled_at: Option<UnixTime>,
    /// Until when the secret that the last rotation replaced still authenticates; None when
    /// that rotation gave no grace (or there was none).
    pub previous_secret_expires_at: Option<UnixTime>,
    /// An emergency stop holds the system (R17): it is refused everywhere, as if disabled,
    /// whatever its `status`, until the stop is lifted.
    pub emergency_stopped: bool,
    /// The generation of the system's own (client_credentials) access tokens: the suffix of
    /// their jti. Ending every token of the system raises it (`revocation`), so a token of an
    /// earlier generation is inactive without a row of its own.
    #[serde(skip)]
    pub token_generation: i64,
    #[serde(skip)]
    pub secret_hash: Option<String>,
    #[serde(skip)]
    pub previous_secret_hash: Option<String>,
}

impl Client {
    /// Whether the system may be used now: enabled, and no emergency stop holds it. What
    /// every login, token request and introspection checks.
    pub fn is_active(&self) -> bool {
        active(&self.status, self.emergency_stopped)
    }

    /// Whether the system is enabled (`status` active), whatever an emergency stop says.
    pub fn is_enabled(&self) -> bool {
        self.status == "active"
    }

    /// Exact, character-for-character match (RFC 9700 §4.1.3; OIDC Core §3.1.2.1): no
    /// prefix, wildcard or normalisation, which is what open-redirect attacks abuse.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// The same exact match for RP-initiated logout (OIDC RP-Initiated Logout §3).
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// A client as an administrator asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub client_id: Option<String>,
    pub name: String,
    pub client_type: ClientType,
    pub token_endpoint_auth_method: Option<AuthMethod>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Option<Vec<String>>,
    pub id_token_signed_response_alg: Option<String>,
    pub require_pkce: Option<bool>,
    pub access_token_ttl: Option<i64>,
    pub owner_org_unit_id: Option<String>,
    /// Default: authorization_code and refresh_token.
    pub grant_types: Option<Vec<GrantType>>,
    #[serde(default)]
    pub service_scopes: Vec<String>,
    pub refresh_token_ttl: Option<i64>,
    pub backchannel_logout_uri: Option<String>,
}

pub use crate::config::{MAX_ACCESS_TOKEN_TTL, MAX_REFRESH_TOKEN_TTL};

/// Sekimori's own admin console: an OpenID client of Sekimori, provisioned at every start by
/// `admin::roles::provision`, whose roles are the administrative roles.
pub const CONSOLE_CLIENT_ID: &str = "sekimori-console";

/// Scopes of a person's login. `offline_access` (OIDC Core §11) lets a refresh-token family
/// outlive the browser session; registering it for a client is the organisation's consent.
/// `staff` adds the login ID and the section (`oidc::claims::STAFF_SCOPE`).
pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "staff", "offline_access"];

/// What a client gets when it does not say: offline access must be asked for.
const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// Registers a client; for a confidential client also returns its secret, shown only now.
pub async fn register(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    defaults: &TokenConfig,
    new: NewClient,
) -> Result<(Client, Option<String>), ClientError> {
    let client_id = match &new.client_id {
        Some(id) => rules::validate_client_id(id)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let name = directory::types::parse_name("name", &new.name)?;
    let method = match (new.client_type, new.token_endpoint_auth_method) {
        (_, Some(method)) => method,
        (ClientType::Public, None) => AuthMethod::None,
        (ClientType::Confidential, None) => AuthMethod::ClientSecretBasic,
    };
    let alg = SigningAlg::parse(new.id_token_signed_response_alg.as_deref().unwrap_or("RS256"))?;
    let secret = (new.client_type == ClientType::Confidential).then(|| crypto::random_token(32));
    let client = Client {
        client_id,
        name,
        owner_org_unit_id: new.owner_org_unit_id,
        client_type: new.client_type,
        token_endpoint_auth_method: method,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        scopes: new.scopes.unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()),
        id_token_signed_response_alg: alg,
        require_pkce: new.require_pkce.unwrap_or(new.client_type == ClientType::Public),
        access_token_ttl: new.access_token_ttl.unwrap_or(defaults.access_token_ttl),
        grant_types: new.grant_types.unwrap_or_else(|| vec![GrantType::AuthorizationCode, GrantType::RefreshToken]),
        service_scopes: rules::distinct(new.service_scopes),
        refresh_token_ttl: new.refresh_token_ttl.unwrap_or(defaults.refresh_token_ttl),
        backchannel_logout_uri: new.backchannel_logout_uri,
        status: "active".into(),
        disabled_at: None,
        emergency_stopped: false,
        token_generation: 0,
        previous_secret_expires_at: None,
        secret_hash: secret.as_deref().map(crypto::sha256_hex),
        previous_secret_hash: None,
    };
    rules::check(&client)?;
    check_owner(tx, client.owner_org_unit_id.as_deref()).await?;
    sqlx::query(
        "INSERT INTO clients (client_id, name, owner_org_unit_id, client_type, secret_hash,
             token_endpoint_auth_method, redirect_uris, post_logout_redirect_uris, scopes,
             id_token_signed_response_alg, require_pkce, access_token_ttl, status, created_at,
             grant_types, service_scopes, refresh_token_ttl, backchannel_logout_uri)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'active', $13, $14, $15, $16, $17)",
    )
    .bind(&client.client_id)
    .bind(&client.name)
    .bind(client.owner_org_unit_id.as_deref())
    .bind(if client.client_type == ClientType::Public { "public" } else { "confidential" })
    .bind(client.secret_hash.as_deref())
    .bind(client.token_endpoint_auth_method.as_str())
    .bind(uri_list(&client.redirect_uris))
    .bind(uri_list(&client.post_logout_redirect_uris))
    .bind(client.scopes.join(" "))
    .bind(client.id_token_signed_response_alg.as_str())
    .bind(i64::from(client.require_pkce))
    .bind(client.access_token_ttl)
    .bind(now)
    .bind(grant_list(&client.grant_types))
    .bind(client.service_scopes.join(" "))
    .bind(client.refresh_token_ttl)
    .bind(client.backchannel_logout_uri.as_deref())
    .execute(&mut **tx)
    .await
    .on_constraint([("clients_pkey", "clients.client_id", ClientError::Conflict)])?;
    Event::success(
        actor,
        "client.register",
        format!("client:{}", client.client_id),
        serde_json::json!({
            "name": client.name,
            "client_type": client.client_type,
            "redirect_uris": client.redirect_uris,
            "grant_types": client.grant_types,
            "scopes": client.scopes,
            "service_scopes": client.service_scopes,
            "backchannel_logout_uri": client.backchannel_logout_uri,
        }),
    )
    .record(tx, now)
    .await?;
    Ok((client, secret))
}

/// An owner org unit, when one is named, must exist.
async fn check_owner(tx: &mut Tx, owner_org_unit_id: Option<&str>) -> Result<(), ClientError> {
    if let Some(org) = owner_org_unit_id {
        if directory::get_org_unit(&mut **tx, org).await?.is_none() {
            return Err(rules::invalid("owner_org_unit_id", "no such org unit").into());
        }
    }
    Ok(())
}

/// Redirect URIs as stored: a JSON array (a URI may contain spaces once percent-decoded).
fn uri_list(uris: &[String]) -> String {
    serde_json::to_string(uris).unwrap_or_default()
}

/// Grant types as stored: space-separated.
fn grant_list(grants: &[GrantType]) -> String {
    grants.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" ")
}

const COLUMNS: &str = "client_id, name, owner_org_unit_id, client_type, secret_hash, token_endpoint_auth_method, \
     redirect_uris, post_logout_redirect_uris, scopes, id_token_signed_response_alg, require_pkce, access_token_ttl, status, \
     grant_types, service_scopes, refresh_token_ttl, backchannel_logout_uri, disabled_at, previous_secret_hash, \
     previous_secret_expires_at, token_generation, \
     (SELECT COUNT(*) FROM emergency_stops es \
      WHERE es.kind = 'system' AND es.target_id = clients.client_id AND es.lifted_at IS NULL) AS emergency_stops";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Client, ClientError> {
    let client_type: String = row.try_get("client_type")?;
    let method: String = row.try_get("token_endpoint_auth_method")?;
    let redirect_uris: String = row.try_get("redirect_uris")?;
    let post_logout: String = row.try_get("post_logout_redirect_uris")?;
    let scopes: String = row.try_get("scopes")?;
    let alg: String = row.try_get("id_token_signed_response_alg")?;
    let require_pkce: i64 = row.try_get("require_pkce")?;
    let grant_types: String = row.try_get("grant_types")?;
    let service_scopes: String = row.try_get("service_scopes")?;
    Ok(Client {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        owner_org_unit_id: row.try_get("owner_org_unit_id")?,
        client_type: if client_type == "public" { ClientType::Public } else { ClientType::Confidential },
        token_endpoint_auth_method: AuthMethod::parse(&method)?,
        redirect_uris: serde_json::from_str(&redirect_uris).unwrap_or_default(),
        post_logout_redirect_uris: serde_json::from_str(&post_logout).unwrap_or_default(),
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        id_token_signed_response_alg: SigningAlg::parse(&alg)?,
        require_pkce: require_pkce != 0,
        access_token_ttl: row.try_get("access_token_ttl")?,
        grant_types: grant_types.split_whitespace().filter_map(GrantType::parse).collect(),
        service_scopes: service_scopes.split_whitespace().map(str::to_owned).collect(),
        refresh_token_ttl: row.try_get("refresh_token_ttl")?,
        backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
        status: row.try_get("status")?,
        disabled_at: row.try_get("disabled_at")?,
        previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
        secret_hash: row.try_get("secret_hash")?,
        previous_secret_hash: row.try_get("previous_secret_hash")?,
        emergency_stopped: row.try_get::<i64, _>("emergency_stops")? > 0,
        token_generation: row.try_get("token_generation")?,
    })
}

/// The one rule of whether a system may be used now: enabled, and no emergency stop holds it.
fn active(status: &str, emergency_stopped: bool) -> bool {
    status == "active" && !emergency_stopped
}

/// What a token's live-state check needs of the system that holds it, read in the check's own
/// query (see [`live_columns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveClient {
    /// [`Client::is_active`]: enabled and not stopped.
    pub active: bool,
    pub token_generation: i64,
    /// The scopes registered for the system (what userinfo may release one by one).
    pub scopes: Vec<String>,
}

/// The columns (named `client_…`) a live-state check selects from `clients` under `alias`,
/// the emergency stop included, so that one query reads the system with the rest.
pub fn live_columns(alias: &str) -> String {
    format!(
        "{alias}.status AS client_status, {alias}.token_generation AS client_token_generation, \
         {alias}.scopes AS client_scopes, {} AS client_stops",
        crate::stops::stops_in_force_sql(crate::stops::Kind::System, &format!("{alias}.client_id"))
    )
}

/// Reads [`live_columns`]; None when the row has no system (an outer join found none).
pub fn live_from_row(row: &sqlx::any::AnyRow) -> Result<Option<LiveClient>, sqlx::Error> {
    let Some(status) = row.try_get::<Option<String>, _>("client_status")? else { return Ok(None) };
    let scopes: String = row.try_get("client_scopes")?;
    Ok(Some(LiveClient {
        active: active(&status, row.try_get::<i64, _>("client_stops")? > 0),
        token_generation: row.try_get("client_token_generation")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
    }))
}

pub async fn get(store: &Store, client_id: &str) -> Result<Option<Client>, ClientError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM clients WHERE client_id = $1"))
        .bind(client_id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<Client>, ClientError> {
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM clients ORDER BY client_id")).fetch_all(store.pool()).await?;
    rows.iter().map(from_row).collect()
}

/// The client `client_id`, read inside `tx` once its row is locked, so that two changes to one
/// client apply one after the other instead of the second overwriting the first.
async fn get_locked(tx: &mut Tx, client_id: &str) -> Result<Client, ClientError> {
    if client_id == CONSOLE_CLIENT_ID {
        return Err(ClientError::StateConflict("the admin console is provisioned by Sekimori at start, not changed here"));
    }
    // A write that changes nothing takes the row lock on PostgreSQL without dialect-specific
    // SQL (`FOR UPDATE`); on SQLite the transaction already holds the one write lock.
    let locked = sqlx::query("UPDATE clients SET status = status WHERE client_id = $1")
        .bind(client_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if locked == 0 {
        return Err(ClientError::NotFound);
    }
    // Whatever the change, every node drops what it caches of systems when it commits.
    crate::store::changes::announce(tx, crate::store::changes::Change::Systems).await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM clients WHERE client_id = $1"))
        .bind(client_id)
        .fetch_one(&mut **tx)
        .await?;
    from_row(&row)
}
