#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Login flood benchmark: a release `sekimori` under 200 concurrent password logins (each a
//! full argon2id verification with the production parameters), while a probe measures the
//! latency of discovery and of the token endpoint. Reports logins/s, probe p50/p99 and the
//! server's peak memory (VmHWM).
//!
//!     cargo bench --bench login_flood            # defaults: 200 workers, 15 s
//!     FLOOD_WORKERS=400 FLOOD_SECONDS=30 cargo bench --bench login_flood

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{env_or, hidden, peak_memory_kib, percentile};

#[tokio::main]
async fn main() {
    let workers = env_or("FLOOD_WORKERS", 200) as usize;
    let seconds = env_or("FLOOD_SECONDS", 15);
    let (public, admin) = (env_or("FLOOD_PUBLIC_PORT", 18080), env_or("FLOOD_ADMIN_PORT", 18081));
    let dir = std::env::temp_dir().join(format!("sekimori-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Throttling per source would turn the flood into cheap 429s after 30 failures: lift it
    // so every attempt costs a full argon2 verification, the worst case for the server.
    std::fs::write(
        dir.join("bench.toml"),
        format!(
            "public_addr = \"127.0.0.1:{public}\"\nadmin_addr = \"127.0.0.1:{admin}\"\nissuer = \"http://127.0.0.1:{public}\"\n\
             [password]\nsource_max_failures = 100000000\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_sekimori");
    let demo = Command::new(bin).current_dir(&dir).args(["--config", "bench.toml", "demo"]).output().unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let demo_out = String::from_utf8_lossy(&demo.stdout).into_owned();
    let secret = demo_out.lines().find_map(|l| l.trim().strip_prefix("client_secret=")).unwrap().to_owned();
    let mut server = Command::new(bin)
        .current_dir(&dir)
        .args(["--config", "bench.toml", "serve"])
        .env("SEKIMORI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{public}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for _ in 0..100 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_memory = peak_memory_kib(server.id()).unwrap_or(0);

    // Each worker is a browser with its own pending login, trying wrong passwords in a loop.
    let authorize = format!(
        "{base}/authorize?response_type=code&client_id=zeimu&redirect_uri=http%3A%2F%2F127.0.0.1%3A9001%2Fcallback&scope=openid"
    );
    let mut prepared = Vec::new();
    for _ in 0..workers {
        let browser =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let to_login = browser.get(&authorize).send().await.unwrap();
        let location = to_login.headers()["location"].to_str().unwrap().to_owned();
        let html = browser.get(format!("{base}{location}")).send().await.unwrap().text().await.unwrap();
        prepared.push((browser, hidden(&html, "csrf_token").unwrap(), hidden(&html, "request").unwrap()));
    }

    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let attempts = Arc::new(AtomicU64::new(0));
    let refused_busy = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (browser, csrf, request)) in prepared.into_iter().enumerate() {
        let (attempts, refused_busy, base) = (attempts.clone(), refused_busy.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < stop_at {
                let started = Instant::now();
                let form = [
                    ("csrf_token", csrf.as_str()),
                    ("request", request.as_str()),
                    ("login_id", &format!("nobody{i}")),
                    ("password", "not-the-password-at-all"),
                ];
                match browser.post(format!("{base}/login")).form(&form).send().await {
                    Ok(r) if r.status() == 503 => {
                        refused_busy.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        latencies.push(started.elapsed());
                    }
                    Err(_) => {}
                }
            }
            latencies
        }));
    }

    // The probe: what everyone else sees while the flood runs.
    let (mut discovery, mut token) = (Vec::new(), Vec::new());
    tokio::time::sleep(Duration::from_secs(1)).await;
    while Instant::now() < stop_at {
        let started = Instant::now();
        let ok = http.get(format!("{base}/.well-known/openid-configuration")).send().await.map(|r| r.status() == 200);
        if ok.unwrap_or(false) {
            discovery.push(started.elapsed());
        }
        let started = Instant::now();
        let response = http
            .post(format!("{base}/token"))
            .basic_auth("zeimu", Some(&secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", "no-such-code"),
                ("redirect_uri", "http://127.0.0.1:9001/callback"),
            ])
            .send()
            .await;
        if response.map(|r| r.status() == 400).unwrap_or(false) {
            token.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut logins = Vec::new();
    for task in tasks {
        logins.extend(task.await.unwrap());
    }
    let peak = peak_memory_kib(server.id()).unwrap_or(0);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    logins.sort();
    discovery.sort();
    token.sort();
    let total = attempts.load(Ordering::Relaxed);
    println!(
        "login flood: {workers} concurrent workers for {seconds} s, argon2id m=19456 KiB t=2 p=1, 4 hashing slots"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| failed logins answered | {total} ({:.1}/s) |", total as f64 / seconds as f64);
    println!("| refused with 503 (queue full) | {} |", refused_busy.load(Ordering::Relaxed));
    println!("| login latency p50 / p99 | {:?} / {:?} |", percentile(&logins, 0.5), percentile(&logins, 0.99));
    println!(
        "| discovery during flood p50 / p99 (n={}) | {:?} / {:?} |",
        discovery.len(),
        percentile(&discovery, 0.5),
        percentile(&discovery, 0.99)
    );
    println!(
        "| token endpoint during flood p50 / p99 (n={}) | {:?} / {:?} |",
        token.len(),
        percentile(&token, 0.5),
        percentile(&token, 0.99)
    );
    println!("| server memory: idle / peak (VmHWM) | {} MiB / {} MiB |", idle_memory / 1024, peak / 1024);
}
