//! The `sekimori` command as an operator runs it: a fresh start with no configuration, the
//! demo, client registration, and readable errors.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn sekimori(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sekimori"));
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("SEKIMORI_") {
            command.env_remove(key);
        }
    }
    command
}

/// A new directory of its own under the system's temp dir, removed with what it holds when the
/// value is dropped — so keep the value, not only a path made from it, while the directory is
/// in use (`let dir = temp_dir(); … dir.join(…)`).
pub(crate) fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("sekimori-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// See [`temp_dir`].
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    /// The path, the directory kept: the caller removes it.
    pub(crate) fn keep(mut self) -> std::path::PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Two ports nobody listens on now (bound to port 0 and released).
pub(crate) fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// The defaults a fresh clone runs with: the public listener on 127.0.0.1:8080 (also the
/// issuer), the admin listener on 127.0.0.1:8081, SQLite and the master key file beside it.
#[test]
fn the_defaults_are_loopback_8080_and_8081_with_sqlite() {
    let config = sekimori::config::Config::default();
    assert_eq!(config.public_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin_addr.to_string(), "127.0.0.1:8081");
    assert_eq!(config.issuer, "http://127.0.0.1:8080");
    assert_eq!(config.database_url, "sqlite:sekimori.db");
    assert_eq!(config.master_key_file, "sekimori-master.key");
}

/// `cargo run --release` on a fresh clone: no file, and discovery answers with a bootstrap code
/// on the console. (The ports are free ones given by environment, so that the test never
/// collides with a server running on the defaults; the defaults are checked above.)
#[tokio::test]
async fn fresh_start_serves_discovery_and_prints_a_bootstrap_code() {
    let dir = temp_dir();
    let (public, admin) = free_ports();
    let mut child = sekimori(&dir)
        .env("SEKIMORI_PUBLIC_ADDR", format!("127.0.0.1:{public}"))
        .env("SEKIMORI_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("SEKIMORI_ISSUER", format!("http://127.0.0.1:{public}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = crate::common::client().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let discovery = loop {
        match http.get(format!("http://127.0.0.1:{public}/.well-known/openid-configuration")).send().await {
            Ok(response) if response.status() == 200 => break response.json::<serde_json::Value>().await.unwrap(),
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("discovery did not answer within 60 s");
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let admin_health = http.get(format!("http://127.0.0.1:{admin}/health")).send().await.unwrap().status();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert_eq!(discovery["issuer"], format!("http://127.0.0.1:{public}"));
    assert_eq!(discovery["authorization_endpoint"], format!("http://127.0.0.1:{public}/authorize"));
    assert_eq!(admin_health, 200);
    assert!(stdout.contains("One-time bootstrap code"), "{stdout}");
    assert!(dir.join("sekimori.db").exists());
    let key = std::fs::metadata(dir.join("sekimori-master.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "the master key file is private");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database whose master key file went missing is never given a new key: what it holds was
/// sealed with the old one. The start is refused, naming the file, and nothing is written.
#[test]
fn a_missing_master_key_beside_an_existing_database_is_refused_and_nothing_is_written() {
    let dir = temp_dir();
    let first = sekimori(&dir).arg("demo").output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let key = dir.join("sekimori-master.key");
    let original = std::fs::read_to_string(&key).unwrap();
    let keys_before = sekimori(&dir).args(["keys", "list"]).output().unwrap().stdout;
    std::fs::remove_file(&key).unwrap();
    let (public, admin) = free_ports();
    for command in [["demo"], ["serve"]] {
        let refused = sekimori(&dir)
            .args(command)
            .env("SEKIMORI_PUBLIC_ADDR", format!("127.0.0.1:{public}"))
            .env("SEKIMORI_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(!refused.status.success(), "{command:?} must not start without the key");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("sekimori-master.key") && stderr.contains("does not exist"), "{stderr}");
        assert!(!key.exists(), "no new master key was created");
    }
    // A key restored readable by others is refused, with the way to fix it.
    std::fs::write(&key, original).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = sekimori(&dir).arg("demo").stdout(Stdio::null()).output().unwrap();
        assert!(!refused.status.success(), "a key others can read must not be used");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("sekimori-master.key") && stderr.contains("chmod 600"), "{stderr}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // With the key restored (private), it starts as before: the same signing keys, readable with it.
    let again = sekimori(&dir).arg("demo").output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already present"));
    let keys_after = sekimori(&dir).args(["keys", "list"]).output().unwrap().stdout;
    assert_eq!(String::from_utf8_lossy(&keys_after), String::from_utf8_lossy(&keys_before), "the same keys");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Errors that name their object: the address in use, the missing directory, the unreachable
/// server and its cause, the one setting out of range, the contradictory options.
#[test]
fn start_up_errors_name_what_is_wrong() {
    let dir = temp_dir();
    let stderr_of = |output: std::process::Output| {
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // A port someone else holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let (_, admin) = free_ports();
    let busy = sekimori(&dir)
        .env("SEKIMORI_PUBLIC_ADDR", &taken_addr)
        .env("SEKIMORI_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .output()
        .unwrap();
    let message = stderr_of(busy);
    assert!(message.contains(&taken_addr) && message.contains("public listener"), "{message}");
    // SQLite in a directory that does not exist.
    let missing =
        sekimori(&dir).arg("migrate").env("SEKIMORI_DATABASE_URL", "sqlite:no-such-dir/x.db").output().unwrap();
    let message = stderr_of(missing);
    assert!(message.contains("no-such-dir") && message.contains("does not exist"), "{message}");
    assert!(!dir.join("no-such-dir").exists());
    // PostgreSQL where nothing listens: named, with the cause, in seconds.
    let started = Instant::now();
    let unreachable = sekimori(&dir)
        .arg("migrate")
        .env("SEKIMORI_DATABASE_URL", "postgres://sekimori:secret@127.0.0.1:1/sekimori")
        .output()
        .unwrap();
    let message = stderr_of(unreachable);
    assert!(message.contains("cannot connect to PostgreSQL at") && message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("secret"), "the password is not printed: {message}");
    assert!(started.elapsed() < Duration::from_secs(8), "answered in {:?}", started.elapsed());
    // One setting out of range: that one is named, not every rule.
    std::fs::write(dir.join("ttl.toml"), "[tokens]\naccess_token_ttl = 99999\n").unwrap();
    let message = stderr_of(sekimori(&dir).args(["--config", "ttl.toml", "migrate"]).output().unwrap());
    assert!(message.contains("tokens.access_token_ttl") && !message.contains("refresh_token_ttl"), "{message}");
    // A public client has no secret to post.
    let both = sekimori(&dir)
        .args(["client", "add", "--name", "x", "--redirect-uri", "http://127.0.0.1/cb", "--public", "--secret-post"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("--secret-post"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `keys list` shows times an operator reads, and a code from `sekimori bootstrap` stays valid
/// when `serve` starts afterwards.
#[tokio::test]
async fn keys_show_dates_and_a_printed_bootstrap_code_survives_the_server_start() {
    let dir = temp_dir();
    let keys = sekimori(&dir).args(["keys", "list"]).output().unwrap();
    assert!(keys.status.success(), "{}", String::from_utf8_lossy(&keys.stderr));
    let listing = String::from_utf8_lossy(&keys.stdout).into_owned();
    assert!(listing.contains("+09:00") && listing.contains("signs from 20"), "{listing}");
    let printed = sekimori(&dir).arg("bootstrap").output().unwrap();
    let text = String::from_utf8_lossy(&printed.stdout).into_owned();
    assert!(text.starts_with("No administrator yet."), "{text}");
    let code = text.lines().nth(1).unwrap().trim().to_owned();
    let (public, admin) = free_ports();
    let mut child = sekimori(&dir)
        .env("SEKIMORI_PUBLIC_ADDR", format!("127.0.0.1:{public}"))
        .env("SEKIMORI_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = crate::common::client().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("http://127.0.0.1:{admin}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let exchanged = http
        .post(format!("http://127.0.0.1:{admin}/api/v1/bootstrap"))
        .json(&serde_json::json!({"code": code, "name": "最初の管理者"}))
        .send()
        .await
        .unwrap()
        .status();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert_eq!(exchanged, 201, "the code printed before the start still works");
    assert!(stdout.contains("issued earlier"), "the server said so rather than printing a new code: {stdout}");
    let again = sekimori(&dir).arg("bootstrap").output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("Administrators exist already"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_seeds_once_and_client_add_reports_bad_input() {
    let dir = temp_dir();
    let first = sekimori(&dir).arg("demo").output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let out = String::from_utf8_lossy(&first.stdout);
    let logins = out.lines().filter(|l| l.starts_with("  ") && !l.contains("client_")).count();
    assert_eq!(logins, 20, "{out}");
    assert!(out.contains("client_id=zeimu"));
    assert!(out.contains("client_secret="));
    let again = sekimori(&dir).arg("demo").output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already present"));

    let bad = sekimori(&dir)
        .args(["client", "add", "--name", "福祉", "--redirect-uri", "http://evil.example/cb"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("redirect_uris") && err.contains("https"), "{err}");

    let good = sekimori(&dir)
        .args([
            "client",
            "add",
            "--name",
            "福祉システム",
            "--client-id",
            "fukushi",
            "--redirect-uri",
            "https://fukushi.example.lg.jp/cb",
        ])
        .output()
        .unwrap();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(out.contains("client_id:     fukushi") && out.contains("client_secret: "), "{out}");

    let verify = sekimori(&dir).args(["audit", "verify"]).output().unwrap();
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn configuration_mistakes_are_named() {
    let dir = temp_dir();
    let missing = sekimori(&dir).args(["--config", "nope.toml", "migrate"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read config file nope.toml"));
    std::fs::write(dir.join("bad.toml"), "issuer = 'ftp://x'\n").unwrap();
    let bad = sekimori(&dir).args(["--config", "bad.toml", "migrate"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("issuer"));
    let env = sekimori(&dir).arg("migrate").env("SEKIMORI_PUBLIC_ADDR", "not-an-address").output().unwrap();
    assert_eq!(env.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&env.stderr).contains("SEKIMORI_PUBLIC_ADDR"));
    // Every pooled connection would open a database of its own: refused, not half working.
    let memory = sekimori(&dir).arg("migrate").env("SEKIMORI_DATABASE_URL", "sqlite::memory:").output().unwrap();
    assert_eq!(memory.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&memory.stderr).contains("in-memory SQLite database is not supported"));
    let _ = std::fs::remove_dir_all(&dir);
}
