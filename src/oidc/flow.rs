//! The authorization flow (OIDC Core §3.1.2) as values: a request is checked (`validate`),
//! decided against the browser's session (`decide`), kept while the person logs in
//! (`save_pending`), and finished with a code (`complete`, a [`Completion`] saying where the
//! browser goes). No HTTP here: `web::authorize` and the login pages render these values.
//!
//! Errors about the client or its redirect URI are [`FlowError::Page`]: shown to the person and
//! never redirected, since redirecting to an unverified URI would make Sekimori an open
//! redirector (RFC 6749 §4.1.2.1, RFC 9700 §4.11). Every other error goes back to the
//! registered URI with `state` and `iss` (RFC 9207).

use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::crypto;
use crate::directory;
use crate::params::Params;
use crate::sessions::Session;
use crate::systems::{self, Client, ClientType};
use crate::App;

use super::claims::{acr_rank, AuthContext, ClaimsRequest, ACR_VALUES_SUPPORTED};
use super::codes::{self, NewCode};

/// A checked authorization request, kept while the person logs in.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub max_age: Option<i64>,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
    /// Space-separated, in order of preference (OIDC Core §3.1.2.1).
    pub acr_values: Option<String>,
    /// The claims request parameter, checked, as stored JSON.
    pub claims: Option<String>,
    /// A direct login to Sekimori's own pages rather than to a consuming system: `client_id` is
    /// empty, `redirect_uri` is the local page to return to, and completing it issues no code.
    pub direct: bool,
}

impl AuthorizationRequest {
    /// A direct login to Sekimori itself that returns to `own_page`, a local path the caller
    /// has taken from its own list (never from the browser as given).
    pub fn direct(own_page: &'static str) -> Self {
        AuthorizationRequest {
            client_id: String::new(),
            redirect_uri: own_page.to_owned(),
            scope: "openid".into(),
            state: None,
            nonce: None,
            code_challenge: None,
            max_age: None,
            prompt: None,
            login_hint: None,
            acr_values: None,
            claims: None,
            direct: true,
        }
    }

    /// The consuming system the login is for (None for a direct login), for audit details.
    pub fn system(&self) -> Option<&str> {
        (!self.direct).then_some(self.client_id.as_str())
    }

    pub fn claims_request(&self) -> ClaimsRequest {
        ClaimsRequest::from_stored(self.claims.as_deref())
    }

    /// The acr values asked for, and whether one of them is essential (claims parameter).
    pub fn acr_requirement(&self) -> (Vec<String>, bool) {
        match self.claims_request().acr() {
            Some((values, essential)) if !values.is_empty() => (values, essential),
            _ => (self.acr_values.as_deref().unwrap_or("").split_whitespace().map(str::to_owned).collect(), false),
        }
    }

    /// Whether a session's authentication satisfies the acr asked for: the session's acr is
    /// at least as strong as one of the values. Values Sekimori does not know are ignored
    /// unless essential.
    pub fn acr_satisfied_by(&self, acr: &str) -> bool {
        let (values, essential) = self.acr_requirement();
        let have = acr_rank(acr);
        values.is_empty()
            || values.iter().any(|v| v == acr || (acr_rank(v).is_some() && acr_rank(v) <= have))
            || (!essential && !values.iter().any(|v| ACR_VALUES_SUPPORTED.contains(&v.as_str())))
    }

    /// Whether the request needs a card: one of its acr values is the hardware-key class and
    /// nothing weaker is acceptable.
    pub fn needs_card(&self) -> bool {
        !self.acr_satisfied_by(super::claims::ACR_PASSWORD) && self.acr_satisfied_by(crate::authenticators::ACR_HWK)
    }
}

/// Why a request is shown an error page instead of being redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client is unknown or disabled.
    UnknownClient,
    /// The redirect URI is not registered for the client, character for character.
    UnverifiedRedirectUri,
    /// A direct login whose person may no longer log in (disabled or past their end date).
    AccountUnusable,
}

/// Why an authorization cannot go on, and where that is said.
#[derive(Debug)]
pub enum FlowError {
    /// Shown to the person; nothing is redirected.
    Page(Refusal),
    /// Sent back to the client's verified redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Internal(crate::Error),
}

impl<E: Into<crate::Error>> From<E> for FlowError {
    fn from(e: E) -> Self {
        FlowError::Internal(e.into())
    }
}

impl FlowError {
    /// An error sent back to the request's (verified) redirect URI.
    pub fn to_client(request: &AuthorizationRequest, error: &'static str, description: &str) -> FlowError {
        FlowError::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error,
            description: description.to_owned(),
        }
    }

    /// Where the browser goes for a redirected error (RFC 6749 §4.1.2.1 with RFC 9207's `iss`);
    /// None for errors that are shown, never redirected.
    pub fn redirect_url(&self, issuer: &str) -> Option<String> {
        let FlowError::Redirect { redirect_uri, state, error, description } = self else { return None };
        Some(error_redirect(redirect_uri, state.as_deref(), error, description, issuer))
    }
}

/// The redirect URI with an error, the request's `state` and the issuer added.
pub fn error_redirect(redirect_uri: &str, state: Option<&str>, error: &str, description: &str, issuer: &str) -> String {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    redirect_uri_with(redirect_uri, &params)
}

/// A finished authorization: the client's redirect URI with the code, `state` and `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub redirect: String,
}

/// What to do with a checked request, given the browser's session.
#[derive(Debug)]
pub enum Decision {
    /// The session is good enough: the code is issued.
    Completed(Completion),
    /// The person logs in (again) for the kept request.
    Login { pending_id: String },
    /// The session is good but for its acr: the card, not the whole login again.
    StepUp { pending_id: String },
}

/// Decides a checked request against the browser's `session` at `now`. `hinted_subject` is the
/// subject of a verified `id_token_hint` (None when there was none; an unverifiable hint is
/// refused by the caller before this).
pub async fn decide(
    app: &App,
    request: AuthorizationRequest,
    session: Option<Session>,
    hinted_subject: Option<String>,
    now: UnixTime,
) -> Result<Decision, FlowError> {
    let prompt: Vec<&str> = request.prompt.as_deref().unwrap_or("").split_whitespace().collect();
    let required_sub = request.claims_request().required_sub().map(str::to_owned).or(hinted_subject);
    // A session is good enough unless the client asks for a fresh login or a choice of
    // account, for one no older than max_age, for a stronger authentication than it had, or
    // for another person (OIDC Core §3.1.2.1, §5.5.1).
    let fresh_enough = |s: &Session| {
        !prompt.contains(&"login")
            && !prompt.contains(&"select_account")
            && request.max_age.is_none_or(|max_age| now - s.auth_time <= max_age)
            && required_sub.as_deref().is_none_or(|sub| sub == s.person_id)
    };
    let session = session.filter(|s| fresh_enough(s));
    // A secret-class role of this system wants a card login (R6, R15): a password session of
    // a person holding one, and holding a card, is stepped up first.
    let secret_step_up = match &session {
        Some(s) if !request.direct && s.acr != crate::authenticators::ACR_HWK => {
            holds_secret_role(app, &request, s, now).await? && wants_card(app, &request, s, true).await?
        }
        _ => false,
    };
    if let Some(session) = session.as_ref().filter(|s| request.acr_satisfied_by(&s.acr) && !secret_step_up) {
        return Ok(Decision::Completed(complete(app, &request, session, None, now).await?));
    }
    if prompt.contains(&"none") {
        return Err(FlowError::to_client(&request, "login_required", "the person is not logged in"));
    }
    let step_up = match &session {
        Some(session) => secret_step_up || wants_card(app, &request, session, false).await?,
        None => false,
    };
    let pending_id = save_pending(app, &request, now).await?;
    Ok(if step_up { Decision::StepUp { pending_id } } else { Decision::Login { pending_id } })
}

/// Whether `session`, good but for its acr, would do with a card its person holds (`secret`:
/// a secret-class role asks for one whatever the request said).
async fn wants_card(
    app: &App,
    request: &AuthorizationRequest,
    session: &Session,
    secret: bool,
) -> Result<bool, crate::Error> {
    if app.webauthn.is_none() || (!secret && (request.acr_satisfied_by(&session.acr) || !request.needs_card())) {
        return Ok(false);
    }
    Ok(crate::authenticators::has_active(app.store.pool(), &session.person_id).await?)
}

/// Whether the session's person holds a secret-class role on the requesting system.
async fn holds_secret_role(
    app: &App,
    request: &AuthorizationRequest,
    session: &Session,
    now: UnixTime,
) -> Result<bool, crate::Error> {
    let today = directory::today_in_japan(now);
    let held = crate::access::roles::live_on(app.store.pool(), &session.person_id, &request.client_id, today).await?;
    Ok(held.iter().any(|h| h.secret))
}

/// `redirect_uri` with `params` added to its query, keeping whatever query it already had.
pub fn redirect_uri_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return redirect_uri.to_owned();
    }
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            url.to_string()
        }
        Err(_) => redirect_uri.to_owned(),
    }
}

/// Checks the request in the order that keeps errors from being redirected to a URI that
/// was not verified.
pub async fn validate(app: &App, params: &Params) -> Result<AuthorizationRequest, FlowError> {
    let page = FlowError::Page;
    let client_id =
        params.get("client_id").map_err(|_| page(Refusal::UnknownClient))?.ok_or(page(Refusal::UnknownClient))?;
    let client: Client =
        systems::get(&app.store, client_id).await?.filter(Client::is_active).ok_or(page(Refusal::UnknownClient))?;
    let redirect_uri = params
        .get("redirect_uri")
        .map_err(|_| page(Refusal::UnverifiedRedirectUri))?
        .filter(|uri| client.has_redirect_uri(uri))
        .ok_or(page(Refusal::UnverifiedRedirectUri))?
        .to_owned();

    // From here on the redirect URI is verified; errors go back to the client.
    let state = params.get("state").ok().flatten().map(str::to_owned);
    let fail = |error: &'static str, description: &str| FlowError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    if let Some(name) = params.first_repeated() {
        return Err(fail("invalid_request", &format!("parameter {name} must not be repeated")));
    }
    if params.longest_value() > 4096 {
        return Err(fail("invalid_request", "a parameter is too long"));
    }
    let get = |name| params.get(name).ok().flatten();
    if get("request").is_some() {
        return Err(fail("request_not_supported", "request objects are not supported"));
    }
    if get("request_uri").is_some() {
        return Err(fail("request_uri_not_supported", "request_uri is not supported"));
    }
    if get("registration").is_some() {
        return Err(fail("registration_not_supported", "registration is not supported"));
    }
    match get("response_type") {
        None => return Err(fail("invalid_request", "response_type is required")),
        Some("code") => {}
        Some(_) => return Err(fail("unsupported_response_type", "only response_type=code is supported")),
    }
    if !matches!(get("response_mode"), None | Some("query")) {
        return Err(fail("invalid_request", "only response_mode=query is supported"));
    }
    let requested: Vec<&str> = get("scope").unwrap_or("").split(' ').filter(|s| !s.is_empty()).collect();
    if !requested.contains(&"openid") {
        return Err(fail("invalid_scope", "the openid scope is required"));
    }
    // Scopes the client may not have, or that Sekimori does not know, are left out rather
    // than refused (OIDC Core §3.1.2.1: unknown scope values are ignored).
    let mut scope: Vec<&str> = Vec::new();
    for s in requested {
        if client.scopes.iter().any(|c| c == s) && !scope.contains(&s) {
            scope.push(s);
        }
    }
    let method = get("code_challenge_method");
    let challenge = get("code_challenge");
    match (challenge, method) {
        (Some(_), Some("S256")) => {}
        // RFC 7636 §4.3: an absent method means "plain", which Sekimori does not accept.
        (Some(_), _) => return Err(fail("invalid_request", "code_challenge_method must be S256")),
        (None, Some(_)) => return Err(fail("invalid_request", "code_challenge is missing")),
        (None, None) if client.client_type == ClientType::Public || client.require_pkce => {
            return Err(fail("invalid_request", "PKCE (code_challenge with S256) is required for this client"))
        }
        (None, None) => {}
    }
    if let Some(challenge) = challenge {
        // The S256 transform always yields 43 base64url characters.
        let well_formed =
            challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(fail("invalid_request", "code_challenge is malformed"));
        }
    }
    let prompt = get("prompt");
    if let Some(prompt) = prompt {
        let values: Vec<&str> = prompt.split(' ').filter(|s| !s.is_empty()).collect();
        if values.contains(&"none") && values.len() > 1 {
            return Err(fail("invalid_request", "prompt=none cannot be combined with other values"));
        }
    }
    let max_age = match get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return Err(fail("invalid_request", "max_age must be a non-negative integer")),
        },
    };
    let claims = match get("claims") {
        None => None,
        Some(text) => match ClaimsRequest::parse(text) {
            Ok(request) => request.to_stored(),
            Err(reason) => return Err(fail("invalid_request", reason)),
        },
    };
    if let Some((values, true)) = claims.as_deref().and_then(|c| ClaimsRequest::from_stored(Some(c)).acr()) {
        if !values.iter().any(|v| app.acr_values_supported().contains(&v.as_str())) {
            return Err(fail("unmet_authentication_requirements", "none of the essential acr values is supported"));
        }
    }
    Ok(AuthorizationRequest {
        client_id: client.client_id,
        redirect_uri,
        scope: scope.join(" "),
        state,
        nonce: get("nonce").map(str::to_owned),
        code_challenge: challenge.map(str::to_owned),
        max_age,
        prompt: prompt.map(str::to_owned),
        login_hint: get("login_hint").map(str::to_owned),
        acr_values: get("acr_values").map(str::to_owned),
        claims,
        direct: false,
    })
}

/// Keeps a checked request while the person logs in; returns its id (the login page's `request`).
/// Expired ones are swept by the background job.
pub async fn save_pending(app: &App, request: &AuthorizationRequest, now: UnixTime) -> Result<String, crate::Error> {
    let id = crypto::random_token(24);
    let mut tx = app.store.begin().await?;
    sqlx::query(
        "INSERT INTO authorization_requests (id, client_id, redirect_uri, scope, state, nonce, code_challenge,
             max_age, prompt, created_at, expires_at, login_hint, acr_values, claims)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&id)
    .bind(request.system())
    .bind(&request.redirect_uri)
    .bind(&request.scope)
    .bind(request.state.as_deref())
    .bind(request.nonce.as_deref())
    .bind(request.code_challenge.as_deref())
    .bind(request.max_age)
    .bind(request.prompt.as_deref())
    .bind(now)
    .bind(now + app.config.session.login_request_ttl)
    .bind(request.login_hint.as_deref())
    .bind(request.acr_values.as_deref())
    .bind(request.claims.as_deref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The pending request `id`, if it exists and has not expired.
pub async fn load_pending(app: &App, id: &str, now: UnixTime) -> Result<Option<AuthorizationRequest>, crate::Error> {
    let row = sqlx::query(
        "SELECT client_id, redirect_uri, scope, state, nonce, code_challenge, max_age, prompt, login_hint,
             acr_values, claims
         FROM authorization_requests WHERE id = $1 AND expires_at > $2",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(app.store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let client_id: Option<String> = row.try_get("client_id")?;
    Ok(Some(AuthorizationRequest {
        direct: client_id.is_none(),
        client_id: client_id.unwrap_or_default(),
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        state: row.try_get("state")?,
        nonce: row.try_get("nonce")?,
        code_challenge: row.try_get("code_challenge")?,
        max_age: row.try_get("max_age")?,
        prompt: row.try_get("prompt")?,
        login_hint: row.try_get("login_hint")?,
        acr_values: row.try_get("acr_values")?,
        claims: row.try_get("claims")?,
    }))
}

/// Issues a code for `request` to the person of `session`: where the browser goes next.
/// `pending_id` is deleted in the same transaction when the request came through login.
pub async fn complete(
    app: &App,
    request: &AuthorizationRequest,
    session: &Session,
    pending_id: Option<&str>,
    now: UnixTime,
) -> Result<Completion, FlowError> {
    let mut tx = app.store.begin().await?;
    // The person may have been disabled since the session began: every grant re-checks.
    if !directory::person_may_log_in(&mut *tx, &session.person_id, directory::today_in_japan(now)).await? {
        if request.direct {
            return Err(FlowError::Page(Refusal::AccountUnusable));
        }
        return Err(FlowError::to_client(request, "access_denied", "the account cannot be used"));
    }
    if request.direct {
        // Sekimori's own pages: the session is all there is to it; no code, no consuming system.
        if let Some(id) = pending_id {
            sqlx::query("DELETE FROM authorization_requests WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        return Ok(Completion { redirect: request.redirect_uri.clone() });
    }
    // OIDC Core §5.5.1.1: an essential acr that the login did not reach fails the request.
    let (_, essential) = request.acr_requirement();
    if essential && !request.acr_satisfied_by(&session.acr) {
        return Err(FlowError::to_client(
            request,
            "unmet_authentication_requirements",
            "the requested authentication context cannot be met",
        ));
    }
    // A system that needs a role refuses a person who holds none it can be given in this login
    // (a secret-class role counts only after a card login).
    let system = crate::access::catalog::system(&mut *tx, &request.client_id).await?;
    if system.is_some_and(|s| s.requires_role) {
        let today = directory::today_in_japan(now);
        let roles =
            crate::access::roles::held_on(&mut *tx, &session.person_id, &request.client_id, today, &session.acr)
                .await?;
        if roles.is_empty() {
            Event::failure(
                &Actor::Person(session.person_id.clone()),
                "authorize.no_role",
                format!("client:{}", request.client_id),
                serde_json::json!({"sid": session.id}),
            )
            .record(&mut tx, now)
            .await?;
            tx.commit().await?;
            return Err(FlowError::to_client(request, "access_denied", "the person holds no role on this system"));
        }
    }
    if let Some(id) = pending_id {
        sqlx::query("DELETE FROM authorization_requests WHERE id = $1").bind(id).execute(&mut *tx).await?;
    }
    crate::sessions::record_sign_in(&mut tx, now, &session.id, &request.client_id).await?;
    let auth = AuthContext {
        session_id: session.id.clone(),
        auth_time: session.auth_time,
        acr: session.acr.clone(),
        amr: session.amr.clone(),
    };
    let code = codes::issue(
        &mut tx,
        now,
        app.config.tokens.code_ttl,
        NewCode {
            client_id: &request.client_id,
            person_id: &session.person_id,
            redirect_uri: &request.redirect_uri,
            scope: &request.scope,
            nonce: request.nonce.as_deref(),
            code_challenge: request.code_challenge.as_deref(),
            claims: request.claims.as_deref(),
            auth: &auth,
        },
    )
    .await?;
    Event::success(
        &Actor::Person(session.person_id.clone()),
        "authorize.code_issued",
        format!("client:{}", request.client_id),
        serde_json::json!({"scope": request.scope, "sid": session.id}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = request.state.as_deref() {
        params.push(("state", state));
    }
    params.push(("iss", app.config.issuer.as_str()));
    Ok(Completion { redirect: redirect_uri_with(&request.redirect_uri, &params) })
}
