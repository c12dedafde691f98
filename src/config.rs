//! One typed configuration: defaults, then an optional TOML file, then `SEKIMORI_*` environment
//! variables. Every field has a default so that `sekimori` runs with no file at all.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Upper bounds of token lifetimes (any client's), which key rotation relies on: a superseded
/// signing key stays published this long.
pub const MAX_ACCESS_TOKEN_TTL: i64 = 3600;
pub const MAX_REFRESH_TOKEN_TTL: i64 = 90 * 86_400;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Public listener: OIDC endpoints and login pages.
    pub public_addr: SocketAddr,
    /// Admin listener: management API. Keep it on the internal network (R18).
    pub admin_addr: SocketAddr,
    /// The issuer identifier; must be the public URL consuming systems reach.
    pub issuer: String,
    /// The URL administrators' browsers reach the admin listener at (the console); default
    /// `http://` and `admin_addr`. The console logs in through the issuer and is sent back here.
    pub console_url: Option<String>,
    /// `sqlite:sekimori.db` (default) or `postgres://user@host/db`.
    pub database_url: String,
    /// Base64 of 32 random bytes encrypting signing keys at rest. When unset, a key file is
    /// created next to the SQLite database (see `master_key_file`).
    pub master_key: Option<String>,
    /// File holding the master key when `master_key` is not given.
    pub master_key_file: String,
    /// Mark cookies `Secure`. Default: true when the issuer is https.
    pub secure_cookies: Option<bool>,
    /// Addresses of reverse proxies (the external-access server) whose `X-Forwarded-For` is
    /// believed when attributing logins to a source address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Allow an `http://` issuer reached beyond this machine (public listener or issuer host
    /// not loopback). Passwords and session cookies would cross the network in clear: only for
    /// an isolated test network. Default false: such a start is refused.
    pub allow_insecure_http: bool,
    pub session: SessionConfig,
    pub tokens: TokenConfig,
    pub password: PasswordConfig,
    pub webauthn: WebauthnConfig,
    pub limits: LimitsConfig,
    pub hr: HrConfig,
    pub access: AccessConfig,
    pub mail: MailConfig,
    pub audit: AuditConfig,
    pub reports: ReportsConfig,
    pub alerts: AlertsConfig,
}

/// The audit log (R16): checkpoints kept outside the database, and how long events are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// A file to which every node appends a signed checkpoint of the audit chain every
    /// `checkpoint_interval` seconds. Ship it somewhere the database's administrators cannot
    /// write (a log collector, another host): `sekimori audit verify --checkpoints` proves the
    /// chain against it. None (the default): no checkpoints are written by the server.
    pub checkpoint_file: Option<String>,
    /// Seconds between checkpoints.
    pub checkpoint_interval: u64,
    /// Days an event is kept in the database at least: `sekimori audit archive` refuses to
    /// remove anything younger. Default 1825 (five years).
    pub retention_days: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { checkpoint_file: None, checkpoint_interval: 300, retention_days: 1825 }
    }
}

/// The auditors' reports (R16, R19): what counts as office hours, and when something is old.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// Office hours on working days, Japan time, `HH:MM-HH:MM`. A login outside them, or on a
    /// closed day (weekend, national holiday, 12/29–1/3, `closed_dates`), is reported.
    pub office_hours: String,
    /// Further days the municipality is closed (`YYYY-MM-DD`), e.g. a local holiday.
    pub closed_dates: Vec<String>,
    /// An account without a login for this many days is dormant.
    pub dormant_days: i64,
    /// A card not used for this many days is reported.
    pub card_unused_days: i64,
    /// Grants of a role without its own review interval are due for review after this many
    /// days without a confirmation.
    pub review_days: i64,
    /// How many accounts and source addresses the failed-login tables list.
    pub top: i64,
    /// Where the self-inspection report (R19) and the analysis of the month before (R16) are
    /// written once a month (`reports::monthly`): an absolute path to a directory others cannot
    /// read. None: not written (an auditor makes them in the console, or the operator runs
    /// `report compliance` and `report analysis`).
    pub monthly_dir: Option<std::path::PathBuf>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            office_hours: "08:30-17:15".into(),
            closed_dates: Vec::new(),
            dormant_days: 90,
            card_unused_days: 90,
            review_days: 365,
            top: 20,
            monthly_dir: None,
        }
    }
}

/// Office hours as minutes after midnight, start included, end excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfficeHours {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl ReportsConfig {
    /// `office_hours` read: `08:30-17:15`.
    pub fn office_hours(&self) -> Result<OfficeHours, ConfigError> {
        let bad = || {
            ConfigError::Invalid(format!(
                "reports.office_hours must be HH:MM-HH:MM with the start before the end, e.g. 08:30-17:15 (found {:?})",
                self.office_hours
            ))
        };
        let minute = |text: &str| -> Option<u16> {
            let (h, m) = text.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (start, end) = self.office_hours.split_once('-').ok_or_else(bad)?;
        let (start_minute, end_minute) = (minute(start).ok_or_else(bad)?, minute(end).ok_or_else(bad)?);
        if start_minute >= end_minute {
            return Err(bad());
        }
        Ok(OfficeHours { start_minute, end_minute })
    }

    /// `closed_dates` read.
    pub fn closed_dates(&self) -> Result<Vec<time::Date>, ConfigError> {
        self.closed_dates
            .iter()
            .map(|d| {
                // Parsed here, not by `directory`: configuration sits below every module.
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| {
                    ConfigError::Invalid(format!("reports.closed_dates: {d:?} is not a date written YYYY-MM-DD"))
                })
            })
            .collect()
    }
}

/// R17: when continuing abnormal access alerts the security managers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Lockouts of one account within `window_seconds` that alert.
    pub account_lockouts: i64,
    /// Times one source address is throttled within `window_seconds` that alert.
    pub source_throttles: i64,
    /// The window a streak is counted in, in seconds (default a day).
    pub window_seconds: i64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self { account_lockouts: 3, source_throttles: 3, window_seconds: 86_400 }
    }
}

/// Need-based access: requests, grants and the sessions that use secret-class roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// A request nobody decides lapses after this many days.
    pub request_lapse_days: i64,
    /// Days a review campaign runs when its deadline is not given.
    pub review_days: i64,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self { request_lapse_days: 14, review_days: 14 }
    }
}

/// E-mail notifications. Off by default: every notice is still shown on the person's pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Send notices by e-mail (to the address HR gave for the person).
    pub enabled: bool,
    /// The SMTP relay: `smtp://host:port` (plain, for a relay on the internal network),
    /// `smtp://host:port?tls=required` (STARTTLS) or `smtps://host:port`.
    pub smtp_url: String,
    /// The sender, e.g. `関守 <sekimori@city.example.lg.jp>`.
    pub from: String,
    /// Attempts before a message is given up (each later than the last).
    pub max_attempts: i64,
}

impl MailConfig {
    /// The sender, `from`, as a mailbox.
    pub fn sender(&self) -> Result<lettre::message::Mailbox, ConfigError> {
        self.from.parse().map_err(|e| {
            ConfigError::Invalid(format!(
                "mail.from is not an e-mail address ({e}); write it like 関守 <sekimori@city.example.lg.jp>"
            ))
        })
    }

    /// The relay `smtp_url` names: host, port, TLS and any credentials. (The message never
    /// repeats the URL, which may hold a password.)
    pub fn relay(&self) -> Result<lettre::transport::smtp::AsyncSmtpTransportBuilder, ConfigError> {
        let relay = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&self.smtp_url).map_err(|e| {
            ConfigError::Invalid(format!(
                "mail.smtp_url is not usable ({e}); write smtp://host:port, smtp://host:port?tls=required or smtps://host:port"
            ))
        })?;
        // A password goes over TLS only, and not over TLS that an attacker on the way can strip
        // (`tls=opportunistic`).
        if let Ok(url) = url::Url::parse(&self.smtp_url) {
            let tls_required = url.scheme() == "smtps" || url.query_pairs().any(|(k, v)| k == "tls" && v == "required");
            if url.password().is_some() && !tls_required {
                return Err(ConfigError::Invalid(
                    "mail.smtp_url holds a password but no TLS: use smtp://host:port?tls=required or smtps://host:port"
                        .into(),
                ));
            }
        }
        Ok(relay)
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            smtp_url: "smtp://127.0.0.1:25".into(),
            from: "Sekimori <sekimori@localhost>".into(),
            max_attempts: 16,
        }
    }
}

/// The HR feed's calendar.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HrConfig {
    /// The hour (Japan time) of a leaver's last day at which the leave takes effect: 24 (the
    /// default) is the end of that day, midnight; 18 would end them at 18:00 on their last day.
    pub leave_cutoff_hour: u8,
    /// The safety valve: a file that would leave, suspend or move more than this share (in
    /// percent) of the active people is held for an administrator's confirmation.
    pub max_share_percent: u8,
    /// The same valve as an absolute count, for large directories where a share is too many.
    pub max_people: u64,
    /// The valve for a feed (SCIM), whose changes come one request at a time: once its leaves,
    /// suspensions and moves of active people in the last 24 hours would pass this many, the
    /// next ones are held for an administrator's confirmation.
    pub feed_max_per_day: u64,
}

impl Default for HrConfig {
    fn default() -> Self {
        Self { leave_cutoff_hour: 24, max_share_percent: 10, max_people: 200, feed_max_per_day: 200 }
    }
}

/// What one client may hold of a listener: slow or greedy clients are cut off so that the
/// others keep being answered.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Seconds a client may take to send a request's headers, and to start its next request on
    /// a kept-alive connection; then the connection is closed.
    pub header_read_timeout_seconds: u64,
    /// Seconds a request may take, its body included, before it is answered 408.
    pub request_timeout_seconds: u64,
    /// Most connections open at once on each listener; a new one beyond is closed at once.
    pub max_connections: usize,
    /// Most connections open at once from one source address (the configured trusted proxies
    /// are exempt: everyone behind them shares their address).
    pub max_connections_per_source: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_connections: 4096,
            max_connections_per_source: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebauthnConfig {
    /// The relying party id: a domain, the issuer's host or a parent of it. Default: the
    /// issuer's host. WebAuthn does not work when the issuer is an IP address.
    pub rp_id: Option<String>,
    /// The name authenticators show.
    pub rp_name: String,
    /// Seconds an enrollment code stays usable.
    pub enrollment_code_ttl: i64,
    /// Seconds a started ceremony (enrollment or card login) may take.
    pub ceremony_ttl: i64,
    /// Whether a person with an active card must use it after the password. When false, the
    /// card is asked for only when a consuming system demands it (acr_values).
    pub require_card_when_enrolled: bool,
    /// A person whose card was stopped (reported lost) needs a replacement card to log in: the
    /// password alone is refused, so that stopping someone's card cannot be used to fall back
    /// to a stolen password. Where the organisation's policy allows it, someone other than the
    /// reporter may grant a temporary password-only exception for at most this many days;
    /// 0 (the default) allows none.
    pub password_only_exception_max_days: i64,
    /// For organisations that issue specific card models: when any are listed, only
    /// authenticators whose attestation chains to one of these CAs, with one of these AAGUIDs,
    /// can be enrolled.
    pub attestation: Vec<AttestedModel>,
}

/// A card model the organisation accepts: its maker's attestation CA and its AAGUID.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestedModel {
    /// PEM file of the attestation root CA.
    pub ca_pem_file: String,
    pub aaguid: uuid::Uuid,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Seconds of inactivity after which a browser session ends (R15).
    pub idle_timeout: i64,
    /// The shorter idle timeout of a session that obtained a secret-class role (R6, R15).
    pub secret_role_idle_timeout: i64,
    /// Seconds after login at which a browser session ends whatever its use.
    pub absolute_timeout: i64,
    /// Seconds a pending login (authorization request) stays valid.
    pub login_request_ttl: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Seconds an authorization code stays redeemable.
    pub code_ttl: i64,
    /// Default access token lifetime in seconds (per client override).
    pub access_token_ttl: i64,
    /// ID token lifetime in seconds.
    pub id_token_ttl: i64,
    /// Default lifetime in seconds of a refresh-token family, counted from the login (per
    /// client override). A family bound to a browser session also ends with the session.
    pub refresh_token_ttl: i64,
    /// Lifetime in seconds of an admin API token created without `expires_in` (default 30
    /// days): a forgotten script's token should not outlive a quarter.
    pub api_token_ttl: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// argon2id parallelism (OWASP: 1).
    pub argon2_parallelism: u32,
    /// How many hashes may run at once; further logins wait their turn.
    pub max_concurrent_hashes: usize,
    /// How many more may wait for a hashing slot before logins are refused with 503.
    pub max_queued_hashes: usize,
    /// Optional pepper: base64 of a secret mixed into every hash (argon2's secret input). It
    /// lives outside the database; changing it invalidates every stored password.
    pub pepper: Option<String>,
    /// Shortest acceptable password, in characters.
    pub min_length: usize,
    /// Lowest acceptable zxcvbn score (0–4).
    pub min_score: u8,
    /// How many earlier passwords may not be used again.
    pub history: usize,
    /// Days a password stays valid (R10); 0 means it never expires.
    pub max_age_days: i64,
    /// Per person kind overrides of `max_age_days`, e.g. `{ contractor = 60 }`.
    pub max_age_days_by_kind: std::collections::BTreeMap<String, i64>,
    /// Days before expiry from which the login page warns.
    pub warn_days: i64,
    /// Consecutive failures after which an account is locked (R17).
    pub lockout_threshold: i64,
    /// First lock in seconds; each further failure doubles it.
    pub lockout_base_seconds: i64,
    /// Longest lock in seconds.
    pub lockout_max_seconds: i64,
    /// Failed logins from one source address within `source_window_seconds` before that
    /// address is refused with 429.
    pub source_max_failures: i64,
    pub source_window_seconds: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            public_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            issuer: "http://127.0.0.1:8080".into(),
            console_url: None,
            database_url: "sqlite:sekimori.db".into(),
            master_key: None,
            master_key_file: "sekimori-master.key".into(),
            secure_cookies: None,
            trusted_proxies: Vec::new(),
            allow_insecure_http: false,
            session: SessionConfig::default(),
            tokens: TokenConfig::default(),
            password: PasswordConfig::default(),
            webauthn: WebauthnConfig::default(),
            limits: LimitsConfig::default(),
            hr: HrConfig::default(),
            access: AccessConfig::default(),
            mail: MailConfig::default(),
            audit: AuditConfig::default(),
            reports: ReportsConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl Default for WebauthnConfig {
    fn default() -> Self {
        Self {
            rp_id: None,
            rp_name: "関守".into(),
            enrollment_code_ttl: 72 * 3600,
            ceremony_ttl: 300,
            require_card_when_enrolled: true,
            password_only_exception_max_days: 0,
            attestation: Vec::new(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: 30 * 60,
            secret_role_idle_timeout: 10 * 60,
            absolute_timeout: 10 * 3600,
            login_request_ttl: 15 * 60,
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            code_ttl: 60,
            access_token_ttl: 300,
            id_token_ttl: 3600,
            refresh_token_ttl: 10 * 3600,
            api_token_ttl: 30 * 86_400,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 4,
            max_queued_hashes: 256,
            pepper: None,
            min_length: 12,
            min_score: 3,
            history: 5,
            max_age_days: 90,
            max_age_days_by_kind: Default::default(),
            warn_days: 14,
            lockout_threshold: 5,
            lockout_base_seconds: 30,
            lockout_max_seconds: 3600,
            source_max_failures: 30,
            source_window_seconds: 300,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("invalid value for {var}: {reason}")]
    Env { var: &'static str, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `path` if given, then environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                toml::from_str(&text)
                    .map_err(|source| ConfigError::Parse { path: path.display().to_string(), source })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &'static str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env { var, reason: e.to_string() })
        }
        if let Some(v) = get("SEKIMORI_PUBLIC_ADDR") {
            self.public_addr = parse("SEKIMORI_PUBLIC_ADDR", v)?;
        }
        if let Some(v) = get("SEKIMORI_ADMIN_ADDR") {
            self.admin_addr = parse("SEKIMORI_ADMIN_ADDR", v)?;
        }
        if let Some(v) = get("SEKIMORI_ISSUER") {
            self.issuer = v;
        }
        if let Some(v) = get("SEKIMORI_CONSOLE_URL") {
            self.console_url = Some(v);
        }
        if let Some(v) = get("SEKIMORI_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("SEKIMORI_MASTER_KEY") {
            self.master_key = Some(v);
        }
        if let Some(v) = get("SEKIMORI_MASTER_KEY_FILE") {
            self.master_key_file = v;
        }
        if let Some(v) = get("SEKIMORI_PASSWORD_PEPPER") {
            self.password.pepper = Some(v);
        }
        if let Some(v) = get("SEKIMORI_SECURE_COOKIES") {
            self.secure_cookies = Some(parse("SEKIMORI_SECURE_COOKIES", v)?);
        }
        if let Some(v) = get("SEKIMORI_ALLOW_INSECURE_HTTP") {
            self.allow_insecure_http = parse("SEKIMORI_ALLOW_INSECURE_HTTP", v)?;
        }
        Ok(())
    }

    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let issuer =
            url::Url::parse(&self.issuer).map_err(|e| ConfigError::Invalid(format!("issuer is not a URL: {e}")))?;
        // OIDC Discovery §3: the issuer is https (http only for local development), with no
        // query or fragment.
        if !matches!(issuer.scheme(), "https" | "http") || issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(ConfigError::Invalid("issuer must be an http(s) URL without query or fragment".into()));
        }
        // Plain http carries passwords and session cookies in clear: it is for this machine
        // only (the demo and the tests), unless explicitly allowed.
        if issuer.scheme() == "http" && !self.allow_insecure_http {
            let issuer_local = match issuer.host() {
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !self.public_addr.ip().is_loopback() || !issuer_local {
                return Err(ConfigError::Invalid(format!(
                    "the issuer {} is plain http but reachable beyond this machine (public_addr {}): \
                     passwords and session cookies would cross the network unencrypted. Use an https \
                     issuer (TLS at the reverse proxy), bind public_addr to 127.0.0.1, or set \
                     allow_insecure_http = true for an isolated test network",
                    self.issuer, self.public_addr
                )));
            }
        }
        self.issuer = self.issuer.trim_end_matches('/').to_owned();
        if let Some(console) = &self.console_url {
            let url = url::Url::parse(console)
                .map_err(|e| ConfigError::Invalid(format!("console_url is not a URL: {e}")))?;
            if !matches!(url.scheme(), "https" | "http") || url.query().is_some() || url.fragment().is_some() {
                return Err(ConfigError::Invalid("console_url must be an http(s) URL without query or fragment".into()));
            }
        }
        let positive = [
            ("session.idle_timeout", self.session.idle_timeout),
            ("session.absolute_timeout", self.session.absolute_timeout),
            ("session.login_request_ttl", self.session.login_request_ttl),
            ("tokens.code_ttl", self.tokens.code_ttl),
            ("tokens.access_token_ttl", self.tokens.access_token_ttl),
            ("tokens.id_token_ttl", self.tokens.id_token_ttl),
            ("tokens.refresh_token_ttl", self.tokens.refresh_token_ttl),
            ("tokens.api_token_ttl", self.tokens.api_token_ttl),
            ("webauthn.enrollment_code_ttl", self.webauthn.enrollment_code_ttl),
            ("webauthn.ceremony_ttl", self.webauthn.ceremony_ttl),
            ("audit.retention_days", self.audit.retention_days),
        ];
        if self.audit.checkpoint_interval == 0 {
            return Err(ConfigError::Invalid("audit.checkpoint_interval must be positive".into()));
        }
        for (name, value) in positive {
            if value <= 0 {
                return Err(ConfigError::Invalid(format!("{name} must be positive")));
            }
        }
        // Key rotation keeps a superseded key published for the longest token lifetime. Each
        // rule is checked on its own, so that the message names the one setting at fault.
        let p = &self.password;
        let rules: [(bool, &str); 12] = [
            (self.tokens.access_token_ttl <= MAX_ACCESS_TOKEN_TTL, "tokens.access_token_ttl must be at most 3600"),
            (
                self.tokens.refresh_token_ttl <= MAX_REFRESH_TOKEN_TTL,
                "tokens.refresh_token_ttl must be at most 7776000 (90 days)",
            ),
            (self.tokens.id_token_ttl <= 86_400, "tokens.id_token_ttl must be at most 86400"),
            (p.min_length >= 8, "password.min_length must be at least 8"),
            (p.min_score <= 4, "password.min_score must be 0 to 4"),
            (p.history <= 50, "password.history must be at most 50"),
            (p.max_age_days >= 0, "password.max_age_days must not be negative"),
            (p.warn_days >= 0, "password.warn_days must not be negative"),
            (p.lockout_threshold >= 1, "password.lockout_threshold must be positive"),
            (p.lockout_base_seconds >= 1, "password.lockout_base_seconds must be positive"),
            (
                p.lockout_max_seconds >= p.lockout_base_seconds,
                "password.lockout_max_seconds must be at least lockout_base_seconds",
            ),
            (
                p.source_max_failures >= 1 && p.source_window_seconds >= 1,
                "password.source_max_failures and source_window_seconds must be positive",
            ),
        ];
        if let Some((_, broken)) = rules.iter().find(|(holds, _)| !holds) {
            return Err(ConfigError::Invalid((*broken).to_owned()));
        }
        for kind in p.max_age_days_by_kind.keys() {
            if crate::directory::PersonKind::parse(kind).is_err() {
                return Err(ConfigError::Invalid(format!("password.max_age_days_by_kind: unknown kind {kind}")));
            }
        }
        let l = &self.limits;
        if l.header_read_timeout_seconds == 0
            || l.request_timeout_seconds == 0
            || l.max_connections == 0
            || l.max_connections_per_source == 0
        {
            return Err(ConfigError::Invalid("limits: every timeout and connection cap must be positive".into()));
        }
        if !(0..=30).contains(&self.webauthn.password_only_exception_max_days) {
            return Err(ConfigError::Invalid("webauthn.password_only_exception_max_days must be 0 to 30".into()));
        }
        if self.password.max_concurrent_hashes == 0 {
            return Err(ConfigError::Invalid("password.max_concurrent_hashes must be positive".into()));
        }
        // Hour 0 would end a leaver before their last day began.
        if !(1..=24).contains(&self.hr.leave_cutoff_hour) {
            return Err(ConfigError::Invalid("hr.leave_cutoff_hour must be 1 to 24".into()));
        }
        // 0 would hold every file with a single leaver; more than 100 would never hold one.
        if !(1..=100).contains(&self.hr.max_share_percent) {
            return Err(ConfigError::Invalid("hr.max_share_percent must be 1 to 100".into()));
        }
        if self.hr.max_people == 0 {
            return Err(ConfigError::Invalid("hr.max_people must be positive".into()));
        }
        if !(1..=365).contains(&self.access.request_lapse_days) {
            return Err(ConfigError::Invalid("access.request_lapse_days must be 1 to 365".into()));
        }
        if !(60..=self.session.idle_timeout.max(60)).contains(&self.session.secret_role_idle_timeout) {
            return Err(ConfigError::Invalid(
                "session.secret_role_idle_timeout must be at least 60 seconds and at most session.idle_timeout".into(),
            ));
        }
        if !(1..=365).contains(&self.access.review_days) {
            return Err(ConfigError::Invalid("access.review_days must be 1 to 365".into()));
        }
        if !(1..=100).contains(&self.alerts.account_lockouts) || !(1..=100).contains(&self.alerts.source_throttles) {
            return Err(ConfigError::Invalid(
                "alerts.account_lockouts and alerts.source_throttles must be 1 to 100".into(),
            ));
        }
        if !(60..=30 * 86_400).contains(&self.alerts.window_seconds) {
            return Err(ConfigError::Invalid("alerts.window_seconds must be 60 to 2592000 (30 days)".into()));
        }
        if !(1..=50).contains(&self.mail.max_attempts) {
            return Err(ConfigError::Invalid("mail.max_attempts must be 1 to 50".into()));
        }
        // Mail that is on must be sendable: a sender and a relay that cannot be used refuse the
        // start rather than fill the outbox with failures.
        if self.mail.enabled {
            self.mail.sender()?;
            self.mail.relay()?;
        }
        self.reports.office_hours()?;
        self.reports.closed_dates()?;
        for (name, days) in [
            ("reports.dormant_days", self.reports.dormant_days),
            ("reports.card_unused_days", self.reports.card_unused_days),
            ("reports.review_days", self.reports.review_days),
        ] {
            if !(1..=3660).contains(&days) {
                return Err(ConfigError::Invalid(format!("{name} must be 1 to 3660")));
            }
        }
        if !(1..=1000).contains(&self.reports.top) {
            return Err(ConfigError::Invalid("reports.top must be 1 to 1000".into()));
        }
        if self.hr.feed_max_per_day == 0 {
            return Err(ConfigError::Invalid("hr.feed_max_per_day must be positive".into()));
        }
        Ok(())
    }

    /// Where administrators reach the console, without a trailing slash.
    pub fn console_url(&self) -> String {
        match &self.console_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.admin_addr),
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies.unwrap_or_else(|| self.issuer.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_defaults() {
        let mut config = Config::default();
        config
            .apply_env(|name| match name {
                "SEKIMORI_ISSUER" => Some("https://idp.example.lg.jp/".into()),
                "SEKIMORI_PUBLIC_ADDR" => Some("0.0.0.0:9000".into()),
                _ => None,
            })
            .unwrap();
        config.validate().unwrap();
        assert_eq!(config.issuer, "https://idp.example.lg.jp");
        assert_eq!(config.public_addr.port(), 9000);
        assert!(config.secure_cookies());
    }

    #[test]
    fn bad_environment_value_is_named() {
        let mut config = Config::default();
        let err = config.apply_env(|name| (name == "SEKIMORI_ADMIN_ADDR").then(|| "nonsense".into())).unwrap_err();
        assert!(err.to_string().contains("SEKIMORI_ADMIN_ADDR"));
    }

    #[test]
    fn the_hr_safety_valve_is_validated_one_rule_at_a_time() {
        let config: Config = toml::from_str("[hr]\nmax_share_percent = 25\nmax_people = 500").unwrap();
        assert_eq!((config.hr.max_share_percent, config.hr.max_people), (25, 500));
        for (text, message) in [
            ("[hr]\nmax_share_percent = 0", "hr.max_share_percent must be 1 to 100"),
            ("[hr]\nmax_share_percent = 101", "hr.max_share_percent must be 1 to 100"),
            ("[hr]\nmax_people = 0", "hr.max_people must be positive"),
        ] {
            let mut config: Config = toml::from_str(text).unwrap();
            assert_eq!(config.validate().unwrap_err().to_string(), format!("invalid configuration: {message}"));
        }
    }

    #[test]
    fn mail_that_is_on_needs_a_usable_relay_and_sender() {
        let ok: Config = toml::from_str(
            "[mail]\nenabled = true\nsmtp_url = 'smtp://relay.city.example.lg.jp:25?tls=required'\n\
             from = '関守 <sekimori@city.example.lg.jp>'",
        )
        .unwrap();
        let mut checked = ok.clone();
        checked.validate().unwrap();
        for with_password in ["smtps://user:s3cret@relay.example", "smtp://user:s3cret@relay.example:587?tls=required"]
        {
            let mail = MailConfig { smtp_url: with_password.into(), ..ok.mail.clone() };
            assert!(mail.relay().is_ok(), "{with_password}");
        }
        let sender = ok.mail.sender().unwrap();
        assert_eq!(sender.name.as_deref(), Some("関守"));
        assert_eq!(sender.email.to_string(), "sekimori@city.example.lg.jp");
        for (mail, named) in [
            ("smtp_url = 'http://relay.example'", "mail.smtp_url is not usable"),
            ("smtp_url = 'relay.example:25'", "mail.smtp_url is not usable"),
            ("smtp_url = 'smtp://user:s3cret@relay.example?tls=sometimes'", "mail.smtp_url is not usable"),
            ("smtp_url = 'smtp://user:s3cret@relay.example:25'", "mail.smtp_url holds a password but no TLS"),
            (
                "smtp_url = 'smtp://user:s3cret@relay.example:25?tls=opportunistic'",
                "mail.smtp_url holds a password but no TLS",
            ),
            ("from = 'sekimori'", "mail.from is not an e-mail address"),
            ("from = '関守 <sekimori@>'", "mail.from is not an e-mail address"),
        ] {
            let mut config: Config = toml::from_str(&format!("[mail]\nenabled = true\n{mail}")).unwrap();
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(named), "{mail}: {message}");
            assert!(!message.contains("s3cret"), "the password stays out of the message: {message}");
            // Mail that is off is not checked: notices are only shown on the person's pages.
            let mut off: Config = toml::from_str(&format!("[mail]\nenabled = false\n{mail}")).unwrap();
            off.validate().unwrap();
        }
    }

    #[test]
    fn a_plain_http_issuer_is_refused_beyond_this_machine() {
        // The defaults (the demo) and loopback test set-ups stay allowed.
        for (issuer, public) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://localhost:8080", "127.0.0.1:8080"),
            ("http://[::1]:8080", "[::1]:8080"),
            ("https://idp.city.example.lg.jp", "0.0.0.0:8080"),
        ] {
            let mut config =
                Config { issuer: issuer.into(), public_addr: public.parse().unwrap(), ..Config::default() };
            config.validate().unwrap_or_else(|e| panic!("{issuer} on {public}: {e}"));
        }
        Config::default().validate().unwrap();
        for (issuer, public) in [
            ("http://idp.city.example.lg.jp", "0.0.0.0:8080"),
            ("http://127.0.0.1:8080", "0.0.0.0:8080"),
            ("http://10.1.2.3:8080", "10.1.2.3:8080"),
            // Behind a proxy on this machine, the browser still speaks http to a remote name.
            ("http://idp.city.example.lg.jp", "127.0.0.1:8080"),
        ] {
            let mut config =
                Config { issuer: issuer.into(), public_addr: public.parse().unwrap(), ..Config::default() };
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains("plain http") && message.contains("allow_insecure_http"), "{message}");
            let mut allowed = Config { allow_insecure_http: true, ..config };
            allowed.validate().unwrap();
        }
        let config: Config = toml::from_str("allow_insecure_http = true").unwrap();
        assert!(config.allow_insecure_http);
        let mut config = Config { issuer: "http://10.1.2.3:8080".into(), ..Config::default() };
        config
            .apply_env(|name| match name {
                "SEKIMORI_PUBLIC_ADDR" => Some("10.1.2.3:8080".into()),
                "SEKIMORI_ALLOW_INSECURE_HTTP" => Some("true".into()),
                _ => None,
            })
            .unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn audit_section_is_read_and_checked() {
        let mut config: Config = toml::from_str(
            "[audit]\ncheckpoint_file = '/var/log/sekimori/checkpoints.jsonl'\ncheckpoint_interval = 60\nretention_days = 3650",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.audit.checkpoint_file.as_deref(), Some("/var/log/sekimori/checkpoints.jsonl"));
        assert_eq!((config.audit.checkpoint_interval, config.audit.retention_days), (60, 3650));
        assert_eq!(Config::default().audit.retention_days, 1825);
        for (text, named) in
            [("retention_days = 0", "audit.retention_days"), ("checkpoint_interval = 0", "audit.checkpoint_interval")]
        {
            let mut config: Config = toml::from_str(&format!("[audit]\n{text}")).unwrap();
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(named), "{text}: {message}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<Config>("issuer = 'http://x'\nisuer = 'typo'").is_err());
    }
}
