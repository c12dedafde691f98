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
use common::{demo_logins, env_or, hidden, peak_memory_kib, percentile};

const CLIENT_ID: &str = "bench";
const REDIRECT_URI: &str = "http://127.0.0.1:9009/callback";
const SERVICE_SCOPE: &str = "bench.read";

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// CPU time (user + system) a process has used so far, from /proc (USER_HZ is 100 on Linux).
fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // The fields after the command name, which is in parentheses: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
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
    secret: String,
}

/// One consuming system's connection and its own refresh-token chain.
struct Worker {
    http: reqwest::Client,
    refresh_token: String,
    access_token: String,
}

/// A POST with the client's Basic credentials; Ok(body) for a 200, Err(description) otherwise.
async fn post(worker: &Worker, target: &Target, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
    let response = worker
        .http
        .post(format!("{}{path}", target.base))
        .basic_auth(CLIENT_ID, Some(&target.secret))
        .form(form)
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("{status}, body unreadable: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("200 but not JSON ({e}): {body}"))
}

fn field(body: &Value, name: &str) -> Result<String, String> {
    body[name].as_str().map(str::to_owned).ok_or_else(|| format!("200 without {name}: {body}"))
}

/// One measured request of the phase.
async fn one_request(phase: Phase, worker: &mut Worker, target: &Target) -> Result<(), String> {
    match phase {
        Phase::ClientCredentials => {
            let form = [("grant_type", "client_credentials"), ("scope", SERVICE_SCOPE)];
            let body = post(worker, target, "/token", &form).await?;
            field(&body, "access_token").map(drop)
        }
        Phase::Refresh => {
            let form = [("grant_type", "refresh_token"), ("refresh_token", worker.refresh_token.as_str())];
            let body = post(worker, target, "/token", &form).await?;
            // Rotation: the next refresh must present the token just returned.
            worker.refresh_token = field(&body, "refresh_token")?;
            worker.access_token = field(&body, "access_token")?;
            Ok(())
        }
        Phase::Introspection => {
            let body = post(worker, target, "/introspect", &[("token", worker.access_token.as_str())]).await?;
            if body["active"] == Value::Bool(true) {
                Ok(())
            } else {
                Err(format!("token not active: {body}"))
            }
        }
    }
}

struct Measured {
    phase: Phase,
    ok: usize,
    errors: usize,
    error_samples: Vec<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// CPU time the server and the load generator (this process) used during the phase.
    server_cpu: Duration,
    client_cpu: Duration,
}

/// Every worker sends requests back to back until the time is up; latency is measured from
/// sending to having read the whole answer.
async fn measure(
    phase: Phase,
    workers: Vec<Worker>,
    target: &Arc<Target>,
    seconds: u64,
    server_pid: u32,
) -> (Measured, Vec<Worker>) {
    let (server_cpu, client_cpu) = (cpu_time(&server_pid.to_string()), cpu_time("self"));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let target = target.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                while Instant::now() < stop_at {
                    let sent = Instant::now();
                    match one_request(phase, &mut worker, &target).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(e) => errors.push(e),
                    }
                }
                (worker, latencies, errors)
            })
        })
        .collect();
    let (mut workers, mut latencies, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for task in tasks {
        let (worker, l, e) = task.await.unwrap();
        workers.push(worker);
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed();
    let server_cpu = cpu_time(&server_pid.to_string()).saturating_sub(server_cpu);
    let client_cpu = cpu_time("self").saturating_sub(client_cpu);
    latencies.sort();
    let mut error_samples: Vec<String> = Vec::new();
    for e in &errors {
        if error_samples.len() < 5 && !error_samples.contains(e) {
            error_samples.push(e.clone());
        }
    }
    let measured = Measured {
        phase,
        ok: latencies.len(),
        errors: errors.len(),
        error_samples,
        elapsed,
        latencies,
        server_cpu,
        client_cpu,
    };
    (measured, workers)
}

/// A real login through the form, then the code exchange: the start of a refresh-token chain.
async fn log_in(target: &Target, http: &reqwest::Client, login_id: &str, password: &str) -> Worker {
    let base = &target.base;
    let verifier = sekimori::crypto::random_token(32);
    let challenge = sekimori::crypto::sha256_b64url(verifier.as_bytes());
    let mut authorize = url::Url::parse(&format!("{base}/authorize")).unwrap();
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("state", "bench"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let browser =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let to_login = browser.get(authorize.as_str()).send().await.unwrap();
    assert_eq!(to_login.status(), 303, "authorize should send the browser to the login page");
    let location = to_login.headers()["location"].to_str().unwrap().to_owned();
    let page = browser.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the login page");
    let html = page.text().await.unwrap();
    let (csrf, request) = (hidden(&html, "csrf_token").unwrap(), hidden(&html, "request").unwrap());
    let form = [("csrf_token", csrf.as_str()), ("request", &request), ("login_id", login_id), ("password", password)];
    let logged_in = browser.post(format!("{base}/login")).form(&form).send().await.unwrap();
    assert_eq!(logged_in.status(), 303, "login of {login_id} should redirect to the client");
    let back = url::Url::parse(logged_in.headers()["location"].to_str().unwrap()).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code");
    let mut worker = Worker { http: http.clone(), refresh_token: String::new(), access_token: String::new() };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier.as_str()),
    ];
    let body = post(&worker, target, "/token", &form).await.unwrap();
    worker.refresh_token = field(&body, "refresh_token").unwrap();
    worker.access_token = field(&body, "access_token").unwrap();
    worker
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
        None => "SQLite, a file in a temp dir (WAL, synchronous=NORMAL)".to_owned(),
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
    let target = Arc::new(Target { base: format!("http://127.0.0.1:{public}"), secret });
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
        let (login_id, password) = &people[i % people.len()];
        pool.push(log_in(&target, &http, login_id, password).await);
    }
    eprintln!("setup: {workers} logins in {:.1} s", setup.elapsed().as_secs_f64());
    // The logins' argon2 buffers (19 MiB per hashing thread) are in this figure already.
    let after_logins = peak_memory_kib(pid).unwrap_or(0);

    let mut results = Vec::new();
    for phase in [Phase::ClientCredentials, Phase::Refresh, Phase::Introspection] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (measured, back) = measure(phase, pool, &target, seconds, pid).await;
        pool = back;
        eprintln!("{}: {} ok, {} errors", phase.label(), measured.ok, measured.errors);
        results.push(measured);
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
    // CPU as a share of one core over the phase; the machine's cores are shared by both.
    let share = |cpu: Duration, m: &Measured| format!("{:.0} %", 100.0 * cpu.as_secs_f64() / m.elapsed.as_secs_f64());
    for m in &results {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            m.phase.label(),
            m.ok,
            m.ok as f64 / m.elapsed.as_secs_f64(),
            ms(percentile(&m.latencies, 0.5)),
            ms(percentile(&m.latencies, 0.99)),
            m.errors,
            share(m.server_cpu, m),
            share(m.client_cpu, m)
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
    for m in &results {
        if m.errors > 0 {
            failed = true;
            eprintln!("{}: {} errors, e.g.:", m.phase.label(), m.errors);
            for sample in &m.error_samples {
                eprintln!("  {sample}");
            }
        }
    }
    assert!(!failed, "there were errors: the figures above do not describe a working server");
}
