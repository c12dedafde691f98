//! Several nodes on one PostgreSQL database (R22) and a graceful stop (R20): a revocation made
//! on one node holds on the other at once, a key rotated on one is used by the other at once,
//! the jobs that run once move to another node when their leader is killed or stopped (real
//! `sekimori` processes), and a node told to stop answers every request it took.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{browser, fresh_database, location, log_in, query_of, token_request, Db, TestServer};

const PASSWORD: &str = "hitotsu-no-seki-2026!";
const CALLBACK: &str = "http://127.0.0.1:9201/callback";

/// The value of the sample `series` (name and labels, exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.trim().parse().unwrap())
}

/// `/metrics` of the admin listener at `admin_url`; None when the node does not answer.
async fn scrape(http: &reqwest::Client, admin_url: &str, token: &str) -> Option<String> {
    let response = http.get(format!("{admin_url}/metrics")).bearer_auth(token).send().await.ok()?;
    assert_eq!(response.status(), 200);
    response.text().await.ok()
}

/// Whether the node says it runs the singleton jobs; None when it does not answer.
async fn leads(http: &reqwest::Client, admin_url: &str, token: &str) -> Option<bool> {
    let text = scrape(http, admin_url, token).await?;
    let gauge = sample(&text, "sekimori_jobs_leader").unwrap_or_else(|| panic!("no sekimori_jobs_leader:\n{text}"));
    Some(gauge == 1.0)
}

/// Polls `check` every 20 ms until it holds; how long that took. Panics after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The consuming system 税務 (confidential, with refresh tokens); returns its secret.
async fn zeimu(server: &TestServer) -> String {
    let (_, secret) = server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": [CALLBACK]}))
        .await;
    secret.unwrap()
}

/// A person logged in to 税務 on `server`; returns the token response.
async fn tokens_of_a_person(server: &TestServer, secret: &str) -> Value {
    server.add_person("E8001", "suzuki", PASSWORD).await;
    let authorize = crate::common::authorize_url(
        server,
        &[("response_type", "code"), ("client_id", "zeimu"), ("redirect_uri", CALLBACK), ("scope", "openid")],
    );
    let response = log_in(&browser(), server, &authorize, "suzuki", PASSWORD).await;
    assert_eq!(response.status(), 303);
    let code = query_of(&location(&response))["code"].clone();
    let (status, tokens, _) = token_request(
        server,
        Some(("zeimu", secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

/// A fresh access token from `server` for the grant of `refresh_token`; returns (access, refresh).
async fn refreshed(server: &TestServer, secret: &str, refresh_token: &str) -> (String, String) {
    let (status, body, _) = token_request(
        server,
        Some(("zeimu", secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

async fn active_at(server: &TestServer, secret: &str, token: &str) -> bool {
    crate::common::introspect_as(server, "zeimu", secret, token).await
}

/// R22: 100 access tokens, each issued by node A, seen active by node B (which keeps the
/// state behind it), revoked on node A (RFC 7009); node B's introspection must answer inactive
/// at once — the first time it is asked after A's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sekimori_postgres_tests), ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built")]
async fn a_revocation_on_one_node_holds_on_the_other_at_once() {
    let a = TestServer::start(Db::Postgres).await;
    let b = a.another_node().await;
    let secret = zeimu(&a).await;
    let tokens = tokens_of_a_person(&a, &secret).await;
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let notices = |text: &str| sample(text, "sekimori_cluster_notices_total{change=\"revocation\"}").unwrap_or(0.0);
    let heard_before = notices(&scrape(&b.http, &b.admin_url, &b.admin_token).await.unwrap());

    const TRIALS: usize = 100;
    let mut delays = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let (access, next) = refreshed(&a, &secret, &refresh).await;
        refresh = next;
        assert!(active_at(&b, &secret, &access).await, "trial {trial}: node B takes node A's token");
        let response = a
            .http
            .post(format!("{}/revoke", a.public_url))
            .basic_auth("zeimu", Some(&secret))
            .form(&[("token", access.as_str()), ("token_type_hint", "access_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "trial {trial}");
        let answered = Instant::now();
        let mut asked = 0;
        loop {
            asked += 1;
            if !active_at(&b, &secret, &access).await {
                delays.push(answered.elapsed());
                break;
            }
            assert!(answered.elapsed() < Duration::from_secs(5), "trial {trial}: still active on node B after 5 s");
        }
        // Node B reads the token's row on every call, whatever it keeps of the state behind it:
        // the first question after A's answer already hears "inactive".
        assert_eq!(asked, 1, "trial {trial}: node B answered active after node A's revocation");
        if trial == 0 {
            let userinfo = b.http.get(format!("{}/userinfo", b.public_url)).bearer_auth(&access).send().await.unwrap();
            assert_eq!(userinfo.status(), 401, "node B's userinfo refuses the revoked token too");
        }
    }
    delays.sort();
    let median = delays[TRIALS / 2];
    let worst = delays[TRIALS - 1];
    eprintln!(
        "R22: revoked on node A → inactive at node B's introspection, {TRIALS} trials: median {:.1} ms, worst {:.1} ms",
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0
    );
    assert!(worst < Duration::from_secs(1), "worst {worst:?}");
    // Each revocation was announced in its transaction, and node B heard every one.
    let (node_a, node_b) = (&a, &b);
    within(Duration::from_secs(5), "node B hears the revocation notices", || async move {
        notices(&scrape(&node_b.http, &node_b.admin_url, &node_b.admin_token).await.unwrap())
            >= heard_before + TRIALS as f64
    })
    .await;
    // One of the two nodes runs the singleton jobs, not both.
    within(Duration::from_secs(5), "exactly one jobs leader", || async move {
        node_a.app.cluster.is_leader() != node_b.app.cluster.is_leader()
    })
    .await;
    b.stop().await;
    a.stop().await;
}

/// R22: what node B keeps of a consuming system (its client authentication) is dropped when
/// node A disables it: B refuses the system within a second of A's answer, and A at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sekimori_postgres_tests), ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built")]
async fn a_system_disabled_on_one_node_is_refused_by_the_other_within_a_second() {
    let a = TestServer::start(Db::Postgres).await;
    let b = a.another_node().await;
    let (_, secret) = a
        .add_client(json!({"client_id": "renkei", "name": "連携基盤", "client_type": "confidential",
                           "redirect_uris": [CALLBACK], "grant_types": ["client_credentials"],
                           "service_scopes": ["renkei.read"]}))
        .await;
    let secret = secret.unwrap();
    let grant = [("grant_type", "client_credentials"), ("scope", "renkei.read")];
    // Both nodes have authenticated the system (and keep it).
    for node in [&a, &b, &a, &b] {
        let (status, body, _) = token_request(node, Some(("renkei", &secret)), &grant).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = a.admin(reqwest::Method::POST, "/api/v1/clients/renkei/disable", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = token_request(&a, Some(("renkei", &secret)), &grant).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "node A at once: {body}");
    let (secret, node_b) = (secret.as_str(), &b);
    let took = within(Duration::from_secs(1), "node B refuses the disabled system", || async move {
        token_request(node_b, Some(("renkei", secret)), &grant).await.0 == 401
    })
    .await;
    eprintln!("R22: system disabled on node A → refused by node B after {:.1} ms", took.as_secs_f64() * 1000.0);
    b.stop().await;
    a.stop().await;
}

/// R22: a key rotated on node A (signing at once) is published and trusted by node B at once,
/// not at B's next periodic reload a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sekimori_postgres_tests), ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built")]
async fn a_key_rotated_on_one_node_is_used_by_the_other_at_once() {
    let a = TestServer::start(Db::Postgres).await;
    let b = a.another_node().await;
    let secret = zeimu(&a).await;
    let tokens = tokens_of_a_person(&a, &secret).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    // A key begins signing no earlier than the second after the key before it (keys are ordered
    // by that second): one rotated in the very second the node made its first would sign a
    // second later. The test waits for the next second, so that "at once" is at once.
    let started = a.app.clock.now();
    while a.app.clock.now() <= started {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, rotated) = a
        .admin(
            reqwest::Method::POST,
            "/api/v1/signing-keys/rotate",
            Some(json!({"algs": ["ES256"], "publish_ahead_seconds": 0})),
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    let kid = rotated["created"][0].as_str().unwrap().to_owned();
    let (node_b, kid_ref) = (&b, kid.as_str());
    let published = within(Duration::from_secs(1), "node B publishes the new key", || async move {
        let jwks: Value =
            node_b.http.get(format!("{}/jwks.json", node_b.public_url)).send().await.unwrap().json().await.unwrap();
        jwks["keys"].as_array().unwrap().iter().any(|key| key["kid"] == kid_ref)
    })
    .await;
    // Node A signs with the new key at once; node B takes what it signs.
    let (access, _) = refreshed(&a, &secret, &refresh).await;
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid.as_str(), "node A signs with the rotated key");
    assert!(active_at(&b, &secret, &access).await, "node B verifies it");
    eprintln!("R22: a key rotated on node A is in node B's JWKS after {:.1} ms", published.as_secs_f64() * 1000.0);
    b.stop().await;
    a.stop().await;
}

/// The session holding the jobs lock in `server`'s database, if any.
async fn lock_holder(server: &TestServer) -> Option<i32> {
    use sqlx::Row;
    sqlx::query(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(server.app.store.pool())
    .await
    .unwrap()
    .map(|row| row.try_get::<i32, _>("pid").unwrap())
}

/// R22: the server ends the leader's lock session (as a database restart or an administrator
/// would): the leader finds its connection broken and steps down, and a node takes the lock
/// again on a new session, so that one node leads again within seconds. (A leader that kept
/// leading would lead beside the node that took the freed lock.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sekimori_postgres_tests), ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built")]
async fn a_leader_whose_lock_session_ends_steps_down_and_the_lock_is_taken_again() {
    let a = TestServer::start(Db::Postgres).await;
    let b = a.another_node().await;
    let (node_a, node_b) = (&a, &b);
    within(Duration::from_secs(5), "exactly one jobs leader", || async move {
        node_a.app.cluster.is_leader() != node_b.app.cluster.is_leader()
    })
    .await;
    let before = lock_holder(&a).await.expect("the leader holds the lock");
    sqlx::query("SELECT pg_terminate_backend($1) AS ended").bind(before).fetch_one(a.app.store.pool()).await.unwrap();
    let took = within(Duration::from_secs(5), "the lock is held again, by one leader", || async move {
        let holder = lock_holder(node_a).await;
        holder.is_some_and(|pid| pid != before) && node_a.app.cluster.is_leader() != node_b.app.cluster.is_leader()
    })
    .await;
    eprintln!("R22: the leader's lock session ended → held again after {:.0} ms", took.as_secs_f64() * 1000.0);
    b.stop().await;
    a.stop().await;
}

/// A real `sekimori serve` process.
struct Node {
    child: Child,
    name: String,
    dir: PathBuf,
    public_url: String,
    admin_url: String,
}

/// What every node of one deployment shares.
struct Deployment {
    database_url: String,
    master_key: String,
    issuer: String,
    dir: PathBuf,
    /// An API token with every right, made straight in the database.
    token: String,
    http: reqwest::Client,
}

impl Deployment {
    async fn new(db: Db) -> Deployment {
        let database_url = fresh_database(db).await;
        let config =
            crate::common::test_config(&database_url, "127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap());
        let (store, _) = sekimori::open_store(&config).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let scopes: Vec<String> = sekimori::admin::auth::SCOPES.iter().map(|s| s.to_string()).collect();
        let now = sekimori::clock::Clock::default().now();
        let issued = sekimori::admin::auth::create_token(
            &mut tx,
            &sekimori::audit::Actor::Cli,
            now,
            None,
            "運用試験",
            &scopes,
            86_400,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        store.close().await;
        let (issuer_port, _) = crate::cli::free_ports();
        Deployment {
            database_url,
            master_key: config.master_key.unwrap(),
            issuer: format!("http://127.0.0.1:{issuer_port}"),
            dir: crate::cli::temp_dir().keep(),
            token: issued.token,
            http: crate::common::client().build().unwrap(),
        }
    }

    /// Starts a node and waits until it answers.
    async fn start(&self, name: &str) -> Node {
        let (public, admin) = crate::cli::free_ports();
        let child = crate::cli::sekimori(&self.dir)
            .arg("serve")
            .env("SEKIMORI_DATABASE_URL", &self.database_url)
            .env("SEKIMORI_MASTER_KEY", &self.master_key)
            .env("SEKIMORI_ISSUER", &self.issuer)
            .env("SEKIMORI_PUBLIC_ADDR", format!("127.0.0.1:{public}"))
            .env("SEKIMORI_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("SEKIMORI_LOG", "info,sqlx=warn,tower_http=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap();
        let node = Node {
            child,
            name: name.to_owned(),
            dir: self.dir.clone(),
            public_url: format!("http://127.0.0.1:{public}"),
            admin_url: format!("http://127.0.0.1:{admin}"),
        };
        let start = Instant::now();
        loop {
            if let Ok(response) = self.http.get(format!("{}/health", node.admin_url)).send().await {
                if response.status() == 200 {
                    return node;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{name} did not start:\n{}", node.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn leads(&self, node: &Node) -> Option<bool> {
        leads(&self.http, &node.admin_url, &self.token).await
    }

    async fn end(self) {
        crate::common::drop_database(&self.database_url).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.err", self.name))).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} {}", self.name);
    }

    /// Waits for the process to end (within 30 s); its exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{} did not end:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which of `nodes` leads, once exactly one of them says so (and the others say they do not).
async fn the_leader(deployment: &Deployment, nodes: &[&Node]) -> usize {
    let start = Instant::now();
    loop {
        let mut says = Vec::new();
        for node in nodes {
            says.push(deployment.leads(node).await);
        }
        if says.iter().all(Option::is_some) && says.iter().filter(|s| **s == Some(true)).count() == 1 {
            return says.iter().position(|s| *s == Some(true)).unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no single leader within 10 s: {says:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// R22: the leader killed outright (SIGKILL), PostgreSQL ends its session and frees the lock,
/// and the other node leads within a few seconds; the leader stopped (SIGTERM) gives the lock
/// back and says so, and the other leads at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sekimori_postgres_tests), ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built")]
async fn the_jobs_move_to_another_node_when_their_leader_is_killed_or_stopped() {
    let deployment = Deployment::new(Db::Postgres).await;
    let mut nodes = vec![deployment.start("first").await, deployment.start("second").await];
    let leader = the_leader(&deployment, &[&nodes[0], &nodes[1]]).await;
    let mut killed = nodes.remove(leader);
    let survivor = nodes.remove(0);

    killed.signal("-KILL");
    killed.wait();
    let (d, s) = (&deployment, &survivor);
    let took = within(Duration::from_secs(10), "the other node leads after a SIGKILL", || async move {
        d.leads(s).await == Some(true)
    })
    .await;
    eprintln!("R22: leader killed (SIGKILL) → the other node leads after {:.0} ms", took.as_secs_f64() * 1000.0);
    assert!(took < Duration::from_secs(5), "{took:?}\n{}", survivor.log());

    // A node starting beside a leader waits its turn.
    let mut newcomer = deployment.start("third").await;
    assert_eq!(the_leader(&deployment, &[&survivor, &newcomer]).await, 0, "the leader stays the leader");

    // A graceful stop: the lock is given back and the others are told on the channel.
    let mut released = sqlx::postgres::PgListener::connect(&deployment.database_url).await.unwrap();
    released.listen(sekimori::cluster::leader::RELEASED).await.unwrap();
    let mut survivor = survivor;
    survivor.signal("-TERM");
    let (d, n) = (&deployment, &newcomer);
    let took = within(Duration::from_secs(5), "the newcomer leads after a SIGTERM", || async move {
        d.leads(n).await == Some(true)
    })
    .await;
    let notice = tokio::time::timeout(Duration::from_secs(5), released.recv()).await;
    assert!(notice.is_ok(), "the stopping leader announced that it let go");
    eprintln!("R22: leader stopped (SIGTERM) → the other node leads after {:.0} ms", took.as_secs_f64() * 1000.0);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let status = survivor.wait();
    assert!(status.success(), "a SIGTERM ends the node cleanly: {status}\n{}", survivor.log());
    assert!(survivor.log().contains("released the jobs lock"), "{}", survivor.log());

    newcomer.signal("-TERM");
    assert!(newcomer.wait().success());
    drop((killed, newcomer, survivor));
    deployment.end().await;
}

/// A token request for 税務's own token, written as it goes on the wire (the connection closes
/// after the answer).
fn token_request_bytes(address: &str, secret: &str) -> Vec<u8> {
    let body = "grant_type=client_credentials&scope=zeimu.read";
    let credentials = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("zeimu:{secret}"));
    format!(
        "POST /token HTTP/1.1\r\nhost: {address}\r\nauthorization: Basic {credentials}\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// R20: a node told to stop (SIGTERM) while 200 token requests are in flight answers every one
/// of them with 200 — those it had not yet taken from the system's queue of connections, and
/// one whose body is still being sent at the signal, included. Meanwhile it takes no new
/// connection, and it ends cleanly once all are answered.
///
/// (The connections are all made before the signal: a connection whose handshake is still under
/// way at the very moment the node closes its socket is reset by the system, which no server can
/// prevent; that is why the balancer stops sending to a node before it is stopped.)
async fn a_stopping_node_answers_every_request_it_took(db: Db) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deployment = Deployment::new(db).await;
    let mut node = deployment.start("only").await;
    let response = deployment
        .http
        .post(format!("{}/api/v1/clients", node.admin_url))
        .bearer_auth(&deployment.token)
        .json(&json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                      "redirect_uris": [CALLBACK], "grant_types": ["client_credentials"],
                      "service_scopes": ["zeimu.read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let client: Value = response.json().await.unwrap();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let address = node.public_url.trim_start_matches("http://").to_owned();
    let request = token_request_bytes(&address, &secret);

    // 200 connections, then a request on each, and the signal at once.
    const REQUESTS: usize = 200;
    let mut connections = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        connections.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // One request is still being sent when the signal comes: its head and part of its body now.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let split = request.len() - 10;
    slow.write_all(&request[..split]).await.unwrap();
    // Every request is written before the signal (most are still waiting for their answer when
    // it comes); the answers are read after it.
    let mut written = Vec::with_capacity(REQUESTS);
    for mut connection in connections {
        connection.write_all(&request).await.unwrap();
        written.push(connection);
    }
    let mut requests = tokio::task::JoinSet::new();
    for (i, mut connection) in written.into_iter().enumerate() {
        requests.spawn(async move {
            let mut answer = Vec::new();
            connection.read_to_end(&mut answer).await.map_err(|e| format!("request {i}: cut off: {e}"))?;
            let answer = String::from_utf8_lossy(&answer).into_owned();
            if answer.is_empty() {
                Err(format!("request {i}: closed without an answer"))
            } else if answer.starts_with("HTTP/1.1 200 ") && answer.contains("access_token") {
                Ok(())
            } else {
                Err(format!("request {i}: answered\n{answer}"))
            }
        });
    }
    node.signal("-TERM");
    let signalled = Instant::now();

    // No new connection is taken while the node finishes (the slow request holds it open).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = tokio::net::TcpStream::connect(&address).await;
    assert!(late.is_err(), "a connection made after the signal is refused");
    assert!(node.child.try_wait().unwrap().is_none(), "the node waits for the request still being sent");
    slow.write_all(&request[split..]).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "the request being sent at the signal is answered:\n{answer}");

    let mut failures = Vec::new();
    while let Some(outcome) = requests.join_next().await {
        if let Err(failure) = outcome.unwrap() {
            failures.push(failure);
        }
    }
    let status = node.wait();
    eprintln!(
        "R20 ({db:?}): SIGTERM with {REQUESTS} token requests in flight: {} answered 200; the node ended {:.0} ms after the signal (the slow request held it)",
        REQUESTS - failures.len(),
        signalled.elapsed().as_secs_f64() * 1000.0
    );
    assert!(failures.is_empty(), "{failures:#?}\n{}", node.log());
    assert!(status.success(), "{status}\n{}", node.log());
    drop(node);
    deployment.end().await;
}

on_both_databases!(a_stopping_node_answers_every_request_it_took);
