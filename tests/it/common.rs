//! Test harness: a real Sekimori on real TCP listeners, on a fresh SQLite file or a fresh
//! PostgreSQL database (from SEKIMORI_TEST_POSTGRES_URL), with an admin API token.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use sekimori::admin::auth;
use sekimori::audit::Actor;
use sekimori::clock::Clock;
use sekimori::config::{Config, PasswordConfig};
use sekimori::{App, Listeners};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs `$body(Db)` once per database: `<name>_sqlite` and `<name>_postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    not(sekimori_postgres_tests),
                    ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built"
                )]
                async fn $name() {
                    super::$name($crate::common::Db::Postgres).await
                }
            )+
        }
    };
}

/// The PostgreSQL server to test against. The PostgreSQL variants are built as ignored when
/// `SEKIMORI_TEST_POSTGRES_URL` is unset at build time (see build.rs); once built for it, they
/// need it at run time too.
pub fn postgres_url() -> Option<String> {
    match std::env::var("SEKIMORI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => None,
    }
}

/// CI must test PostgreSQL: there it is not optional.
#[test]
fn postgres_is_tested_in_ci() {
    if std::env::var("CI").is_ok() {
        assert!(
            cfg!(sekimori_postgres_tests) && postgres_url().is_some(),
            "SEKIMORI_TEST_POSTGRES_URL must be set in CI (when building and running): PostgreSQL tests may not be skipped"
        );
    }
}

/// A fresh, empty database URL.
pub async fn fresh_database(db: Db) -> String {
    let name = format!("sekimori_t_{}", uuid::Uuid::new_v4().simple());
    match db {
        Db::Sqlite => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            format!("sqlite:{}", path.display())
        }
        Db::Postgres => {
            let admin_url = postgres_url().expect("SEKIMORI_TEST_POSTGRES_URL: the tests were built for PostgreSQL");
            sqlx::any::install_default_drivers();
            let mut conn =
                <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.expect("connect to postgres");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
            let mut url = url::Url::parse(&admin_url).expect("postgres url");
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
    }
}

/// Removes a database made by [`fresh_database`]: the SQLite files, or the PostgreSQL database.
pub async fn drop_database(database_url: &str) {
    if let Some(path) = database_url.strip_prefix("sqlite:") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        return;
    }
    let name = database_url.rsplit('/').next().unwrap_or_default().to_owned();
    if let Some(admin_url) = postgres_url() {
        if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
        }
    }
}

pub struct TestServer {
    pub app: App,
    pub db: Db,
    pub database_url: String,
    pub public_url: String,
    /// The issuer (usually the public URL; `http://localhost:<port>` for WebAuthn tests).
    pub issuer: String,
    pub admin_url: String,
    pub admin_token: String,
    pub http: reqwest::Client,
    config: Config,
    /// False for a second node: stopping it leaves the shared database alone.
    owns_database: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn test_config(database_url: &str, public: SocketAddr, admin: SocketAddr) -> Config {
    Config {
        public_addr: public,
        admin_addr: admin,
        issuer: format!("http://{public}"),
        database_url: database_url.to_owned(),
        master_key: Some(base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())),
        // Cheap hashing keeps the suite fast; the production parameters are the defaults.
        password: PasswordConfig {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            max_concurrent_hashes: 4,
            ..PasswordConfig::default()
        },
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        Self::start_configured(db, |_| {}).await
    }

    /// Starts with the test configuration changed by `adjust` (e.g. an issuer named
    /// `localhost`, which WebAuthn needs: it refuses IP addresses).
    pub async fn start_configured(db: Db, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let database_url = fresh_database(db).await;
        let listeners = Listeners::bind("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let public = listeners.public.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let mut config = test_config(&database_url, public, admin);
        adjust(&mut config);
        let app = App::build(config.clone(), Clock::default()).await.expect("app builds");
        let now = app.clock.now();
        let mut tx = app.store.begin().await.unwrap();
        let scopes: Vec<String> = auth::SCOPES.iter().map(|s| s.to_string()).collect();
        let issued =
            auth::create_token(&mut tx, &Actor::Cli, now, None, "test administrator", &scopes, 86_400).await.unwrap();
        tx.commit().await.unwrap();
        let (shutdown, task) = Self::serve(app.clone(), listeners);
        TestServer {
            app,
            db,
            database_url,
            public_url: format!("http://{public}"),
            issuer: config.issuer.clone(),
            admin_url: format!("http://{admin}"),
            admin_token: issued.token,
            http: client().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            config,
            owns_database: true,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// A second node of the same deployment: the same database, master key and issuer (the
    /// nodes stand behind one address), its own listeners, pools and background jobs.
    pub async fn another_node(&self) -> TestServer {
        let listeners = Listeners::bind("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let public = listeners.public.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let config = Config { public_addr: public, admin_addr: admin, ..self.config.clone() };
        let app = App::build(config.clone(), self.app.clock.clone()).await.expect("second node builds");
        let (shutdown, task) = Self::serve(app.clone(), listeners);
        TestServer {
            app,
            db: self.db,
            database_url: self.database_url.clone(),
            public_url: format!("http://{public}"),
            issuer: self.issuer.clone(),
            admin_url: format!("http://{admin}"),
            admin_token: self.admin_token.clone(),
            http: self.http.clone(),
            config,
            owns_database: false,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    fn serve(app: App, listeners: Listeners) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            sekimori::serve(app, listeners, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        (tx, task)
    }

    /// Stops serving and starts again on the same database, addresses and master key: what a
    /// restart of the process does. The clock carries over.
    pub async fn restart(self) -> TestServer {
        self.restart_configured(|_| {}).await
    }

    /// A restart with the configuration changed by `adjust`, as an operator edits the config
    /// file between two runs (the database, addresses and master key stay).
    pub async fn restart_configured(mut self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        adjust(&mut self.config);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.app.store.close().await;
        let listeners = Listeners::bind(self.config.public_addr, self.config.admin_addr).await.unwrap();
        let app = App::build(self.config.clone(), self.app.clock.clone()).await.expect("app builds again");
        let (shutdown, task) = Self::serve(app.clone(), listeners);
        self.app = app;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
        self
    }

    /// Stops the server and drops its database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.app.store.close().await;
        if self.owns_database {
            drop_database(&self.database_url).await;
        }
    }

    /// A call to the admin API with the test administrator's token.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.admin_url)).bearer_auth(&self.admin_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a person with an account and password through the admin API; returns the person id.
    pub async fn add_person(&self, employee_number: &str, login_id: &str, password: &str) -> String {
        let (status, person) = self
            .admin(
                reqwest::Method::POST,
                "/api/v1/people",
                Some(json!({
                    "employee_number": employee_number,
                    "family_name": "試験",
                    "given_name": "太郎",
                    "family_name_kana": "シケン",
                    "given_name_kana": "タロウ",
                    "birth_date": "1990-05-12",
                    "kind": "regular",
                    "email": format!("{login_id}@city.example.lg.jp"),
                    "start_date": "2020-04-01"
                })),
            )
            .await;
        assert_eq!(status, 201, "{person}");
        let person_id = person["id"].as_str().unwrap().to_owned();
        let (status, account) = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/people/{person_id}/account"),
                Some(json!({"login_id": login_id, "password": password, "require_change": false})),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        person_id
    }

    /// Registers a client through the admin API; returns (client_id, secret).
    pub async fn add_client(&self, body: Value) -> (String, Option<String>) {
        let (status, client) = self.admin(reqwest::Method::POST, "/api/v1/clients", Some(body)).await;
        assert_eq!(status, 201, "{client}");
        (client["client_id"].as_str().unwrap().to_owned(), client["client_secret"].as_str().map(str::to_owned))
    }

    /// Counts rows of a table straight from the database.
    /// Rows of `table` that are not Sekimori's own console system (provisioned at every start)
    /// or its roles.
    pub async fn count_outside_console(&self, table: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table} WHERE client_id <> 'sekimori-console'"))
            .fetch_one(self.app.store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(self.app.store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap()
    }
}

/// An HTTP client as a consuming system should configure one: it lets go of a pooled connection
/// after 5 idle seconds, before Sekimori closes it (`limits.header_read_timeout_seconds`, 10 s
/// in tests). A request sent on a connection at the moment the server closes it fails with
/// "connection closed before message completed", and a POST is not retried.
pub fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(5))
}

/// A browser: keeps cookies, does not follow redirects (the test follows them itself).
pub fn browser() -> reqwest::Client {
    client().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Value of the hidden input `name` in an HTML page.
pub fn hidden_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} input in page:\n{html}")) + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&#x2F;", "/").replace("&amp;", "&")
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location; status {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Follows the authorization request through the login page with `login_id`/`password`;
/// returns the final response from the login form (a redirect to the client on success).
pub async fn log_in(
    browser: &reqwest::Client,
    server: &TestServer,
    authorize_url: &str,
    login_id: &str,
    password: &str,
) -> reqwest::Response {
    let response = browser.get(authorize_url).send().await.unwrap();
    assert_eq!(response.status(), 303, "authorize should send the browser to the login page");
    let login_url = format!("{}{}", server.public_url, location(&response));
    let page = browser.get(&login_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token");
    let request = hidden_input(&html, "request");
    browser
        .post(format!("{}/login", server.public_url))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
            ("login_id", login_id),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// Query parameters of a URL.
pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce_pair() -> (String, String) {
    use sha2::Digest;
    let verifier = sekimori::crypto::random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// An authorization URL built by hand, for tests that probe malformed requests.
pub fn authorize_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", server.public_url)).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// Logs `login_id` in through a fresh browser and returns an authorization code.
pub async fn obtain_code(
    server: &TestServer,
    client_id: &str,
    redirect_uri: &str,
    challenge: Option<&str>,
    login_id: &str,
    password: &str,
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile"),
        ("state", "s1"),
    ];
    if let Some(challenge) = challenge {
        params.push(("code_challenge", challenge));
        params.push(("code_challenge_method", "S256"));
    }
    let response = log_in(&browser(), server, &authorize_url(server, &params), login_id, password).await;
    assert_eq!(response.status(), 303);
    query_of(&location(&response)).get("code").cloned().expect("a code")
}

/// POSTs a form to the token endpoint, optionally with Basic credentials; returns (status, body, headers).
pub async fn token_request(
    server: &TestServer,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = server.http.post(format!("{}/token", server.public_url)).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// A person in the tax section (code ZEIMU), named 田中 健一 (タナカ ケンイチ).
pub async fn tanaka(server: &TestServer) -> String {
    let (status, department) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": "SOMU", "name": "総務部", "level": "department"})),
        )
        .await;
    assert_eq!(status, 201, "{department}");
    let (status, unit) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/org-units",
            Some(json!({"code": "ZEIMU", "name": "税務課", "name_en": "Taxation Division", "level": "section",
                        "parent_id": department["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let (status, person) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/people",
            Some(json!({
                "employee_number": "E9100", "family_name": "田中", "given_name": "健一",
                "family_name_kana": "タナカ", "given_name_kana": "ケンイチ", "birth_date": "1988-11-03",
                "kind": "regular", "org_unit_id": unit["id"], "start_date": "2020-04-01"
            })),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    person["id"].as_str().unwrap().to_owned()
}

/// Whether `client_id` hears at introspection that `token` is active.
pub async fn introspect_as(server: &TestServer, client_id: &str, secret: &str, token: &str) -> bool {
    let response = server
        .http
        .post(format!("{}/introspect", server.public_url))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["active"] == serde_json::json!(true)
}
