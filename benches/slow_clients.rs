#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Slow-client run: many connections that send their request headers a few bytes at a time
//! (slowloris) from one address, while a probe from another address keeps asking `/health`.
//! Reports how many connections the server took, how many it closed at once (the per-source
//! cap), how long it held the others, and the probe's latency meanwhile.
//!
//!     cargo bench --bench slow_clients                   # 3000 connections, at most 60 s
//!     SLOW_CONNECTIONS=1000 SLOW_SECONDS=30 cargo bench --bench slow_clients
//!     SLOW_BIN=/path/to/other/sekimori cargo bench --bench slow_clients   # another build

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{env_or, peak_memory_kib, percentile};

/// What became of one slow connection.
enum Fate {
    /// The connection could not be opened.
    NotOpened,
    /// Closed by the server after this long.
    Closed(Duration),
    /// Still open when the run ended.
    Open,
}

async fn slow_client(target: std::net::SocketAddr, give_up: Instant) -> Fate {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else { return Fate::NotOpened };
    if socket.bind("127.0.0.2:0".parse().unwrap()).is_err() {
        return Fate::NotOpened;
    }
    let Ok(mut stream) = socket.connect(target).await else { return Fate::NotOpened };
    let opened = Instant::now();
    if stream.write_all(b"GET /health HTTP/1.1\r\nHost: sekimori\r\n").await.is_err() {
        return Fate::Closed(opened.elapsed());
    }
    let mut buffer = [0u8; 512];
    let mut line = 0u64;
    loop {
        // A header line every 2 s, never the blank line that ends the head.
        let next = Instant::now() + Duration::from_secs(2);
        if next > give_up {
            return Fate::Open;
        }
        match tokio::time::timeout_at(next.into(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Fate::Closed(opened.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => {
                line += 1;
                if stream.write_all(format!("X-Slow-{line}: a\r\n").as_bytes()).await.is_err() {
                    return Fate::Closed(opened.elapsed());
                }
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let connections = env_or("SLOW_CONNECTIONS", 3000) as usize;
    let seconds = env_or("SLOW_SECONDS", 60);
    let (public, admin) = (env_or("SLOW_PUBLIC_PORT", 18180), env_or("SLOW_ADMIN_PORT", 18181));
    let dir = std::env::temp_dir().join(format!("sekimori-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bench.toml"),
        format!(
            "public_addr = \"127.0.0.1:{public}\"\nadmin_addr = \"127.0.0.1:{admin}\"\nissuer = \"http://127.0.0.1:{public}\"\n"
        ),
    )
    .unwrap();
    let bin = std::env::var("SLOW_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sekimori").to_owned());
    let mut server = Command::new(&bin)
        .current_dir(&dir)
        .args(["--config", "bench.toml", "serve"])
        .env("SEKIMORI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{public}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..100 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let target: std::net::SocketAddr = format!("127.0.0.1:{public}").parse().unwrap();
    let started = Instant::now();
    let give_up = started + Duration::from_secs(seconds);

    // The probe: a fresh connection to /health every 100 ms from 127.0.0.1.
    let probe = {
        let (http, url) = (http.clone(), format!("{base}/health"));
        tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < give_up {
                let sent = Instant::now();
                match tokio::time::timeout(Duration::from_secs(5), http.get(&url).send()).await {
                    Ok(Ok(response)) if response.status() == 200 => latencies.push(sent.elapsed()),
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (latencies, failures)
        })
    };
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..connections {
        clients.spawn(slow_client(target, give_up));
    }
    let mut held = Vec::new();
    let (mut at_once, mut open, mut not_opened) = (0usize, 0usize, 0usize);
    while let Some(fate) = clients.join_next().await {
        match fate.unwrap() {
            Fate::NotOpened => not_opened += 1,
            Fate::Closed(after) if after < Duration::from_millis(500) => at_once += 1,
            Fate::Closed(after) => held.push(after),
            Fate::Open => open += 1,
        }
    }
    let all_done = started.elapsed();
    let (mut latencies, failures) = probe.await.unwrap();
    latencies.sort();
    held.sort();
    let peak = peak_memory_kib(server.id()).unwrap_or(0);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("slow-client run against {bin}");
    println!("  connections attempted:            {connections} (from 127.0.0.2), run capped at {seconds} s");
    println!("  closed by the server at once:     {at_once} (per-source / listener cap)");
    println!(
        "  held, then closed by the server:  {} (after p50 {:.1?}, max {:.1?})",
        held.len(),
        percentile(&held, 0.5),
        held.last().copied().unwrap_or_default()
    );
    println!("  still open at the end of the run: {open}");
    println!("  could not connect:                {not_opened}");
    println!("  all slow clients done after:      {all_done:.1?}");
    println!(
        "  probe /health from 127.0.0.1:     {} answered, {} failed; p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        latencies.len(),
        failures,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!("  server peak memory:               {} MiB", peak / 1024);
}
