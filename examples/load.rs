//! Load tool: measures a RUNNING OpenID Provider — Sekimori or a peer such as node-oidc-provider
//! (benches/peer/) — endpoint by endpoint, one phase after the other: discovery, JWKS, the
//! client_credentials grant, refresh-token rotation, introspection (of one token per worker, of
//! many tokens, each asked about rarely, and of a system's own client_credentials token), userinfo
//! and the password login. Each phase runs `--connections` concurrent workers, each on its own keep-alive
//! connection, sending back to back for `--seconds`; it reports requests/s, p50/p99 latency, the
//! errors (with examples), and with `--pid` the server's CPU and memory (VmRSS and VmHWM from
//! /proc/<pid>/status) at the end of the phase.
//!
//!     cargo run --release --example load -- --issuer http://127.0.0.1:8080 --client-id load \
//!         --users demo.txt --pid "$(pgrep -n sekimori)"        # LOAD_CLIENT_SECRET in the environment
//!     cargo run --release --example load -- --issuer http://127.0.0.1:3000 --login oidc-provider-dev \
//!         --phases client_credentials,introspection --json
//!
//! Any answer but a 2xx (or an introspection saying `active: false`, or a login that does not
//! end at the redirect URI with a code) is an error: every error is counted and shown, and the
//! exit status is 1 when there was one, so that a broken run is never read as a fast one.
//!
//! Setup, not measured: discovery, then (for the refresh, introspection and userinfo phases)
//! one login per worker through the provider's login form and the code exchange, which start
//! that worker's refresh-token chain. Refresh tokens rotate, so each worker always presents the
//! newest token of its own chain. Before `introspection_many`, each worker refreshes
//! `--tokens-per-worker` times (not measured) and the phase then asks about those access tokens in
//! turn: with the default 500 and 32 workers, 16,000 tokens, so that a provider that keeps what it
//! read about a token for a moment is measured where it has to read it again, as it is when many
//! systems each introspect the tokens of their own users. Before `introspection_service`, each
//! worker obtains a client_credentials token (not measured), which the phase then asks about, as
//! a system does that checks the tokens of the systems calling it. The client authenticates with client_secret_basic; it needs
//! the grants authorization_code, refresh_token and client_credentials, the redirect URI given
//! (never called: the tool reads the code from the redirect) and the service scope.
//! `benches/load.sh` registers it, starts each server and runs this tool side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use serde_json::{json, Value};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{
    field, measure, peak_memory_kib, percentile, resident_memory_kib, Browser, LoginForm, Measured, OidcClient, Tokens,
};

#[derive(Parser)]
#[command(about = "Measures a running OpenID Provider endpoint by endpoint (see the file's header)")]
struct Args {
    /// The provider's issuer; the endpoints come from its discovery document.
    #[arg(long)]
    issuer: String,
    #[arg(long, default_value = "load")]
    client_id: String,
    /// The client's secret (client_secret_basic).
    #[arg(long, env = "LOAD_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// The client's registered redirect URI (nothing needs to listen there).
    #[arg(long, default_value = "http://127.0.0.1:9009/callback")]
    redirect_uri: String,
    /// Concurrent workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds each phase lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The phases, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "discovery,jwks,client_credentials,refresh,introspection,introspection_many,introspection_service,userinfo,password_login"
    )]
    phases: Vec<Phase>,
    /// Access tokens each worker obtains (by refreshing) before `introspection_many`.
    #[arg(long, default_value_t = 500)]
    tokens_per_worker: usize,
    /// The server's process, for its CPU and memory.
    #[arg(long)]
    pid: Option<u32>,
    /// How people log in: Sekimori's login form, or node-oidc-provider's development form.
    #[arg(long, value_enum, default_value_t = Login::Sekimori)]
    login: Login,
    /// The people: the output of `sekimori demo`, or lines "login-id password". Without it,
    /// oidc-provider-dev logs in made-up people (it accepts any); Sekimori needs it.
    #[arg(long)]
    users: Option<PathBuf>,
    /// The scope of the people's logins.
    #[arg(long, default_value = "openid profile")]
    scope: String,
    /// The scope the client_credentials grant asks for.
    #[arg(long, default_value = "load.read")]
    service_scope: String,
    /// One JSON object per phase on stdout, one a line, instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Discovery,
    Jwks,
    #[value(name = "client_credentials")]
    ClientCredentials,
    Refresh,
    Introspection,
    /// Introspection of many tokens in turn (see the file's header).
    #[value(name = "introspection_many")]
    IntrospectionMany,
    /// Introspection of a client_credentials token (see the file's header).
    #[value(name = "introspection_service")]
    IntrospectionService,
    Userinfo,
    #[value(name = "password_login")]
    PasswordLogin,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Discovery => "discovery",
            Phase::Jwks => "jwks",
            Phase::ClientCredentials => "client_credentials",
            Phase::Refresh => "refresh",
            Phase::Introspection => "introspection",
            Phase::IntrospectionMany => "introspection_many",
            Phase::IntrospectionService => "introspection_service",
            Phase::Userinfo => "userinfo",
            Phase::PasswordLogin => "password_login",
        }
    }

    /// Whether the phase needs each worker's person tokens from the setup logins.
    fn needs_tokens(self) -> bool {
        matches!(self, Phase::Refresh | Phase::Introspection | Phase::IntrospectionMany | Phase::Userinfo)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Login {
    Sekimori,
    OidcProviderDev,
}

/// What every worker shares: the client and the endpoints from discovery.
struct Context {
    client: OidcClient,
    discovery: String,
    jwks_uri: String,
    introspection_endpoint: String,
    userinfo_endpoint: String,
    service_scope: String,
    users: Vec<(String, String)>,
}

/// One worker: a consuming system's keep-alive connection, a person's browser, and the tokens
/// of that person's login (their refresh-token chain).
struct Worker {
    index: usize,
    api: reqwest::Client,
    browser: Browser,
    tokens: Option<Tokens>,
    logins: usize,
    /// The access tokens asked about in `introspection_many`, and the next one's index.
    many: Vec<String>,
    next: usize,
    /// The client_credentials token asked about in `introspection_service`.
    service_token: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when every phase ran without an error.
async fn run(args: &Args) -> Result<bool, String> {
    let connections = args.connections.max(1);
    let context = Arc::new(discover(args).await?);
    let mut workers = Vec::new();
    for index in 0..connections {
        let api = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        workers.push(Worker {
            index,
            api,
            browser: Browser::new(TIMEOUT)?,
            tokens: None,
            logins: 0,
            many: Vec::new(),
            next: 0,
            service_token: None,
        });
    }
    let idle = memory(args.pid);
    if args.phases.iter().any(|p| p.needs_tokens()) {
        workers = set_up(workers, &context).await?;
    }
    let after_setup = memory(args.pid);
    if !args.json {
        println!("issuer: {}", args.issuer);
        println!("{connections} connections, {} s a phase, phases one after the other", args.seconds);
        if let (Some((rss, hwm)), Some((setup_rss, setup_hwm))) = (idle, after_setup) {
            println!(
                "server memory: idle VmRSS {} MiB (VmHWM {}), after the setup logins VmRSS {} MiB (VmHWM {})",
                rss / 1024,
                hwm / 1024,
                setup_rss / 1024,
                setup_hwm / 1024
            );
        }
        println!();
        println!("| phase | requests | requests/s | p50 | p99 | errors | server CPU | load tool CPU | VmRSS | VmHWM |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
    }
    let mut clean = true;
    for &phase in &args.phases {
        if phase == Phase::IntrospectionMany {
            workers = mint_many(workers, &context, args.tokens_per_worker.max(1)).await?;
        }
        if phase == Phase::IntrospectionService {
            workers = mint_service_tokens(workers, &context).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let context = context.clone();
        let request = move |mut worker: Worker| {
            let context = context.clone();
            async move {
                let outcome = one_request(phase, &mut worker, &context).await;
                (worker, outcome)
            }
        };
        let (measured, back) = measure(workers, args.seconds.max(1), args.pid, request).await;
        workers = back;
        let memory = memory(args.pid);
        report(args, phase, &measured, memory);
        if measured.errors > 0 {
            clean = false;
            eprintln!("{}: {} errors, e.g.:", phase.name(), measured.errors);
            for sample in &measured.error_samples {
                eprintln!("  {sample}");
            }
        }
    }
    Ok(clean)
}

/// The discovery document's endpoints, the people, and the client.
async fn discover(args: &Args) -> Result<Context, String> {
    let discovery = format!("{}/.well-known/openid-configuration", args.issuer.trim_end_matches('/'));
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| e.to_string())?;
    let response = http.get(&discovery).send().await.map_err(|e| format!("{discovery}: {e}"))?;
    let status = response.status();
    let document: Value = response.json().await.map_err(|e| format!("{discovery}: {status}, not JSON: {e}"))?;
    // A missing endpoint is an error only in a phase that needs it (it then fails every request).
    let endpoint = |name: &str| document.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let users = match &args.users {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            read_users(&text)
        }
        None if args.login == Login::OidcProviderDev => {
            (0..args.connections.max(1)).map(|i| (format!("load-user-{i}"), "any-password".to_owned())).collect()
        }
        None => Vec::new(),
    };
    if users.is_empty() && args.phases.iter().any(|p| p.needs_tokens() || *p == Phase::PasswordLogin) {
        return Err(
            "no people to log in: give --users (the output of `sekimori demo`, or lines \"login-id password\")".into(),
        );
    }
    let client = OidcClient {
        client_id: args.client_id.clone(),
        secret: args.client_secret.clone(),
        redirect_uri: args.redirect_uri.clone(),
        authorization_endpoint: endpoint("authorization_endpoint"),
        token_endpoint: endpoint("token_endpoint"),
        scope: args.scope.clone(),
        login_form: match args.login {
            Login::Sekimori => LoginForm::Sekimori,
            Login::OidcProviderDev => LoginForm::OidcProviderDev,
        },
    };
    Ok(Context {
        client,
        discovery,
        jwks_uri: endpoint("jwks_uri"),
        introspection_endpoint: endpoint("introspection_endpoint"),
        userinfo_endpoint: endpoint("userinfo_endpoint"),
        service_scope: args.service_scope.clone(),
        users,
    })
}

/// People from `sekimori demo`'s output, or from lines "login-id password" (# starts a comment).
fn read_users(text: &str) -> Vec<(String, String)> {
    let demo = common::demo_logins(text);
    if !demo.is_empty() {
        return demo;
    }
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// One login per worker, four at a time (people are reused round-robin; each login is its own
/// session), then the code exchange: each worker's refresh-token chain. Not measured.
async fn set_up(workers: Vec<Worker>, context: &Arc<Context>) -> Result<Vec<Worker>, String> {
    let started = Instant::now();
    let count = workers.len();
    let done: Vec<Result<Worker, String>> = futures_util::stream::iter(workers)
        .map(|mut worker| {
            let context = context.clone();
            async move {
                let (login_id, password) = person(&context, worker.index);
                let tokens = context.client.log_in_for_tokens(&worker.browser, &worker.api, login_id, password).await;
                worker.tokens = Some(tokens.map_err(|e| format!("setup login of {login_id}: {e}"))?);
                Ok::<_, String>(worker)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let workers = done.into_iter().collect::<Result<Vec<_>, _>>()?;
    eprintln!("setup: {count} logins in {:.1} s", started.elapsed().as_secs_f64());
    Ok(workers)
}

/// `count` access tokens for each worker, by refreshing its chain, all workers at once. Not
/// measured.
async fn mint_many(workers: Vec<Worker>, context: &Arc<Context>, count: usize) -> Result<Vec<Worker>, String> {
    let started = Instant::now();
    let total = workers.len() * count;
    let done = futures_util::future::join_all(workers.into_iter().map(|mut worker| {
        let context = context.clone();
        async move {
            worker.many.clear();
            worker.next = 0;
            while worker.many.len() < count {
                refresh(&mut worker, &context).await.map_err(|e| format!("minting tokens: {e}"))?;
                let token = worker.tokens.as_ref().map(|t| t.access_token.clone()).unwrap_or_default();
                worker.many.push(token);
            }
            Ok::<_, String>(worker)
        }
    }))
    .await;
    let workers = done.into_iter().collect::<Result<Vec<_>, _>>()?;
    eprintln!("setup: {total} access tokens in {:.1} s", started.elapsed().as_secs_f64());
    Ok(workers)
}

/// A client_credentials token for each worker. Not measured.
async fn mint_service_tokens(workers: Vec<Worker>, context: &Arc<Context>) -> Result<Vec<Worker>, String> {
    let done = futures_util::future::join_all(workers.into_iter().map(|mut worker| {
        let context = context.clone();
        async move {
            let token = service_token(&worker, &context).await.map_err(|e| format!("minting a service token: {e}"))?;
            worker.service_token = Some(token);
            Ok::<_, String>(worker)
        }
    }))
    .await;
    done.into_iter().collect()
}

/// A client_credentials grant: the new access token.
async fn service_token(worker: &Worker, context: &Context) -> Result<String, String> {
    let client = &context.client;
    let form = [("grant_type", "client_credentials"), ("scope", context.service_scope.as_str())];
    let body = client.post(&worker.api, &client.token_endpoint, &form).await?;
    field(&body, "access_token")
}

/// One rotation of the worker's refresh-token chain: the next refresh must present the token
/// just returned.
async fn refresh(worker: &mut Worker, context: &Context) -> Result<(), String> {
    let client = &context.client;
    let tokens = worker.tokens.as_mut().ok_or("no tokens from the setup")?;
    let form = [("grant_type", "refresh_token"), ("refresh_token", tokens.refresh_token.as_str())];
    let body = client.post(&worker.api, &client.token_endpoint, &form).await?;
    tokens.refresh_token = field(&body, "refresh_token")?;
    tokens.access_token = field(&body, "access_token")?;
    Ok(())
}

/// An introspection that must find `token` active.
async fn introspect(worker: &Worker, context: &Context, token: &str) -> Result<(), String> {
    let form = [("token", token)];
    let body = context.client.post(&worker.api, &context.introspection_endpoint, &form).await?;
    if body.get("active") == Some(&Value::Bool(true)) {
        Ok(())
    } else {
        Err(format!("token not active: {body}"))
    }
}

/// The person for a worker's n-th login (round-robin over the people).
fn person(context: &Context, n: usize) -> (&str, &str) {
    let count = context.users.len().max(1);
    context.users.get(n % count).map(|(l, p)| (l.as_str(), p.as_str())).unwrap_or(("", ""))
}

/// One measured request of the phase.
async fn one_request(phase: Phase, worker: &mut Worker, context: &Context) -> Result<(), String> {
    let client = &context.client;
    match phase {
        Phase::Discovery => get(&worker.api, &context.discovery, None, "\"issuer\"").await,
        Phase::Jwks => get(&worker.api, &context.jwks_uri, None, "\"keys\"").await,
        Phase::ClientCredentials => service_token(worker, context).await.map(drop),
        Phase::Refresh => refresh(worker, context).await,
        Phase::Introspection => {
            let token = worker.tokens.as_ref().ok_or("no tokens from the setup")?.access_token.clone();
            introspect(worker, context, &token).await
        }
        Phase::IntrospectionMany => {
            let token = worker.many.get(worker.next % worker.many.len().max(1)).cloned().ok_or("no tokens minted")?;
            worker.next += 1;
            introspect(worker, context, &token).await
        }
        Phase::IntrospectionService => {
            let token = worker.service_token.clone().ok_or("no service token minted")?;
            introspect(worker, context, &token).await
        }
        Phase::Userinfo => {
            let tokens = worker.tokens.as_ref().ok_or("no tokens from the setup")?;
            get(&worker.api, &context.userinfo_endpoint, Some(&tokens.access_token), "\"sub\"").await
        }
        Phase::PasswordLogin => {
            let (login_id, password) = person(context, worker.index + worker.logins);
            worker.logins += 1;
            client.log_in(&worker.browser, login_id, password).await.map(drop)
        }
    }
}

/// A GET answered with a 2xx whose body contains `expect`.
async fn get(http: &reqwest::Client, url: &str, bearer: Option<&str>, expect: &str) -> Result<(), String> {
    let mut request = http.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("transport: {}", common::with_causes(&e)))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("{status}, body unreadable: {e}"))?;
    if !status.is_success() || !body.contains(expect) {
        return Err(format!("{status}: {}", body.chars().take(200).collect::<String>()));
    }
    Ok(())
}

/// The server's (VmRSS, VmHWM) in KiB.
fn memory(pid: Option<u32>) -> Option<(u64, u64)> {
    let pid = pid?;
    Some((resident_memory_kib(pid)?, peak_memory_kib(pid)?))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A phase's line of the table, or its JSON object.
fn report(args: &Args, phase: Phase, m: &Measured, memory: Option<(u64, u64)>) {
    let (p50, p99) = (ms(percentile(&m.latencies, 0.5)), ms(percentile(&m.latencies, 0.99)));
    if args.json {
        let line = json!({
            "phase": phase.name(),
            "issuer": args.issuer,
            "connections": args.connections.max(1),
            "seconds": m.elapsed.as_secs_f64(),
            "requests": m.ok,
            "requests_per_second": m.per_second(),
            "p50_ms": p50,
            "p99_ms": p99,
            "errors": m.errors,
            "error_samples": m.error_samples,
            "server_cpu_percent": args.pid.map(|_| m.cpu_percent(m.server_cpu)),
            "load_cpu_percent": m.cpu_percent(m.client_cpu),
            "vm_rss_kib": memory.map(|(rss, _)| rss),
            "vm_hwm_kib": memory.map(|(_, hwm)| hwm),
        });
        println!("{line}");
        return;
    }
    let mib = |kib: Option<u64>| kib.map(|k| format!("{} MiB", k / 1024)).unwrap_or_else(|| "-".into());
    let server_cpu = args.pid.map(|_| format!("{:.0} %", m.cpu_percent(m.server_cpu))).unwrap_or_else(|| "-".into());
    println!(
        "| {} | {} | {:.0} | {p50:.2} ms | {p99:.2} ms | {} | {server_cpu} | {:.0} % | {} | {} |",
        phase.name(),
        m.ok,
        m.per_second(),
        m.errors,
        m.cpu_percent(m.client_cpu),
        mib(memory.map(|(rss, _)| rss)),
        mib(memory.map(|(_, hwm)| hwm)),
    );
}
