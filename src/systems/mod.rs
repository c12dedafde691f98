//! Consuming systems (税務, 福祉, 図書館…) registered as OIDC clients.

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
#[derive(Debug, Clone, Serialize)]
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
    pub status: String,
    #[serde(skip)]
    pub secret_hash: Option<String>,
}

impl Client {
    pub fn is_active(&self) -> bool {
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

/// Scopes of a person's login. `offline_access` (OIDC Core §11) lets a refresh-token family
/// outlive the browser session; registering it for a client is the organisation's consent.
/// `staff` adds the login ID and the section (`oidc::claims::STAFF_SCOPE`).
pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "staff", "offline_access"];

/// What a client gets when it does not say: offline access must be asked for.
const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// A scope token (RFC 6749 §3.3) for client_credentials: lower-case words joined by '.', ':'
/// or '-', so that it cannot be mistaken for a person's scope.
fn validate_service_scope(scope: &str) -> Result<(), InvalidField> {
    let ok = (1..=64).contains(&scope.len())
        && scope.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | ':' | '-' | '_'))
        && !SUPPORTED_SCOPES.contains(&scope);
    if ok {
        Ok(())
    } else {
        Err(invalid("service_scopes", format!("{scope:?}: 1 to 64 of a-z, 0-9, '.', ':', '-', '_', not a login scope")))
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField { field, reason: reason.into() }
}

/// A redirect URI must be absolute, without fragment (RFC 6749 §3.1.2), and https unless it
/// points at the loopback interface (RFC 8252 §7.3).
pub fn validate_redirect_uri(field: &'static str, uri: &str) -> Result<(), InvalidField> {
    let parsed = url::Url::parse(uri).map_err(|_| invalid(field, format!("not an absolute URL: {uri}")))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(invalid(field, "must not contain a fragment"));
    }
    if uri.len() > 2000 {
        return Err(invalid(field, "too long"));
    }
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(field, "must use https (http only on the loopback interface)")),
    }
}

fn validate_client_id(value: &str) -> Result<String, InvalidField> {
    let ok = (3..=64).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid("client_id", "must be 3 to 64 characters of a-z, 0-9, '-', '_' or '.'"))
    }
}

/// Registers a client; for a confidential client also returns its secret, shown only now.
pub async fn register(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    defaults: &TokenConfig,
    new: NewClient,
) -> Result<(Client, Option<String>), ClientError> {
    let client_id = match &new.client_id {
        Some(id) => validate_client_id(id)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let name = directory::types::parse_name("name", &new.name)?;
    let method = match (new.client_type, new.token_endpoint_auth_method) {
        (ClientType::Public, None | Some(AuthMethod::None)) => AuthMethod::None,
        (ClientType::Public, Some(_)) => {
            return Err(invalid("token_endpoint_auth_method", "a public client has no secret: use none").into())
        }
        (ClientType::Confidential, None) => AuthMethod::ClientSecretBasic,
        (ClientType::Confidential, Some(AuthMethod::None)) => {
            return Err(invalid("token_endpoint_auth_method", "a confidential client authenticates").into())
        }
        (ClientType::Confidential, Some(m)) => m,
    };
    if new.redirect_uris.is_empty() || new.redirect_uris.len() > 20 {
        return Err(invalid("redirect_uris", "give 1 to 20 redirect URIs").into());
    }
    for uri in new.redirect_uris.iter() {
        validate_redirect_uri("redirect_uris", uri)?;
    }
    for uri in new.post_logout_redirect_uris.iter() {
        validate_redirect_uri("post_logout_redirect_uris", uri)?;
    }
    let scopes = new.scopes.unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
    if !scopes.iter().any(|s| s == "openid") {
        return Err(invalid("scopes", "must include openid").into());
    }
    if let Some(unknown) = scopes.iter().find(|s| !SUPPORTED_SCOPES.contains(&s.as_str())) {
        return Err(invalid("scopes", format!("unsupported scope {unknown}")).into());
    }
    let alg = SigningAlg::parse(new.id_token_signed_response_alg.as_deref().unwrap_or("RS256"))?;
    // Public clients cannot opt out of PKCE (RFC 9700 §2.1.1).
    let require_pkce = match new.client_type {
        ClientType::Public => {
            if new.require_pkce == Some(false) {
                return Err(invalid("require_pkce", "a public client must use PKCE").into());
            }
            true
        }
        ClientType::Confidential => new.require_pkce.unwrap_or(false),
    };
    let ttl = new.access_token_ttl.unwrap_or(defaults.access_token_ttl);
    if !(30..=MAX_ACCESS_TOKEN_TTL).contains(&ttl) {
        return Err(invalid("access_token_ttl", "must be between 30 and 3600 seconds").into());
    }
    let grant_types = new.grant_types.unwrap_or_else(|| vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
    if grant_types.is_empty() {
        return Err(invalid("grant_types", "give at least one grant type").into());
    }
    if grant_types.contains(&GrantType::ClientCredentials) && new.client_type == ClientType::Public {
        return Err(invalid("grant_types", "client_credentials needs a confidential client").into());
    }
    if grant_types.contains(&GrantType::RefreshToken) && !grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(invalid("grant_types", "refresh_token comes only from authorization_code").into());
    }
    let mut service_scopes: Vec<String> = Vec::new();
    for scope in new.service_scopes {
        validate_service_scope(&scope)?;
        if !service_scopes.contains(&scope) {
            service_scopes.push(scope);
        }
    }
    if !service_scopes.is_empty() && !grant_types.contains(&GrantType::ClientCredentials) {
        return Err(
            invalid("service_scopes", "only a client with the client_credentials grant has service scopes").into()
        );
    }
    let refresh_token_ttl = new.refresh_token_ttl.unwrap_or(defaults.refresh_token_ttl);
    if !(60..=MAX_REFRESH_TOKEN_TTL).contains(&refresh_token_ttl) {
        return Err(invalid("refresh_token_ttl", "must be between 60 seconds and 90 days").into());
    }
    if let Some(uri) = &new.backchannel_logout_uri {
        // OpenID Back-Channel Logout §2.2: absolute, no fragment; https outside the loopback.
        validate_redirect_uri("backchannel_logout_uri", uri)?;
    }
    if let Some(org) = &new.owner_org_unit_id {
        if directory::get_org_unit(&mut **tx, org).await?.is_none() {
            return Err(invalid("owner_org_unit_id", "no such org unit").into());
        }
    }
    let secret = (new.client_type == ClientType::Confidential).then(|| crypto::random_token(32));
    let client = Client {
        client_id,
        name,
        owner_org_unit_id: new.owner_org_unit_id,
        client_type: new.client_type,
        token_endpoint_auth_method: method,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        scopes,
        id_token_signed_response_alg: alg,
        require_pkce,
        access_token_ttl: ttl,
        grant_types,
        service_scopes,
        refresh_token_ttl,
        backchannel_logout_uri: new.backchannel_logout_uri,
        status: "active".into(),
        secret_hash: secret.as_deref().map(crypto::sha256_hex),
    };
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
    .bind(serde_json::to_string(&client.redirect_uris).unwrap_or_default())
    .bind(serde_json::to_string(&client.post_logout_redirect_uris).unwrap_or_default())
    .bind(client.scopes.join(" "))
    .bind(client.id_token_signed_response_alg.as_str())
    .bind(i64::from(client.require_pkce))
    .bind(client.access_token_ttl)
    .bind(now)
    .bind(client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" "))
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

const COLUMNS: &str = "client_id, name, owner_org_unit_id, client_type, secret_hash, token_endpoint_auth_method, \
     redirect_uris, post_logout_redirect_uris, scopes, id_token_signed_response_alg, require_pkce, access_token_ttl, status, \
     grant_types, service_scopes, refresh_token_ttl, backchannel_logout_uri";

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
        secret_hash: row.try_get("secret_hash")?,
    })
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
