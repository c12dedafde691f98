//! Helpers shared by the benchmarks and by the load tool (`examples/load.rs` includes this file
//! with `#[path]`): percentiles, the server's memory and CPU from /proc, the timed loop of
//! concurrent workers, and a person's login through a provider's form.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::HeaderValue;
use serde_json::Value;

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p` quantile (0 to 1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let index = ((last as f64) * p).round() as usize;
    sorted.get(index.min(last)).copied().unwrap_or(Duration::ZERO)
}

/// A `Vm…:` line of /proc/<pid>/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?.split_whitespace().next()?.parse().ok()
}

/// The peak resident memory (VmHWM) of a process, in KiB.
pub fn peak_memory_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// The resident memory now (VmRSS) of a process, in KiB.
pub fn resident_memory_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// CPU time (user + system) a process (`"self"` or a pid) has used so far, from /proc
/// (USER_HZ is 100 on Linux).
pub fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // The fields after the command name, which is in parentheses: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The value of the hidden form field `name` in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let rest = html.get(html.find(&marker)? + marker.len()..)?;
    let value = rest.get(..rest.find('"')?)?;
    Some(value.replace("&#x2F;", "/").replace("&amp;", "&"))
}

/// The logins `sekimori demo` prints ("  tanaka.kenichi  <password>  田中 健一" lines after the
/// "Logins" heading), as (login ID, password).
pub fn demo_logins(demo: &str) -> Vec<(String, String)> {
    demo.lines()
        .skip_while(|l| !l.contains("Logins"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// What a timed phase measured.
pub struct Measured {
    /// Requests answered right.
    pub ok: usize,
    pub errors: usize,
    /// Up to five distinct error descriptions, to be shown: errors are never only counted.
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
    /// Latencies of the requests answered right, sorted.
    pub latencies: Vec<Duration>,
    /// CPU time the server (when its pid is known) and this process used during the phase.
    pub server_cpu: Duration,
    pub client_cpu: Duration,
}

impl Measured {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// CPU time as a share of one core over the phase (the machine's cores are shared by the
    /// server and the load generator).
    pub fn cpu_percent(&self, cpu: Duration) -> f64 {
        100.0 * cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Every worker sends requests back to back for `seconds`; latency is measured from sending to
/// having read the whole answer. `request` takes a worker and gives it back with the outcome,
/// so that a worker can carry state from one request to the next (a refresh-token chain).
pub async fn measure<W, F, Fut>(
    workers: Vec<W>,
    seconds: u64,
    server_pid: Option<u32>,
    request: F,
) -> (Measured, Vec<W>)
where
    W: Send + 'static,
    F: Fn(W) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (W, Result<(), String>)> + Send,
{
    let server = server_pid.map(|pid| pid.to_string());
    let server_cpu = || server.as_deref().map(cpu_time).unwrap_or_default();
    let (server_before, client_before) = (server_cpu(), cpu_time("self"));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut worker, mut latencies, mut errors) = (worker, Vec::new(), Vec::new());
                while Instant::now() < stop_at {
                    let sent = Instant::now();
                    let (back, outcome) = request(worker).await;
                    worker = back;
                    match outcome {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(e) => {
                            errors.push(e);
                            // A server that refuses at once must not turn the loop into a spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (worker, latencies, errors)
            })
        })
        .collect();
    let (mut workers, mut latencies, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for task in tasks {
        match task.await {
            Ok((worker, l, e)) => {
                workers.push(worker);
                latencies.extend(l);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("a worker failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let mut error_samples: Vec<String> = Vec::new();
    for e in &errors {
        if error_samples.len() < 5 && !error_samples.contains(e) {
            error_samples.push(e.clone());
        }
    }
    let measured = Measured {
        ok: latencies.len(),
        errors: errors.len(),
        error_samples,
        elapsed,
        latencies,
        server_cpu: server_cpu().saturating_sub(server_before),
        client_cpu: cpu_time("self").saturating_sub(client_before),
    };
    (measured, workers)
}

/// A cookie jar that can be emptied, so that one browser (one keep-alive connection) can log
/// in again and again as a new visitor each time.
#[derive(Default)]
struct ResettableJar(RwLock<Arc<Jar>>);

impl ResettableJar {
    fn jar(&self) -> Arc<Jar> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl CookieStore for ResettableJar {
    fn set_cookies(&self, cookie_headers: &mut dyn Iterator<Item = &HeaderValue>, url: &url::Url) {
        self.jar().set_cookies(cookie_headers, url);
    }

    fn cookies(&self, url: &url::Url) -> Option<HeaderValue> {
        self.jar().cookies(url)
    }
}

/// A person's browser: keeps its connection, follows no redirect by itself, keeps cookies until
/// told to forget them.
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<ResettableJar>,
}

impl Browser {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let jar = Arc::new(ResettableJar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self { http, jar })
    }

    /// A new visitor: no session, no pending login.
    pub fn forget_cookies(&self) {
        *self.jar.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Jar::default());
    }
}

/// How a provider's login form is filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginForm {
    /// Sekimori's own form: POST /login with the page's csrf_token and request, login_id, password.
    Sekimori,
    /// node-oidc-provider's development interactions: POST to the form's action with
    /// prompt=login, login, password (any login and password are accepted).
    OidcProviderDev,
}

/// A confidential client (client_secret_basic) of a provider, and how its people log in.
pub struct OidcClient {
    pub client_id: String,
    pub secret: String,
    pub redirect_uri: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// The scope people's logins ask for.
    pub scope: String,
    pub login_form: LoginForm,
}

/// A form's fields, as posted.
type FormFields = Vec<(&'static str, String)>;

/// A login's result at the client's redirect URI.
pub struct Code {
    pub code: String,
    pub verifier: String,
}

/// A person's tokens from the code exchange.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// A string field of a JSON answer.
pub fn field(body: &Value, name: &str) -> Result<String, String> {
    body.get(name).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("200 without {name}: {body}"))
}

/// At most 200 characters of an answer, for an error message.
fn snippet(body: &str) -> String {
    body.chars().take(200).collect()
}

impl OidcClient {
    /// A POST with the client's Basic credentials; Ok(body) for a 2xx JSON answer, Err(description)
    /// otherwise.
    pub async fn post(&self, http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let response = http
            .post(url)
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(form)
            .send()
            .await
            .map_err(|e| format!("transport: {}", with_causes(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("{status}, body unreadable: {e}"))?;
        if !status.is_success() {
            return Err(format!("{status}: {}", snippet(&body)));
        }
        serde_json::from_str(&body).map_err(|e| format!("{status} but not JSON ({e}): {}", snippet(&body)))
    }

    /// The authorization request of a login with PKCE (S256).
    fn authorize_url(&self, challenge: &str) -> Result<url::Url, String> {
        let mut url = url::Url::parse(&self.authorization_endpoint)
            .map_err(|e| format!("authorization endpoint {}: {e}", self.authorization_endpoint))?;
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", self.scope.as_str()),
            ("state", "load"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]);
        Ok(url)
    }

    /// A person's whole login as a new visitor of `browser`: the authorization request, the login
    /// page, the form posted with the password, the redirects followed to the client's redirect
    /// URI with a code. Any other turn (the form shown again, an error page, an `error=` at the
    /// client) is an error.
    pub async fn log_in(&self, browser: &Browser, login_id: &str, password: &str) -> Result<Code, String> {
        browser.forget_cookies();
        let verifier = sekimori::crypto::random_token(32);
        let challenge = sekimori::crypto::sha256_b64url(verifier.as_bytes());
        let mut url = self.authorize_url(&challenge)?;
        let mut form: Option<FormFields> = None;
        let mut posted = false;
        // authorize → login page → POST → (provider's own redirects) → client: a handful of steps.
        for _ in 0..10 {
            let request = match form.take() {
                Some(fields) => browser.http.post(url.clone()).form(&fields),
                None => browser.http.get(url.clone()),
            };
            let response = request.send().await.map_err(|e| format!("{url}: transport: {}", with_causes(&e)))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("");
                url = url.join(location).map_err(|e| format!("{url}: {status} to {location:?}: {e}"))?;
                if url.as_str().starts_with(&self.redirect_uri) {
                    let query = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
                    return match query("code") {
                        Some(code) => Ok(Code { code, verifier }),
                        None => Err(format!("login of {login_id}: to the client without a code: {url}")),
                    };
                }
                continue;
            }
            let body = response.text().await.map_err(|e| format!("{url}: {status}, body unreadable: {e}"))?;
            if !status.is_success() {
                return Err(format!("{url}: {status}: {}", snippet(&body)));
            }
            if posted {
                // Sekimori shows the form again for a wrong password; other pages (a forced
                // password change, a card) are steps the load tool does not take.
                return Err(format!("login of {login_id}: a page instead of the redirect: {}", snippet(&body)));
            }
            let (action, fields) = self.fill_in(&body, login_id, password)?;
            url = url.join(&action).map_err(|e| format!("{url}: form action {action:?}: {e}"))?;
            form = Some(fields);
            posted = true;
        }
        Err(format!("login of {login_id}: more than 10 steps"))
    }

    /// The login form's target and fields, from its page.
    fn fill_in(&self, html: &str, login_id: &str, password: &str) -> Result<(String, FormFields), String> {
        let missing = |what: &str| format!("no {what} in the login page: {}", snippet(html));
        match self.login_form {
            LoginForm::Sekimori => Ok((
                "/login".to_owned(),
                vec![
                    ("csrf_token", hidden(html, "csrf_token").ok_or_else(|| missing("csrf_token"))?),
                    ("request", hidden(html, "request").ok_or_else(|| missing("request"))?),
                    ("login_id", login_id.to_owned()),
                    ("password", password.to_owned()),
                ],
            )),
            LoginForm::OidcProviderDev => {
                let marker = "action=\"";
                let rest =
                    html.find(marker).and_then(|i| html.get(i + marker.len()..)).ok_or_else(|| missing("form"))?;
                let action =
                    rest.get(..rest.find('"').ok_or_else(|| missing("form"))?).ok_or_else(|| missing("form"))?;
                Ok((
                    action.replace("&#x2F;", "/").replace("&amp;", "&"),
                    vec![
                        ("prompt", "login".to_owned()),
                        ("login", login_id.to_owned()),
                        ("password", password.to_owned()),
                    ],
                ))
            }
        }
    }

    /// A login, then the code exchange at the token endpoint (over `http`, the client's own
    /// connection): the start of a refresh-token chain.
    pub async fn log_in_for_tokens(
        &self,
        browser: &Browser,
        http: &reqwest::Client,
        login_id: &str,
        password: &str,
    ) -> Result<Tokens, String> {
        let Code { code, verifier } = self.log_in(browser, login_id, password).await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        let body = self.post(http, &self.token_endpoint, &form).await?;
        Ok(Tokens { access_token: field(&body, "access_token")?, refresh_token: field(&body, "refresh_token")? })
    }
}

/// An error and what caused it, down the chain ("error sending request" alone does not say
/// whether the connection was refused, reset or timed out).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
