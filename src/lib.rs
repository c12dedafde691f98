//! Sekimori (関守): an OpenID Provider for municipal governments.
//!
//! Comments cite the requirements as R1–R22; `docs/compliance.md` maps each to the regulation
//! articles it serves, the code and the tests.
//!
//! `App` is built once from the config: store, clock, password hasher, signing keys. Two
//! routers serve it: [`public_router`] (OIDC and login pages) and [`admin_router`]
//! (management API), each on its own listener (R18).

pub mod access;
pub mod admin;
pub mod audit;
pub mod authenticators;
pub mod backchannel;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod directory;
pub mod emergency;
pub mod health;
pub mod hr;
pub mod invalid;
pub mod jobs;
pub mod listener;
pub mod login;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod params;
pub mod password;
pub mod reports;
pub mod revocation;
pub mod scim;
pub mod sessions;
pub mod stops;
pub mod store;
pub mod systems;
pub mod web;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use clock::Clock;
use config::Config;
use crypto::MasterKey;
use oidc::keys::KeySet;
use password::Hasher;
use store::Store;

/// Internal failures, whatever their source. Boundaries turn them into their own error shape
/// (OAuth error, problem+json, error page) and log them once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
    #[error(transparent)]
    Client(#[from] systems::ClientError),
    #[error(transparent)]
    Access(#[from] access::AccessError),
    #[error(transparent)]
    Key(#[from] oidc::keys::KeyError),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    #[error(transparent)]
    MasterKey(#[from] crypto::MasterKeyError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

impl Error {
    /// Whether the database abandoned the work to break a deadlock (`store::is_transient`):
    /// nothing of it was written, and done again it goes through.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Database(db) if store::is_transient(db))
    }
}

/// Everything a request handler needs, cheap to clone.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub store: Store,
    pub clock: Clock,
    pub hasher: Hasher,
    pub keys: KeySet,
    /// Key for CSRF form tokens, derived from the master key so that every node agrees.
    pub csrf_key: [u8; 32],
    /// Key for password fingerprints (R9), derived from the master key: never in the database.
    pub fingerprint_key: [u8; 32],
    /// The WebAuthn relying party; None when the issuer has no domain (an IP address).
    pub webauthn: Option<webauthn_rs::Webauthn>,
    /// The card models enrollment is limited to, if the organisation set any.
    pub attestation: Option<webauthn_rs::prelude::AttestationCaList>,
    /// The figures `/metrics` shows (R20).
    pub metrics: metrics::Metrics,
    /// Key signing the audit chain's checkpoints, derived from the master key (R16).
    pub checkpoint_key: [u8; 32],
    /// This node's place among the nodes on one database: is it the jobs leader (R22).
    pub cluster: cluster::Cluster,
    /// Group commit for the audit events that are a request's only write (R16).
    pub grouped_events: audit::Grouped,
    /// Group commit for refresh-token rotations (`oidc::grants`).
    pub grouped_refreshes: oidc::grants::GroupedRefreshes,
    /// The consuming systems as client authentication reads them (`systems::cache`).
    pub clients: systems::cache::ClientCache,
    /// The state behind people's access tokens as introspection and userinfo read it
    /// (`oidc::token_cache`).
    pub tokens: oidc::token_cache::TokenCache,
}

impl Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl App {
    /// What this node keeps of the database is read under this stamp, taken before reading
    /// (`store::changes::Kept`): the changes counted so far and the clock's second.
    pub fn stamp(&self) -> store::changes::Stamp {
        store::changes::Stamp { changes: self.store.changes().now(), second: self.clock.now() }
    }

    /// The authentication classes this server can deliver: the card's only when WebAuthn
    /// works here (the issuer is a domain name).
    pub fn acr_values_supported(&self) -> &'static [&'static str] {
        let all = &oidc::claims::ACR_VALUES_SUPPORTED;
        if self.webauthn.is_some() {
            all
        } else {
            &all[..1]
        }
    }

    /// Connects, migrates, loads (or creates) signing keys.
    pub async fn build(config: Config, clock: Clock) -> Result<App, Error> {
        let (store, master) = open_store(&config).await?;
        Self::with_store(config, clock, store, &master).await
    }

    pub async fn with_store(config: Config, clock: Clock, store: Store, master: &MasterKey) -> Result<App, Error> {
        // A replaced key stays published as long as anything it signed can live, plus what a
        // consuming system may cache the JWKS for.
        let retention = config.tokens.id_token_ttl.max(config::MAX_ACCESS_TOKEN_TTL)
            + backchannel::LOGOUT_TOKEN_TTL
            + oidc::discovery::JWKS_MAX_AGE;
        let keys = KeySet::load_or_create(&store, master, clock.clone(), retention).await?;
        // The console and its administrative roles, as this version defines them. Two nodes
        // starting together may race to create them: the loser finds them made and checks again.
        let console_url = config.console_url();
        if admin::roles::provision(&store, &console_url, &config.tokens, clock.now()).await.is_err() {
            admin::roles::provision(&store, &console_url, &config.tokens, clock.now()).await?;
        }
        let hasher = Hasher::new(&config.password)?;
        let csrf_key = master.derive_key(b"sekimori csrf v1");
        let fingerprint_key = master.derive_key(b"sekimori password fingerprint v1");
        store.set_audit_key(audit::chain_key(master)).map_err(|e| config::ConfigError::Invalid(e.to_string()))?;
        let webauthn = authenticators::relying_party(&config);
        let attestation = authenticators::attestation_ca_list(&config).map_err(config::ConfigError::Invalid)?;
        let grouped_events = audit::Grouped::start(&store);
        let tokens = oidc::token_cache::TokenCache::start(&store);
        let grouped_refreshes = store::GroupCommit::start(store.clone());
        Ok(App(Arc::new(AppInner {
            config,
            store,
            clock,
            hasher,
            keys,
            csrf_key,
            fingerprint_key,
            webauthn,
            attestation,
            metrics: metrics::Metrics::new(),
            checkpoint_key: audit::checkpoint::signing_key(master),
            cluster: cluster::Cluster::default(),
            grouped_events,
            grouped_refreshes,
            clients: systems::cache::ClientCache::default(),
            tokens,
        })))
    }
}

/// Connects, migrates and loads the master key (creating it only for a database that holds
/// nothing sealed or keyed with one), and gives the store the audit chain's key: what every
/// command that records events needs, with or without a whole [`App`].
pub async fn open_store(config: &Config) -> Result<(Store, MasterKey), Error> {
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    let master = match &config.master_key {
        Some(key) => MasterKey::from_base64(key)?,
        None => {
            let holds_keys = oidc::keys::any_stored(&store).await?;
            let head = audit::head(store.pool()).await?;
            let holds_keyed_events = head.seq >= head.keyed_from || audit::seal::lag(&store, 0).await?.0 > 0;
            MasterKey::load_or_create(&config.master_key_file, !holds_keys && !holds_keyed_events)?
        }
    };
    store.set_audit_key(audit::chain_key(&master)).map_err(|e| config::ConfigError::Invalid(e.to_string()))?;
    Ok((store, master))
}

/// A body refused for its size was not read: the connection cannot carry another request, so
/// the client is told to close it (otherwise it may reuse it and see its next request fail).
async fn close_after_refused_body(response: axum::response::Response) -> axum::response::Response {
    let mut response = response;
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    response
}

/// A request, its body included, that takes longer than the configured limit is answered 408.
fn request_timeout(app: &App) -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        std::time::Duration::from_secs(app.config.limits.request_timeout_seconds),
    )
}

/// OIDC endpoints and login pages.
pub fn public_router(app: App) -> Router {
    Router::new()
        .merge(oidc::router())
        .merge(web::router())
        .route("/health", axum::routing::get(health::health))
        .layer(axum::middleware::from_fn(web::security_headers))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .layer(request_timeout(&app))
        .layer(axum::middleware::map_response(close_after_refused_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// The management API.
pub fn admin_router(app: App) -> Router {
    admin::router()
        // The HR feed's SCIM 2.0 service: its own protocol and error shape, beside the JSON API.
        .nest("/scim/v2", scim::router())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1024 * 1024))
        .layer(request_timeout(&app))
        // Errors produced by layers (the body limit) speak problem+json too.
        .layer(axum::middleware::map_response(admin::problem::problem_for_plain_errors))
        .layer(axum::middleware::map_response(close_after_refused_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// Listeners bound and ready to serve.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

/// A listener that could not be opened, named.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({which} listener): {source}")]
pub struct BindError {
    pub address: SocketAddr,
    pub which: &'static str,
    pub source: std::io::Error,
}

impl Listeners {
    pub async fn bind(public: SocketAddr, admin: SocketAddr) -> Result<Self, BindError> {
        let open = |address: SocketAddr, which: &'static str| async move {
            TcpListener::bind(address).await.map_err(|source| BindError { address, which, source })
        };
        Ok(Self { public: open(public, "public").await?, admin: open(admin, "admin").await? })
    }
}

/// Serves both routers until `shutdown` resolves.
pub async fn serve(
    app: App,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The sweeper, HR changes and the access job run on the jobs leader only (R22).
    let node = cluster::join(&app);
    jobs::spawn_key_reloader(app.clone());
    backchannel::spawn_worker(app.clone());
    notify::mail::spawn_worker(app.clone());
    audit::checkpoint::spawn_writer(app.clone(), app.checkpoint_key);
    audit::seal::spawn(app.clone());
    store::wal::spawn_checkpointer(app.store.clone());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let limits = listener::Limits::from_config(&app.config);
    let public = listener::serve(listeners.public, public_router(app.clone()), limits.clone(), rx.clone());
    let admin = listener::serve(listeners.admin, admin_router(app.clone()), limits, rx);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let (a, b) = tokio::join!(public, admin);
    // Only once the requests in flight are answered do the singleton jobs stop and the jobs
    // lock go to another node (R20).
    node.leave().await;
    // The requests answered are all committed: their events are sealed before the process
    // ends, so a clean stop leaves no unsealed tail.
    if let Err(e) = audit::seal::seal(&app.store, app.clock.now()).await {
        tracing::warn!(error = %e, "sealing the last audit events at shutdown failed; the next start seals them");
    }
    a.and(b)
}
