#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! April-1 benchmark: the HR batch of the year's big day against a directory of 100,000
//! people, on a running release `sekimori` that keeps answering logins and token requests.
//!
//!     cargo bench --bench april_first                      # SQLite in a temp dir
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/sekimori_bench cargo bench --bench april_first
//!
//! BENCH_DATABASE_URL must name an existing, empty database. Sizes and load (defaults):
//! BENCH_PEOPLE (100000), BENCH_SECTIONS (400), BENCH_MOVES (20000), BENCH_LEAVES (3000),
//! BENCH_LOGIN_WORKERS (2, each a password login every BENCH_LOGIN_PAUSE_MS = 250 ms after the
//! previous one is answered), BENCH_TOKEN_WORKERS (2, a client_credentials grant every
//! BENCH_TOKEN_PAUSE_MS = 20 ms), BENCH_IDLE_SECONDS (5, the load alone before the batch).
//!
//! Setup, timed but not the measure: `sekimori demo` (people with passwords for the logins),
//! `sekimori client add` (a client with client_credentials), then the directory bulk-loaded by
//! multi-row INSERTs: BENCH_SECTIONS sections, BENCH_PEOPLE people with accounts, a live
//! session for every tenth. Then `sekimori serve` and the load, and after BENCH_IDLE_SECONDS the
//! batch: `sekimori hr import` of a generated CSV of BENCH_MOVES transfers (異動, effective
//! today) and BENCH_LEAVES retirements (退職, last day yesterday), so all of it is due at once;
//! the safety valve's limits are raised in the config so that the file is not held. The import
//! records the whole file in one transaction, prints a line, then applies every due change, one
//! transaction each (the server's own HR job, every 30 s, may take part: changes are claimed).
//!
//! Measured: the wall time of recording (from the start of the command to its "recorded:"
//! line) and of applying (from that line until no change is pending), the peak memory (VmHWM)
//! of the import and of the server, and the latency of every login (authorize → login page →
//! password form → redirect with a code) and client_credentials grant, by the phase it began
//! in. Errors are counted and shown, not hidden: they are part of what is measured.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;

mod common;
use common::{demo_logins, env_or, hidden, peak_memory_kib, percentile};

const CLIENT_ID: &str = "bench";
const REDIRECT_URI: &str = "http://127.0.0.1:9009/callback";
const SERVICE_SCOPE: &str = "bench.read";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

/// Kills the server and removes the temp dir when dropped, also when the benchmark panics.
struct Guard {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
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

fn sekimori_command(dir: &Path, database_url: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sekimori"));
    command.current_dir(dir).args(["--config", "bench.toml"]).env("SEKIMORI_LOG", "warn").env("NO_COLOR", "1");
    match database_url {
        Some(url) => command.env("SEKIMORI_DATABASE_URL", url),
        None => command.env_remove("SEKIMORI_DATABASE_URL"),
    };
    command
}

/// Runs `sekimori <args>`; returns its stdout.
fn sekimori(dir: &Path, database_url: Option<&str>, args: &[&str]) -> String {
    let output = sekimori_command(dir, database_url).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "sekimori {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn insert_rows(store: &sekimori::store::Store, head: &str, rows: impl Iterator<Item = String>) {
    let rows: Vec<String> = rows.collect();
    for chunk in rows.chunks(1000) {
        sqlx::query(&format!("{head} VALUES {}", chunk.join(", "))).execute(store.pool()).await.unwrap();
    }
}

fn number(i: u64) -> String {
    format!("B{i:06}")
}

/// The directory: sections under one department, people spread over them, an account each
/// (no password: these people do not log in here), a live session for every tenth. The values
/// are the benchmark's own, written into the SQL.
async fn bulk_load(store: &sekimori::store::Store, people: u64, sections: u64) {
    insert_rows(
        store,
        "INSERT INTO org_units (id, code, name, name_en, level, parent_id, manager_person_id, created_at)",
        std::iter::once("('b-dept', 'B-DEPT', '本庁', NULL, 'department', NULL, NULL, 0)".to_owned()).chain(
            (0..sections).map(|s| format!("('b-s{s:04}', 'B-S{s:04}', '課{s}', NULL, 'section', 'b-dept', NULL, 0)")),
        ),
    )
    .await;
    insert_rows(
        store,
        "INSERT INTO people (id, employee_number, family_name, given_name, family_name_kana, given_name_kana,
             birth_date, kind, org_unit_id, email, status, start_date, end_date, created_at, updated_at)",
        (0..people).map(|i| {
            format!(
                "('p-{n}', '{n}', '職員', '{i}号', 'ショクイン', 'バンゴウ', '1980-01-01', 'regular', 'b-s{:04}', \
                 'b{i:06}@city.example.lg.jp', 'active', '2010-04-01', NULL, 0, 0)",
                i % sections,
                n = number(i)
            )
        }),
    )
    .await;
    insert_rows(
        store,
        "INSERT INTO accounts (id, person_id, login_id, password_hash, status, created_at)",
        (0..people).map(|i| format!("('a-{n}', 'p-{n}', 'b{i:06}', NULL, 'active', 0)", n = number(i))),
    )
    .await;
    insert_rows(
        store,
        "INSERT INTO sessions (id, token_hash, person_id, account_id, auth_time, amr, acr, created_at, last_seen_at,
             absolute_expires_at)",
        (0..people).step_by(10).map(|i| {
            format!("('s-{n}', 'h-{n}', 'p-{n}', 'a-{n}', 0, '[\"pwd\"]', '1', 0, 0, 4102444800)", n = number(i))
        }),
    )
    .await;
}

/// Today and yesterday in Japan, YYYY-MM-DD.
fn today_and_yesterday() -> (String, String) {
    let now = time::OffsetDateTime::now_utc().to_offset(sekimori::clock::JAPAN).date();
    (sekimori::directory::types::format_date(now), sekimori::directory::types::format_date(now.previous_day().unwrap()))
}

/// The April-1 file: every fifth person moves to another section, the next one of every five
/// (for the first `leaves`) retires.
fn april_file(people: u64, sections: u64, moves: u64, leaves: u64) -> String {
    assert!(moves <= people / 5 && leaves <= people / 5, "BENCH_PEOPLE too small for the batch");
    let (today, yesterday) = today_and_yesterday();
    let mut csv = String::from("職員番号,異動区分,発令日,所属コード\n");
    for i in 0..moves {
        let p = 5 * i;
        let to = (p % sections + 1 + i % (sections - 1)) % sections;
        csv.push_str(&format!("{},異動,{today},B-S{to:04}\n", number(p)));
    }
    for i in 0..leaves {
        csv.push_str(&format!("{},退職,{yesterday},\n", number(5 * i + 1)));
    }
    csv
}

#[derive(Clone, Copy, PartialEq)]
enum Load {
    Login,
    Token,
}

/// One request of the load: when it began, how long it took, whether it was answered right.
struct Sample {
    load: Load,
    began: Instant,
    took: Duration,
    error: Option<String>,
}

struct Target {
    base: String,
    secret: String,
}

/// A password login through the form, to the redirect with a code.
async fn log_in(target: &Target, login_id: &str, password: &str) -> Result<(), String> {
    let base = &target.base;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
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
    let err = |step: &str, e: String| format!("{step}: {e}");
    let to_login = browser.get(authorize.as_str()).send().await.map_err(|e| err("authorize", e.to_string()))?;
    if to_login.status() != 303 {
        return Err(err("authorize", to_login.status().to_string()));
    }
    let location = to_login.headers()["location"].to_str().unwrap().to_owned();
    let page = browser.get(format!("{base}{location}")).send().await.map_err(|e| err("login page", e.to_string()))?;
    if page.status() != 200 {
        return Err(err("login page", page.status().to_string()));
    }
    let html = page.text().await.map_err(|e| err("login page", e.to_string()))?;
    let (csrf, request) = (hidden(&html, "csrf_token").unwrap(), hidden(&html, "request").unwrap());
    let form = [("csrf_token", csrf.as_str()), ("request", &request), ("login_id", login_id), ("password", password)];
    let answer =
        browser.post(format!("{base}/login")).form(&form).send().await.map_err(|e| err("login", e.to_string()))?;
    let to_client = answer.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("");
    if answer.status() != 303 || !to_client.starts_with(REDIRECT_URI) || !to_client.contains("code=") {
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        return Err(err("login", format!("{status} {}", body.chars().take(200).collect::<String>())));
    }
    Ok(())
}

async fn client_credentials(http: &reqwest::Client, target: &Target) -> Result<(), String> {
    let response = http
        .post(format!("{}/token", target.base))
        .basic_auth(CLIENT_ID, Some(&target.secret))
        .form(&[("grant_type", "client_credentials"), ("scope", SERVICE_SCOPE)])
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status != 200 || !body.contains("access_token") {
        return Err(format!("{status}: {}", body.chars().take(200).collect::<String>()));
    }
    Ok(())
}

/// A line of the import's output and when it was read.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

async fn count(store: &sekimori::store::Store, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(store.pool()).await.unwrap().try_get("n").unwrap()
}

#[tokio::main]
async fn main() {
    let people = env_or("BENCH_PEOPLE", 100_000);
    let sections = env_or("BENCH_SECTIONS", 400).max(2);
    let moves = env_or("BENCH_MOVES", 20_000);
    let leaves = env_or("BENCH_LEAVES", 3_000);
    let login_workers = env_or("BENCH_LOGIN_WORKERS", 2);
    let token_workers = env_or("BENCH_TOKEN_WORKERS", 2);
    let login_pause = Duration::from_millis(env_or("BENCH_LOGIN_PAUSE_MS", 250));
    let token_pause = Duration::from_millis(env_or("BENCH_TOKEN_PAUSE_MS", 20));
    let idle = Duration::from_secs(env_or("BENCH_IDLE_SECONDS", 5));
    let database_url = std::env::var("BENCH_DATABASE_URL").ok().filter(|u| !u.is_empty());
    let (public, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sekimori-april-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = Guard { children: Vec::new(), dir: dir.clone() };
    let sqlite_url = format!("sqlite:{}", dir.join("bench.db").display());
    let url = database_url.clone().unwrap_or_else(|| sqlite_url.clone());
    let database = match &database_url {
        Some(url) => sekimori::store::redacted_url(url),
        None => "SQLite, a file in a temp dir (WAL; each commit synced before it returns)".to_owned(),
    };
    // The valve's limits raised: this batch is meant (the valve has its own tests).
    std::fs::write(
        dir.join("bench.toml"),
        format!(
            "public_addr = \"127.0.0.1:{public}\"\nadmin_addr = \"127.0.0.1:{admin}\"\nissuer = \"http://127.0.0.1:{public}\"\n\
             database_url = \"{sqlite_url}\"\n[hr]\nmax_share_percent = 100\nmax_people = 10000000\n"
        ),
    )
    .unwrap();

    // Setup: demo people to log in with, a client for client_credentials, the directory.
    let db = database_url.as_deref();
    let demo = sekimori(&dir, db, &["demo"]);
    let logins: Vec<(String, String)> = demo_logins(&demo);
    assert!(!logins.is_empty(), "no demo logins (is the database empty?):\n{demo}");
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
            "client_credentials",
            "--service-scope",
            SERVICE_SCOPE,
            "--scope",
            "openid",
        ],
    );
    let secret = added
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a client secret from `sekimori client add`")
        .to_owned();
    // Opened as the server opens it, with the master key `sekimori demo` created: what this
    // process records itself (the SCIM feed's API token) is keyed into the audit chain.
    let mut config = sekimori::config::Config::load(Some(&dir.join("bench.toml"))).unwrap();
    config.database_url = url.clone();
    config.master_key_file = dir.join(&config.master_key_file).to_string_lossy().into_owned();
    let (store, _) = sekimori::open_store(&config).await.unwrap();
    let loading = Instant::now();
    bulk_load(&store, people, sections).await;
    let load_time = loading.elapsed();
    eprintln!("bulk load of {people} people: {:.1} s", load_time.as_secs_f64());
    let csv_path = dir.join("april.csv");
    std::fs::write(&csv_path, april_file(people, sections, moves, leaves)).unwrap();

    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let server = sekimori_command(&dir, db).arg("serve").stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let server_pid = server.id();
    guard.children.push(server);
    let target = Arc::new(Target { base: format!("http://127.0.0.1:{public}"), secret });
    let probe = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..200 {
        if probe.get(format!("{}/health", target.base)).send().await.is_ok_and(|r| r.status() == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "sekimori serve was not healthy within 20 s");
    // One login each first, so that the figures do not include the first connection's setup.
    for (login_id, password) in logins.iter().take(login_workers as usize) {
        log_in(&target, login_id, password).await.unwrap();
    }
    client_credentials(&probe, &target).await.unwrap();

    // The load, from now until the batch is done and a little after.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let mut tasks = Vec::new();
    for w in 0..login_workers {
        let (stop, samples, target) = (stop.clone(), samples.clone(), target.clone());
        let (login_id, password) = logins[w as usize % logins.len()].clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                let error = log_in(&target, &login_id, &password).await.err();
                samples.lock().unwrap().push(Sample { load: Load::Login, began, took: began.elapsed(), error });
                tokio::time::sleep(login_pause).await;
            }
        }));
    }
    for _ in 0..token_workers {
        let (stop, samples, target) = (stop.clone(), samples.clone(), target.clone());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                let error = client_credentials(&http, &target).await.err();
                samples.lock().unwrap().push(Sample { load: Load::Token, began, took: began.elapsed(), error });
                tokio::time::sleep(token_pause).await;
            }
        }));
    }
    let load_started = Instant::now();
    tokio::time::sleep(idle).await;

    // The batch.
    let import_started = Instant::now();
    let mut import = sekimori_command(&dir, db)
        .args(["hr", "import", csv_path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let import_pid = import.id();
    let lines: Lines = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (lines, stdout) = (lines.clone(), import.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push((Instant::now(), line));
            }
        })
    };
    let mut import_peak = 0;
    let status = loop {
        if let Some(kib) = peak_memory_kib(import_pid) {
            import_peak = import_peak.max(kib);
        }
        if let Some(status) = import.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut import.stderr.take().unwrap(), &mut stderr).unwrap();
    let output: Vec<(Instant, String)> = lines.lock().unwrap().clone();
    let text: String = output.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert!(status.success(), "the import failed ({status}):\n{text}{stderr}");
    let recorded_at = output.iter().find(|(_, l)| l.starts_with("recorded:")).expect("a recorded: line").0;
    let applied_by_import = output.iter().find(|(_, l)| l.starts_with("applied now:")).expect("an applied line");
    // The server's job may still be applying what it claimed.
    let mut all_applied_at = applied_by_import.0;
    while count(&store, "SELECT COUNT(*) AS n FROM person_changes WHERE status = 'pending'").await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        all_applied_at = Instant::now();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let server_peak = peak_memory_kib(server_pid).unwrap_or(0);

    // What the batch did.
    let applied = count(&store, "SELECT COUNT(*) AS n FROM person_changes WHERE status = 'applied'").await;
    let other = count(&store, "SELECT COUNT(*) AS n FROM person_changes WHERE status NOT IN ('applied')").await;
    let retired = count(&store, "SELECT COUNT(*) AS n FROM people WHERE status = 'retired'").await;
    let events =
        count(&store, "SELECT COUNT(*) AS n FROM audit_events WHERE action IN ('person.move', 'person.leave')").await;
    assert_eq!((applied, other), ((moves + leaves) as i64, 0), "every change applied, none failed:\n{text}");
    assert_eq!(retired, leaves as i64);
    assert_eq!(events, (moves + leaves) as i64, "each change audited once");

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let phases = [
        ("before the batch", load_started, import_started),
        ("recording", import_started, recorded_at),
        ("applying", recorded_at, all_applied_at),
    ];
    let mut command = String::new();
    if let Some(url) = db {
        command.push_str(&format!("BENCH_DATABASE_URL={} ", sekimori::store::redacted_url(url)));
    }
    command.push_str("cargo bench --bench april_first");
    println!();
    println!("April 1: {moves} transfers and {leaves} retirements against {people} people in {sections} sections");
    println!("database: {database}");
    println!("command: {command}");
    println!(
        "load: {login_workers} login workers (a login every {} ms after the last answer), {token_workers} client_credentials workers (every {} ms)",
        login_pause.as_millis(),
        token_pause.as_millis()
    );
    println!();
    println!("bulk load of the directory (setup, not measured): {:.1} s", load_time.as_secs_f64());
    println!(
        "recording: {:.2} s; applying: {:.2} s ({} by the import, the rest by the server's job); total {:.2} s",
        (recorded_at - import_started).as_secs_f64(),
        (all_applied_at - recorded_at).as_secs_f64(),
        applied_by_import.1.trim_start_matches("applied now: "),
        (all_applied_at - import_started).as_secs_f64()
    );
    println!("peak memory (VmHWM): import {} MiB, server {} MiB", import_peak / 1024, server_peak / 1024);
    println!();
    println!("| phase | wall time | logins | login p50 / p99 / max | login errors | grants | grant p50 / p99 / max | grant errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut error_samples = Vec::new();
    for (label, from, to) in phases {
        let mut stats = |load: Load| {
            let mut took: Vec<Duration> = Vec::new();
            let mut errors = 0;
            for s in samples.iter().filter(|s| s.load == load && s.began >= from && s.began < to) {
                match &s.error {
                    None => took.push(s.took),
                    Some(e) => {
                        errors += 1;
                        if error_samples.len() < 5 {
                            error_samples.push(format!("{label}: {e}"));
                        }
                    }
                }
            }
            took.sort();
            let max = took.last().copied().unwrap_or_default();
            (
                took.len(),
                format!("{} / {} / {}", ms(percentile(&took, 0.5)), ms(percentile(&took, 0.99)), ms(max)),
                errors,
            )
        };
        let (logins, login_latency, login_errors) = stats(Load::Login);
        let (grants, grant_latency, grant_errors) = stats(Load::Token);
        println!(
            "| {label} | {:.2} s | {logins} | {login_latency} | {login_errors} | {grants} | {grant_latency} | {grant_errors} |",
            (to - from).as_secs_f64()
        );
    }
    for e in &error_samples {
        eprintln!("error: {e}");
    }
    scim_at_scale(&store, admin, people).await;
    store.close().await;
    drop(guard);
}

/// The HR feed over SCIM against the same directory, as a connector uses it for each person:
/// find them by userName, by employee number, and change them. Sequential, one connection.
async fn scim_at_scale(store: &sekimori::store::Store, admin: u16, people: u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut tx = store.begin().await.unwrap();
    let feed = sekimori::admin::auth::create_token(
        &mut tx,
        &sekimori::audit::Actor::Cli,
        now,
        None,
        "benchmark feed",
        &["hr:feed".to_owned()],
        3600,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{admin}/scim/v2");
    let get = |query: Vec<(&'static str, String)>| {
        let request = http.get(format!("{base}/Users")).query(&query).bearer_auth(&feed.token);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let (mut by_name, mut by_number, mut patches) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..200 {
        let i = (k * 7919) % people;
        let began = Instant::now();
        // Upper case: userName compares without case.
        let found = get(vec![("filter", format!("userName eq \"B{i:06}\""))]).await;
        by_name.push(began.elapsed());
        assert_eq!(found["totalResults"], 1, "{found}");
        let id = found["Resources"][0]["id"].as_str().unwrap().to_owned();
        let began = Instant::now();
        let found = get(vec![(
            "filter",
            format!("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"{}\"", number(i)),
        )])
        .await;
        by_number.push(began.elapsed());
        assert_eq!(found["totalResults"], 1, "{found}");
        let patch = serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "name.givenName", "value": format!("{i}号改")}]});
        let began = Instant::now();
        let response = http
            .patch(format!("{base}/Users/{id}"))
            .bearer_auth(&feed.token)
            .header("content-type", "application/scim+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
        patches.push(began.elapsed());
    }
    let began = Instant::now();
    let page = get(vec![("startIndex", (people / 2).to_string()), ("count", "100".to_owned())]).await;
    let paged = began.elapsed();
    assert_eq!(page["Resources"].as_array().map(Vec::len), Some(100));
    println!();
    println!("SCIM against {people} people (200 of each, one after the other):");
    println!();
    println!("| request | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (label, mut took) in [
        ("GET /Users?filter=userName eq …", by_name),
        ("GET /Users?filter=…:employeeNumber eq …", by_number),
        ("PATCH /Users/{id} (name.givenName)", patches),
    ] {
        took.sort();
        let max = took.last().copied().unwrap_or_default();
        println!("| {label} | {} | {} | {} |", ms(percentile(&took, 0.5)), ms(percentile(&took, 0.99)), ms(max));
    }
    println!("| GET /Users?startIndex={}&count=100 (one page) | {} | | |", people / 2, ms(paged));
}
