#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Token lifecycle benchmark: a release `sekimori` answering, one phase after the other,
//! (1) client_credentials grants, (2) refresh-token rotations and (3) introspections of a
//! live access token, each phase by BENCH_WORKERS concurrent workers for BENCH_SECONDS.
//! Reports requests/s, p50/p99 latency, errors and the CPU used by the server and by this
//! load generator per phase (both share the machine), and the server's peak memory (VmHWM). Any answer other than a 200 (or an introspection saying `active: false`) is an
//! error; the benchmark fails when there was one, so that a broken run is never reported as fast.
//!
//!     cargo bench --bench token_lifecycle                 # SQLite in a temp dir, 16 workers, 10 s
//!     BENCH_WORKERS=32 BENCH_SECONDS=30 cargo bench --bench token_lifecycle
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/sekimori_bench cargo bench --bench token_lifecycle
//!
//! BENCH_DATABASE_URL must name an existing, empty database (the demo is seeded into it).
//! BENCH_PUBLIC_PORT / BENCH_ADMIN_PORT override the free ports the benchmark picks.
//!
//! Setup, not measured: `sekimori demo`, `sekimori client add` (a confidential client with the
//! three grants), then one real login per worker (authorize → login form → code → token) to
//! start that worker's refresh-token chain. Refresh tokens rotate, so each worker always
//! presents the newest token of its own chain.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{
    demo_logins, env_or, field, measure, peak_memory_kib, percentile, Browser, LoginForm, OidcClient, Tokens,
};

const CLIENT_ID: &str = "bench";
const REDIRECT_URI: &str = "http://127.0.0.1:9009/callback";
const SERVICE_SCOPE: &str = "bench.read";

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the server and removes the temp dir when dropped, also when the benchmark panics
/// (then it prints the end of the server's log first).
struct Guard {
    server: Option<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("server.log")) {
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("---- last lines of the server log ----");
                for line in &lines[lines.len().saturating_sub(30)..] {
                    eprintln!("{line}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `sekimori <args>` in the temp dir with the benchmark's config; returns its stdout.
fn sekimori(dir: &Path, database_url: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sekimori"));
    command
        .current_dir(dir)
        .args(["--config", "bench.toml"])
        .args(args)
        .env("SEKIMORI_LOG", "warn")
        .env("NO_COLOR", "1");
    match database_url {
        Some(url) => command.env("SEKIMORI_DATABASE_URL", url),
        None => command.env_remove("SEKIMORI_DATABASE_URL"),
    };
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "sekimori {args:?} failed:\n{}{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        if database_url.is_some() { "(BENCH_DATABASE_URL must name an existing, empty database)" } else { "" }
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    ClientCredentials,
    Refresh,
    Introspection,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::ClientCredentials => "client_credentials grant",
            Phase::Refresh => "refresh_token rotation",
            Phase::Introspection => "introspection (person's access token)",
        }
    }
}

struct Target {
    base: String,
    introspection_endpoint: String,
    client: OidcClient,
}

/// One consuming system's connection and its own refresh-token chain.
struct Worker {
    http: reqwest::Client,
    tokens: Tokens,
}

/// One measured request of the phase.
async fn one_request(phase: Phase, worker: &mut Worker, target: &Target) -> Result<(), String> {
    let (http, client) = (&worker.http, &target.client);
    match phase {
        Phase::ClientCredentials => {
            let form = [("grant_type", "client_credentials"), ("scope", SERVICE_SCOPE)];
            let body = client.post(http, &client.token_endpoint, &form).await?;
            field(&body, "access_token").map(drop)
        }
        Phase::Refresh => {
            let form = [("grant_type", "refresh_token"), ("refresh_token", worker.tokens.refresh_token.as_str())];
            let body = client.post(http, &client.token_endpoint, &form).await?;
            // Rotation: the next refresh must present the token just returned.
            worker.tokens.refresh_token = field(&body, "refresh_token")?;
            worker.tokens.access_token = field(&body, "access_token")?;
            Ok(())
        }
        Phase::Introspection => {
            let body = client
                .post(http, &target.introspection_endpoint, &[("token", worker.tokens.access_token.as_str())])
                .await?;
            if body["active"] == Value::Bool(true) {
                Ok(())
            } else {
                Err(format!("token not active: {body}"))
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let workers = env_or("BENCH_WORKERS", 16).max(1) as usize;
    let seconds = env_or("BENCH_SECONDS", 10).max(1);
    let public = std::env::var("BENCH_PUBLIC_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or_else(free_port);
    let admin = std::env::var("BENCH_ADMIN_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or_else(free_port);
    let database_url = std::env::var("BENCH_DATABASE_URL").ok().filter(|u| !u.is_empty());
    let dir = std::env::temp_dir().join(format!("sekimori-token-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = Guard { server: None, dir: dir.clone() };
    let database = match &database_url {
        Some(url) => sekimori::store::redacted_url(url),
        None => "SQLite, a file in a temp dir (WAL; each commit synced before it returns)".to_owned(),
    };
    std::fs::write(
        dir.join("bench.toml"),
        format!(
            "public_addr = \"127.0.0.1:{public}\"\nadmin_addr = \"127.0.0.1:{admin}\"\nissuer = \"http://127.0.0.1:{public}\"\n\
             database_url = \"sqlite:{}\"\n",
            dir.join("bench.db").display()
        ),
    )
    .unwrap();

    let db = database_url.as_deref();
    let demo = sekimori(&dir, db, &["demo"]);
    let people: Vec<(String, String)> = demo_logins(&demo);
    assert!(!people.is_empty(), "no demo logins in the demo output (is the database empty?):\n{demo}");
    let added = sekimori(
        &dir,
        db,
        &[
            "client",
            "add",
            "--name",
            "Benchmark",
            "--client-id",
            CLIENT_ID,
            "--redirect-uri",
            REDIRECT_URI,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--grant-type",
            "client_credentials",
            "--service-scope",
            SERVICE_SCOPE,
            "--scope",
            "openid",
            "--scope",
            "profile",
            // The introspected tokens must outlive long runs (BENCH_SECONDS up to about 3000).
            "--access-token-ttl",
            "3600",
        ],
    );
    let secret = added
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a client secret from `sekimori client add`")
        .to_owned();

    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_sekimori"));
    serve
        .current_dir(&dir)
        .args(["--config", "bench.toml", "serve"])
        .env("SEKIMORI_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log);
    match db {
        Some(url) => serve.env("SEKIMORI_DATABASE_URL", url),
        None => serve.env_remove("SEKIMORI_DATABASE_URL"),
    };
    let server = serve.spawn().unwrap();
    let pid = server.id();
    guard.server = Some(server);
    let base = format!("http://127.0.0.1:{public}");
    let client = OidcClient {
        client_id: CLIENT_ID.to_owned(),
        secret,
        redirect_uri: REDIRECT_URI.to_owned(),
        authorization_endpoint: format!("{base}/authorize"),
        token_endpoint: format!("{base}/token"),
        scope: "openid".to_owned(),
        login_form: LoginForm::Sekimori,
    };
    let target = Arc::new(Target { introspection_endpoint: format!("{base}/introspect"), base, client });
    let probe = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..100 {
        if probe.get(format!("{}/health", target.base)).send().await.is_ok_and(|r| r.status() == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "sekimori serve was not healthy within 10 s");
    let idle_memory = peak_memory_kib(pid).unwrap_or(0);

    // Setup: one login per worker (people are reused round-robin; each login is its own session).
    let setup = Instant::now();
    let mut pool = Vec::new();
    for i in 0..workers {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let browser = Browser::new(Duration::from_secs(30)).unwrap();
        let (login_id, password) = &people[i % people.len()];
        let tokens = target.client.log_in_for_tokens(&browser, &http, login_id, password).await;
        pool.push(Worker { http, tokens: tokens.unwrap_or_else(|e| panic!("setup login of {login_id}: {e}")) });
    }
    eprintln!("setup: {workers} logins in {:.1} s", setup.elapsed().as_secs_f64());
    // The logins' argon2 buffers (19 MiB per hashing thread) are in this figure already.
    let after_logins = peak_memory_kib(pid).unwrap_or(0);

    let mut results = Vec::new();
    for phase in [Phase::ClientCredentials, Phase::Refresh, Phase::Introspection] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let target = target.clone();
        let request = move |mut worker: Worker| {
            let target = target.clone();
            async move {
                let outcome = one_request(phase, &mut worker, &target).await;
                (worker, outcome)
            }
        };
        let (measured, back) = measure(pool, seconds, Some(pid), request).await;
        pool = back;
        eprintln!("{}: {} ok, {} errors", phase.label(), measured.ok, measured.errors);
        results.push((phase, measured));
    }
    let peak = peak_memory_kib(pid).unwrap_or(0);
    drop(guard);

    let mut command = format!("BENCH_WORKERS={workers} BENCH_SECONDS={seconds} ");
    if let Some(url) = db {
        command.push_str(&format!("BENCH_DATABASE_URL={} ", sekimori::store::redacted_url(url)));
    }
    command.push_str("cargo bench --bench token_lifecycle");
    println!();
    println!("token lifecycle: {workers} concurrent workers, {seconds} s per phase, phases one after the other");
    println!("database: {database}");
    println!("command: {command}");
    println!();
    println!("| phase | requests | requests/s | p50 | p99 | errors | server CPU | load generator CPU |");
    println!("|---|---|---|---|---|---|---|---|");
    for (phase, m) in &results {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {:.0} % | {:.0} % |",
            phase.label(),
            m.ok,
            m.per_second(),
            ms(percentile(&m.latencies, 0.5)),
            ms(percentile(&m.latencies, 0.99)),
            m.errors,
            m.cpu_percent(m.server_cpu),
            m.cpu_percent(m.client_cpu)
        );
    }
    println!();
    println!(
        "server memory (VmHWM): idle {} MiB, after the setup logins {} MiB, peak {} MiB",
        idle_memory / 1024,
        after_logins / 1024,
        peak / 1024
    );
    let mut failed = false;
    for (phase, m) in &results {
        if m.errors > 0 {
            failed = true;
            eprintln!("{}: {} errors, e.g.:", phase.label(), m.errors);
            for sample in &m.error_samples {
                eprintln!("  {sample}");
            }
        }
    }
    assert!(!failed, "there were errors: the figures above do not describe a working server");
}
