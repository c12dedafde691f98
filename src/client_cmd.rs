//! R21: `sekimori client …`: consuming systems from the shell. Part of the `sekimori` binary
//! (src/main.rs), not of the library; every command calls the same `sekimori::systems`
//! functions as the admin API, so the rules and the audit events are the same.
//!
//! A refused request (bad input, unknown client, a state that does not allow it) is printed
//! as `error: …` with exit status 2; a failure of Sekimori itself has status 1.

use std::process::ExitCode;

use clap::Subcommand;
use sekimori::audit::Actor;
use sekimori::clock::Clock;
use sekimori::clock::UnixTime;
use sekimori::config::Config;
use sekimori::store::Tx;
use sekimori::systems::{self, AuthMethod, Client, ClientChanges, ClientError, ClientType, GrantType, NewClient};
use sekimori::App;

use crate::japan_time;

type Failure = Box<dyn std::error::Error>;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a consuming system; prints its client_id and, for confidential clients, its secret.
    Add(AddOptions),
    /// List the consuming systems: client_id, status, type, name.
    List,
    /// Show one consuming system's settings (never its secret).
    Show { client_id: String },
    /// Change a consuming system's settings; options left out stay as they are. A list option
    /// given (repeated) replaces the whole list.
    Update {
        client_id: String,
        #[command(flatten)]
        changes: UpdateOptions,
    },
    /// Disable a consuming system: its logins and token requests are refused and every token
    /// issued to it ends now. People's sessions stay.
    Disable { client_id: String },
    /// Enable a disabled consuming system again. Tokens ended when it was disabled stay ended.
    Enable { client_id: String },
    /// Give a confidential client a new secret, printed once. The old secret keeps working
    /// for the grace period, so the system's servers can take the new one in turn.
    RotateSecret {
        client_id: String,
        /// How long the old secret still works: seconds, or a number with s, m, h or d
        /// (at most 30d; 0 ends it now, e.g. when it leaked).
        #[arg(long, default_value = "1d", value_parser = parse_grace)]
        grace: i64,
    },
}

#[derive(clap::Args)]
pub struct AddOptions {
    /// Display name, e.g. 税務システム.
    #[arg(long)]
    name: String,
    /// client_id to use (a-z, 0-9, '-', '_', '.'); generated when omitted.
    #[arg(long)]
    client_id: Option<String>,
    /// Exact redirect URI; repeat for several.
    #[arg(long = "redirect-uri", required = true)]
    redirect_uris: Vec<String>,
    /// A public client (browser or native app): no secret, PKCE required.
    #[arg(long)]
    public: bool,
    /// Authenticate with client_secret_post instead of client_secret_basic.
    #[arg(long)]
    secret_post: bool,
    /// Require PKCE from a confidential client too.
    #[arg(long)]
    require_pkce: bool,
    /// ID token signing algorithm: RS256 (default) or ES256.
    #[arg(long)]
    id_token_alg: Option<String>,
    /// Exact URI to return to after RP-initiated logout; repeat for several.
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Where OpenID Back-Channel Logout notices are POSTed.
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// Grant the client may use: authorization_code, refresh_token, client_credentials;
    /// repeat for several (default: authorization_code and refresh_token).
    #[arg(long = "grant-type", value_parser = parse_grant_type)]
    grant_types: Vec<GrantType>,
    /// Scope a person's login may carry: openid, profile, email, offline_access; repeat
    /// (default: openid, profile, email).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Scope the client may ask for with client_credentials; repeat for several.
    #[arg(long = "service-scope")]
    service_scopes: Vec<String>,
    /// Access token lifetime in seconds (30–3600).
    #[arg(long)]
    access_token_ttl: Option<i64>,
    /// Refresh-token family lifetime in seconds.
    #[arg(long)]
    refresh_token_ttl: Option<i64>,
}

#[derive(Clone, clap::Args)]
pub struct UpdateOptions {
    /// New display name.
    #[arg(long)]
    name: Option<String>,
    /// Exact redirect URI; repeat for several. Replaces the registered ones.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Exact URI to return to after RP-initiated logout; repeat. Replaces the registered ones.
    #[arg(long = "post-logout-redirect-uri", conflicts_with = "no_post_logout_redirect_uris")]
    post_logout_redirect_uris: Vec<String>,
    /// Remove every post-logout redirect URI.
    #[arg(long)]
    no_post_logout_redirect_uris: bool,
    /// Where OpenID Back-Channel Logout notices are POSTed.
    #[arg(long, conflicts_with = "no_backchannel_logout_uri")]
    backchannel_logout_uri: Option<String>,
    /// Send no back-channel logout notices any more.
    #[arg(long)]
    no_backchannel_logout_uri: bool,
    /// The org unit responsible for the system (所管課), by its id.
    #[arg(long, conflicts_with = "no_owner_org_unit")]
    owner_org_unit: Option<String>,
    /// Record no owner org unit.
    #[arg(long)]
    no_owner_org_unit: bool,
    /// Grant the client may use; repeat. Replaces the registered ones.
    #[arg(long = "grant-type", value_parser = parse_grant_type)]
    grant_types: Vec<GrantType>,
    /// Scope a person's login may carry; repeat. Replaces the registered ones.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Scope for client_credentials; repeat. Replaces the registered ones.
    #[arg(long = "service-scope", conflicts_with = "no_service_scopes")]
    service_scopes: Vec<String>,
    /// Remove every service scope.
    #[arg(long)]
    no_service_scopes: bool,
    /// client_secret_basic or client_secret_post (confidential clients).
    #[arg(long, value_parser = parse_auth_method)]
    auth_method: Option<AuthMethod>,
    /// true or false (a public client always uses PKCE).
    #[arg(long)]
    require_pkce: Option<bool>,
    /// ID token signing algorithm: RS256 or ES256.
    #[arg(long)]
    id_token_alg: Option<String>,
    /// Access token lifetime in seconds (30–3600).
    #[arg(long)]
    access_token_ttl: Option<i64>,
    /// Refresh-token family lifetime in seconds.
    #[arg(long)]
    refresh_token_ttl: Option<i64>,
}

impl UpdateOptions {
    /// Whether no option was given.
    fn is_empty(&self) -> bool {
        self.clone().into_changes() == ClientChanges::default()
    }

    fn into_changes(self) -> ClientChanges {
        let list = |values: Vec<String>, clear: bool| (clear || !values.is_empty()).then_some(values);
        let nullable = |value: Option<String>, clear: bool| if clear { Some(None) } else { value.map(Some) };
        ClientChanges {
            name: self.name,
            owner_org_unit_id: nullable(self.owner_org_unit, self.no_owner_org_unit),
            token_endpoint_auth_method: self.auth_method,
            redirect_uris: list(self.redirect_uris, false),
            post_logout_redirect_uris: list(self.post_logout_redirect_uris, self.no_post_logout_redirect_uris),
            scopes: list(self.scopes, false),
            id_token_signed_response_alg: self.id_token_alg,
            require_pkce: self.require_pkce,
            access_token_ttl: self.access_token_ttl,
            grant_types: (!self.grant_types.is_empty()).then_some(self.grant_types),
            service_scopes: list(self.service_scopes, self.no_service_scopes),
            refresh_token_ttl: self.refresh_token_ttl,
            backchannel_logout_uri: nullable(self.backchannel_logout_uri, self.no_backchannel_logout_uri),
        }
    }
}

fn parse_grant_type(value: &str) -> Result<GrantType, String> {
    GrantType::parse(value).ok_or_else(|| "use authorization_code, refresh_token or client_credentials".into())
}

fn parse_auth_method(value: &str) -> Result<AuthMethod, String> {
    match value {
        "client_secret_basic" => Ok(AuthMethod::ClientSecretBasic),
        "client_secret_post" => Ok(AuthMethod::ClientSecretPost),
        _ => Err("use client_secret_basic or client_secret_post".into()),
    }
}

/// `3600`, `3600s`, `90m`, `24h`, `7d` as seconds; at most 30 days.
fn parse_grace(value: &str) -> Result<i64, String> {
    let value = value.trim();
    let (number, unit) = match value.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => (value.get(..at).unwrap_or_default(), unit),
        _ => (value, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    let seconds = number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{value:?} is not a duration such as 3600, 90m, 24h or 7d"))?;
    if !(0..=systems::MAX_SECRET_GRACE).contains(&seconds) {
        return Err("must be between 0 and 30d".into());
    }
    Ok(seconds)
}

impl ClientCommand {
    /// The client the command is about, for the message when there is no such client.
    fn client_id(&self) -> Option<&str> {
        match self {
            ClientCommand::Add(_) | ClientCommand::List => None,
            ClientCommand::Show { client_id }
            | ClientCommand::Update { client_id, .. }
            | ClientCommand::Disable { client_id }
            | ClientCommand::Enable { client_id }
            | ClientCommand::RotateSecret { client_id, .. } => Some(client_id),
        }
    }
}

pub async fn run(config: Config, command: ClientCommand) -> Result<ExitCode, Failure> {
    if let ClientCommand::Add(AddOptions { public: true, secret_post: true, .. }) = &command {
        eprintln!("error: --secret-post is for confidential clients; a --public client has no secret");
        return Ok(ExitCode::from(2));
    }
    if let ClientCommand::Update { changes, .. } = &command {
        if changes.is_empty() {
            eprintln!("error: nothing to change: give at least one option (see `sekimori client update --help`)");
            return Ok(ExitCode::from(2));
        }
    }
    let app = App::build(config, Clock::default()).await?;
    let now = app.clock.now();
    let target = command.client_id().map(str::to_owned);
    let outcome = match command {
        ClientCommand::List => {
            let clients = systems::list(&app.store).await?;
            if clients.is_empty() {
                println!("no consuming systems yet; add one with `sekimori client add`");
            }
            for client in clients {
                println!("{:<24} {:<9} {:<13} {}", client.client_id, client.status, type_of(&client), client.name);
            }
            Ok(())
        }
        ClientCommand::Show { client_id } => match systems::get(&app.store, &client_id).await? {
            Some(client) => {
                print_client(&client, now);
                Ok(())
            }
            None => Err(ClientError::NotFound),
        },
        change => apply(&app, now, change).await,
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Database(e)) => Err(e.into()),
        Err(ClientError::NotFound) => {
            eprintln!("error: no consuming system has client_id {}", target.unwrap_or_default());
            Ok(ExitCode::from(2))
        }
        Err(refused) => {
            eprintln!("error: {refused}");
            Ok(ExitCode::from(2))
        }
    }
}

/// A command that changes something: one transaction, committed only when it succeeded.
async fn apply(app: &App, now: UnixTime, command: ClientCommand) -> Result<(), ClientError> {
    let mut tx = app.store.begin().await?;
    match command {
        ClientCommand::Add(options) => add(app, &mut tx, now, options).await?,
        // Read-only: `run` answers them without a transaction.
        ClientCommand::List | ClientCommand::Show { .. } => {}
        ClientCommand::Update { client_id, changes } => {
            let client = systems::update(&mut tx, &Actor::Cli, now, &client_id, changes.into_changes()).await?;
            println!("updated {client_id}:");
            print_client(&client, now);
        }
        ClientCommand::Disable { client_id } => {
            let (_, revoked) = systems::disable(&mut tx, &Actor::Cli, now, &client_id).await?;
            println!(
                "{client_id} disabled; ended {} access tokens, {} refresh tokens and {} unused codes",
                revoked.access_tokens, revoked.refresh_tokens, revoked.authorization_codes
            );
            println!(
                "people's sessions stay; `sekimori client enable {client_id}` undoes this (ended tokens stay ended)"
            );
        }
        ClientCommand::Enable { client_id } => {
            systems::enable(&mut tx, &Actor::Cli, now, &client_id).await?;
            println!("{client_id} enabled; people log in to it anew (tokens ended when it was disabled stay ended)");
        }
        ClientCommand::RotateSecret { client_id, grace } => {
            let rotated = systems::rotate_secret(&mut tx, &Actor::Cli, now, &client_id, grace).await?;
            println!("client_id:       {}", rotated.client_id);
            println!("client_secret:   {}   (shown only now)", rotated.client_secret);
            match rotated.previous_secret_expires_at {
                Some(end) => println!("previous secret: works until {}", japan_time(end)),
                None => println!("previous secret: ended now"),
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn add(app: &App, tx: &mut Tx, now: UnixTime, options: AddOptions) -> Result<(), ClientError> {
    let AddOptions {
        name,
        client_id,
        redirect_uris,
        public,
        secret_post,
        require_pkce,
        id_token_alg,
        post_logout_redirect_uris,
        backchannel_logout_uri,
        grant_types,
        scopes,
        service_scopes,
        access_token_ttl,
        refresh_token_ttl,
    } = options;
    let new = NewClient {
        client_id,
        name,
        client_type: if public { ClientType::Public } else { ClientType::Confidential },
        token_endpoint_auth_method: match (public, secret_post) {
            (true, _) => Some(AuthMethod::None),
            (false, true) => Some(AuthMethod::ClientSecretPost),
            (false, false) => Some(AuthMethod::ClientSecretBasic),
        },
        redirect_uris,
        post_logout_redirect_uris,
        scopes: (!scopes.is_empty()).then_some(scopes),
        id_token_signed_response_alg: id_token_alg,
        require_pkce: require_pkce.then_some(true),
        access_token_ttl,
        owner_org_unit_id: None,
        grant_types: (!grant_types.is_empty()).then_some(grant_types),
        service_scopes,
        refresh_token_ttl,
        backchannel_logout_uri,
    };
    let (client, secret) = systems::register(tx, &Actor::Cli, now, &app.config.tokens, new).await?;
    println!("client_id:     {}", client.client_id);
    if let Some(secret) = secret {
        println!("client_secret: {secret}   (shown only now)");
    }
    println!("auth method:   {}", client.token_endpoint_auth_method.as_str());
    let grants: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
    println!("grant types:   {}", grants.join(" "));
    // The configured issuer, as consuming systems reach it (OIDC Discovery §4).
    println!("discovery:     {}/.well-known/openid-configuration", app.config.issuer);
    Ok(())
}

fn type_of(client: &Client) -> &'static str {
    match client.client_type {
        ClientType::Confidential => "confidential",
        ClientType::Public => "public",
    }
}

fn print_client(client: &Client, now: UnixTime) {
    let none = || "-".to_owned();
    let list = |items: &[String]| if items.is_empty() { none() } else { items.join(" ") };
    let grants: Vec<String> = client.grant_types.iter().map(|g| g.as_str().to_owned()).collect();
    println!("client_id:                 {}", client.client_id);
    println!("name:                      {}", client.name);
    match client.disabled_at {
        Some(at) => println!("status:                    disabled since {}", japan_time(at)),
        None => println!("status:                    {}", client.status),
    }
    if client.emergency_stopped {
        println!("emergency stop:            in force (`sekimori emergency-stop list`): refused everywhere");
    }
    println!("type:                      {}", type_of(client));
    println!("auth method:               {}", client.token_endpoint_auth_method.as_str());
    println!("owner org unit:            {}", client.owner_org_unit_id.clone().unwrap_or_else(none));
    println!("redirect URIs:             {}", list(&client.redirect_uris));
    println!("post-logout redirect URIs: {}", list(&client.post_logout_redirect_uris));
    println!("back-channel logout URI:   {}", client.backchannel_logout_uri.clone().unwrap_or_else(none));
    println!("scopes:                    {}", list(&client.scopes));
    println!("grant types:               {}", list(&grants));
    println!("service scopes:            {}", list(&client.service_scopes));
    println!("require PKCE:              {}", client.require_pkce);
    println!("ID token alg:              {}", client.id_token_signed_response_alg.as_str());
    println!("access token ttl:          {} s", client.access_token_ttl);
    println!("refresh token ttl:         {} s", client.refresh_token_ttl);
    if let Some(end) = client.previous_secret_expires_at.filter(|end| *end > now) {
        println!("previous secret:           works until {}", japan_time(end));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_grace;

    #[test]
    fn grace_is_read_in_seconds_minutes_hours_or_days() {
        assert_eq!(parse_grace("0"), Ok(0));
        assert_eq!(parse_grace("3600"), Ok(3600));
        assert_eq!(parse_grace("90m"), Ok(5400));
        assert_eq!(parse_grace("24h"), Ok(86_400));
        assert_eq!(parse_grace("30d"), Ok(30 * 86_400));
        for bad in ["31d", "-1", "1w", "d", "", "１d", "9999999999999999999d"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }
}
