//! The admin listener: the management JSON API described by `openapi.yaml`. Nothing here is
//! anonymous except health (and the `/livez`, `/readyz` probes) and the one-time bootstrap
//! exchange.

pub mod access;
pub mod auth;
pub mod clients;
pub mod emergency;
pub mod hotline;
pub mod hr;
pub mod keys;
pub mod passwords;
pub mod problem;
pub mod reports;
pub mod rights;
pub mod role_grants;
pub mod roles;
pub mod console;
pub mod shared_ids;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::audit::{self, Event, Verification};
use crate::authenticators::{self, Authenticator};
use crate::directory::search::{self, PeopleFilter};
use crate::directory::{self, Account, InvalidField, LoginId, NewOrgUnit, NewPerson, OrgUnit, Person};
use crate::password::policy;
use crate::App;

use auth::IssuedToken;
use problem::{ApiJson, ApiQuery, Problem};
use rights::Authorized;

/// One operation of the JSON API.
struct Operation {
    method: &'static str,
    path: &'static str,
    handler: MethodRouter<App>,
}

macro_rules! operation {
    ($method:ident, $path:literal, $handler:expr) => {
        Operation { method: stringify!($method), path: $path, handler: axum::routing::$method($handler) }
    };
}

/// Every operation of the JSON API (what openapi.yaml describes). The router is built from
/// this table, and [`api_routes`] exports it, so the two cannot disagree.
fn operations() -> Vec<Operation> {
    vec![
        operation!(get, "/health", crate::health::health),
        operation!(post, "/api/v1/bootstrap", bootstrap),
        operation!(post, "/api/v1/api-tokens", create_api_token),
        operation!(get, "/api/v1/api-tokens", list_api_tokens),
        operation!(delete, "/api/v1/api-tokens/{id}", revoke_api_token),
        operation!(get, "/api/v1/org-units", list_org_units),
        operation!(post, "/api/v1/org-units", create_org_unit),
        operation!(put, "/api/v1/org-units/{id}/manager", set_manager),
        operation!(get, "/api/v1/people", list_people),
        operation!(post, "/api/v1/people", create_person),
        operation!(get, "/api/v1/people/{id}", get_person),
        operation!(post, "/api/v1/people/{id}/account", create_account),
        operation!(post, "/api/v1/people/{id}/password-reset", passwords::issue_reset),
        operation!(post, "/api/v1/people/{id}/password-compromised", passwords::report_compromise),
        operation!(post, "/api/v1/people/{id}/unlock", passwords::unlock),
        operation!(get, "/api/v1/clients", clients::list),
        operation!(post, "/api/v1/clients", clients::register),
        operation!(get, "/api/v1/clients/{client_id}", clients::get),
        operation!(patch, "/api/v1/clients/{client_id}", clients::update),
        operation!(post, "/api/v1/clients/{client_id}/disable", clients::disable),
        operation!(post, "/api/v1/clients/{client_id}/enable", clients::enable),
        operation!(post, "/api/v1/clients/{client_id}/secret", clients::rotate_secret),
        operation!(post, "/api/v1/people/{id}/enrollment-codes", hotline::issue_enrollment_code),
        operation!(post, "/api/v1/people/{id}/password-only-exceptions", hotline::grant_password_only_exception),
        operation!(get, "/api/v1/hotline/people", hotline::search),
        operation!(post, "/api/v1/authenticators/{id}/lost", hotline::report_lost),
        operation!(get, "/api/v1/signing-keys", keys::list),
        operation!(post, "/api/v1/signing-keys/rotate", keys::rotate),
        operation!(get, "/api/v1/hr/batches", hr::list_batches),
        operation!(get, "/api/v1/hr/batches/{id}", hr::get_batch),
        operation!(post, "/api/v1/hr/batches/{id}/confirm", hr::confirm_batch),
        operation!(post, "/api/v1/hr/batches/{id}/discard", hr::discard_batch),
        operation!(get, "/api/v1/hr/changes", hr::list_changes),
        operation!(post, "/api/v1/hr/changes/{id}/retry", hr::retry_change),
        operation!(get, "/api/v1/hr/preview", hr::preview),
        operation!(get, "/api/v1/clients/{client_id}/roles", access::list_roles),
        operation!(put, "/api/v1/clients/{client_id}/roles/{name}", access::declare_role),
        operation!(delete, "/api/v1/clients/{client_id}/roles/{name}", access::retire_role),
        operation!(put, "/api/v1/clients/{client_id}/requires-role", access::set_requires_role),
        operation!(get, "/api/v1/access/requests", access::list_requests),
        operation!(get, "/api/v1/access/requests/{id}", access::get_request),
        operation!(get, "/api/v1/access/grants", access::list_grants),
        operation!(get, "/api/v1/access/grants/{id}", access::get_grant),
        operation!(post, "/api/v1/access/grants/{id}/revoke", access::revoke_grant),
        operation!(get, "/api/v1/access/deputies", access::list_deputies),
        operation!(post, "/api/v1/access/deputies", access::designate_deputy),
        operation!(post, "/api/v1/access/deputies/{id}/revoke", access::revoke_deputy),
        operation!(get, "/api/v1/access/reviews", access::list_reviews),
        operation!(post, "/api/v1/access/reviews", access::open_review),
        operation!(get, "/api/v1/access/reviews/{id}", access::get_review),
        operation!(get, "/api/v1/admin-roles", role_grants::list_roles),
        operation!(get, "/api/v1/admin-roles/grants", role_grants::list_grants),
        operation!(post, "/api/v1/admin-roles/grants", role_grants::grant),
        operation!(post, "/api/v1/emergency-stops", emergency::stop),
        operation!(get, "/api/v1/emergency-stops", emergency::list),
        operation!(post, "/api/v1/emergency-stops/{id}/lift", emergency::lift),
        operation!(post, "/api/v1/shared-ids", shared_ids::create),
        operation!(get, "/api/v1/shared-ids", shared_ids::list),
        operation!(post, "/api/v1/shared-ids/{id}/end", shared_ids::end),
        operation!(get, "/api/v1/audit/events", list_audit_events),
        operation!(get, "/api/v1/audit/verify", verify_audit),
        operation!(get, "/api/v1/audit/export", reports::export_audit_events),
        operation!(get, "/api/v1/audit/my-reads", reports::my_reads),
        operation!(get, "/api/v1/reports/analysis", reports::analysis_report),
        operation!(get, "/api/v1/reports/compliance", reports::compliance_report),
    ]
}

/// (METHOD, path) of every operation of the JSON API.
pub fn api_routes() -> Vec<(String, String)> {
    operations().into_iter().map(|op| (op.method.to_uppercase(), op.path.to_owned())).collect()
}

pub fn router() -> Router<App> {
    operations()
        .into_iter()
        .fold(Router::new(), |router, op| router.route(op.path, op.handler))
        // The hotline operators' page and its assets: HTML, not the JSON API.
        .merge(hotline::pages())
        // The admin console: pages for people with administrative roles.
        .merge(console::router())
        // Monitoring (R20), in the formats monitoring systems read rather than JSON.
        .route("/livez", axum::routing::get(crate::health::livez))
        .route("/readyz", axum::routing::get(crate::health::readyz))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(|| async { Problem::not_found("resource") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", None)
        })
}

/// `/metrics`: the Prometheus (OpenMetrics) text of `crate::metrics`, for `metrics:read`.
async fn metrics(
    State(app): State<App>,
    _caller: Authorized<rights::MetricsRead>,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    let text = app.metrics.render(&app.store, app.clock.now()).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapRequest {
    code: String,
    name: String,
}

async fn bootstrap(
    State(app): State<App>,
    ApiJson(req): ApiJson<BootstrapRequest>,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    let issued = auth::redeem_bootstrap_code(&app, &req.code, &req.name).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApiToken {
    name: String,
    scopes: Vec<String>,
    /// Seconds; default `tokens.api_token_ttl` (30 days), and never beyond the creating
    /// token's own end.
    expires_in: Option<i64>,
    /// The person whose rights the token uses. A person's token is always their own; only the
    /// bootstrap token names another owner (who must hold the rights).
    owner: Option<String>,
}

async fn create_api_token(
    State(app): State<App>,
    caller: Authorized<rights::TokensWrite>,
    ApiJson(req): ApiJson<NewApiToken>,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    auth::check_scopes(&req.scopes)?;
    // An HR feed's token is the feed's alone: a leaked one can change people, nothing else.
    let feed = rights::Right::HrFeed.scope();
    if req.scopes.iter().any(|s| s == feed) && req.scopes.iter().any(|s| s != feed) {
        return Err(Problem::invalid("scopes", "hr:feed is granted alone: an HR feed's token carries no other right"));
    }
    // A token can hand on only rights its creator holds.
    if let Some(scope) = req.scopes.iter().find(|s| !rights::Right::from_scope(s).is_some_and(|r| caller.holds(r))) {
        return Err(Problem::forbidden(scope));
    }
    let now = app.clock.now();
    let owner = match (caller.person_id(), req.owner.as_deref()) {
        (Some(me), Some(other)) if me != other => {
            return Err(Problem::invalid("owner", "a person's token is their own: leave owner out"))
        }
        (Some(me), _) => Some(me.to_owned()),
        (None, Some(named)) => {
            // The bootstrap token hands a machine's token to a person who holds its rights.
            let today = directory::today_in_japan(now);
            let held = roles::rights_of(&roles::held_by(app.store.pool(), named, today).await?);
            if let Some(scope) = req.scopes.iter().find(|s| !rights::Right::from_scope(s).is_some_and(|r| held.contains(&r))) {
                return Err(Problem::invalid("owner", format!("the owner does not hold {scope}")));
            }
            Some(named.to_owned())
        }
        (None, None) => None,
    };
    // A token never outlives the token that made it: the default stops at the parent's end, and
    // an explicit lifetime beyond it is refused rather than quietly shortened. A person in the
    // console makes tokens for machines, which outlive the console session.
    let parent_left = match caller.who {
        auth::Caller::Token { .. } => caller.expires_at - now,
        auth::Caller::Console { .. } => i64::MAX,
    };
    let lifetime = match req.expires_in {
        Some(asked) if asked > parent_left => {
            return Err(Problem::invalid(
                "expires_in",
                format!("must not exceed the lifetime left to the token creating it ({parent_left} seconds)"),
            ))
        }
        Some(asked) => asked,
        None => app.config.tokens.api_token_ttl.min(parent_left),
    };
    let mut tx = app.store.begin().await?;
    let issued =
        auth::create_token(&mut tx, &caller.actor(), now, owner.as_deref(), &req.name, &req.scopes, lifetime).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

async fn list_api_tokens(
    State(app): State<App>,
    _caller: Authorized<rights::TokensWrite>,
) -> Result<Json<List<auth::TokenInfo>>, Problem> {
    Ok(Json(List { items: auth::list_tokens(&app.store).await? }))
}

/// Revokes a token at once; it is refused from the next request on.
async fn revoke_api_token(
    State(app): State<App>,
    caller: Authorized<rights::TokensWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let mut tx = app.store.begin().await?;
    if !auth::revoke_token(&mut tx, &caller.actor(), app.clock.now(), &id).await? {
        return Err(Problem::not_found("API token"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct List<T> {
    pub items: Vec<T>,
}

async fn list_org_units(
    State(app): State<App>,
    _caller: Authorized<rights::DirectoryRead>,
) -> Result<Json<List<OrgUnit>>, Problem> {
    Ok(Json(List { items: directory::list_org_units(&app.store).await? }))
}

async fn create_org_unit(
    State(app): State<App>,
    caller: Authorized<rights::DirectoryWrite>,
    ApiJson(new): ApiJson<NewOrgUnit>,
) -> Result<(StatusCode, Json<OrgUnit>), Problem> {
    let mut tx = app.store.begin().await?;
    let unit = directory::create_org_unit(&mut tx, &caller.actor(), app.clock.now(), new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(unit)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetManager {
    person_id: String,
}

async fn set_manager(
    State(app): State<App>,
    caller: Authorized<rights::DirectoryWrite>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetManager>,
) -> Result<StatusCode, Problem> {
    let mut tx = app.store.begin().await?;
    directory::set_org_unit_manager(&mut tx, &caller.actor(), app.clock.now(), &id, &req.person_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeopleQuery {
    q: Option<String>,
    org_unit: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A person in a list: the record and their login ID.
#[derive(Serialize)]
struct PersonListItem {
    #[serde(flatten)]
    person: Person,
    login_id: Option<String>,
}

async fn list_people(
    State(app): State<App>,
    _caller: Authorized<rights::DirectoryRead>,
    ApiQuery(query): ApiQuery<PeopleQuery>,
) -> Result<Json<List<PersonListItem>>, Problem> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Problem::bad_parameter(InvalidField { field: "limit", reason: "must be 1 to 500".into() }));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(Problem::bad_parameter(InvalidField { field: "offset", reason: "must not be negative".into() }));
    }
    let filter = PeopleFilter::parse(
        query.q.as_deref(),
        query.org_unit.as_deref(),
        query.status.as_deref(),
        query.kind.as_deref(),
    )
    .map_err(Problem::bad_parameter)?;
    let found = search::find_people(&app.store, &filter, limit, offset).await?;
    let items = found.into_iter().map(|f| PersonListItem { person: f.person, login_id: f.login_id }).collect();
    Ok(Json(List { items }))
}

async fn create_person(
    State(app): State<App>,
    caller: Authorized<rights::DirectoryWrite>,
    ApiJson(new): ApiJson<NewPerson>,
) -> Result<(StatusCode, Json<Person>), Problem> {
    // A person registered by hand has a reading: the hotline finds people by it.
    for (field, value) in [("family_name_kana", &new.family_name_kana), ("given_name_kana", &new.given_name_kana)] {
        directory::types::parse_kana(field, value).map_err(|e| Problem::invalid(field, e.to_string()))?;
    }
    let mut tx = app.store.begin().await?;
    let person = directory::create_person(&mut tx, &caller.actor(), app.clock.now(), new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(person)))
}

/// A person's record: who they are, their login ID and their cards (never key material).
#[derive(Serialize)]
struct PersonRecord {
    #[serde(flatten)]
    person: Person,
    login_id: Option<String>,
    authenticators: Vec<Authenticator>,
}

async fn get_person(
    State(app): State<App>,
    _caller: Authorized<rights::DirectoryRead>,
    Path(id): Path<String>,
) -> Result<Json<PersonRecord>, Problem> {
    let pool = app.store.pool();
    let person = directory::get_person(pool, &id).await?.ok_or_else(|| Problem::not_found("person"))?;
    Ok(Json(PersonRecord {
        login_id: directory::login_id_of(pool, &id).await?,
        authenticators: authenticators::list_for_person(pool, &id).await?,
        person,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    login_id: String,
    /// A first password, checked against the full policy and stored only as an argon2id hash.
    /// Better: leave it out and send the person a reset link (`password-reset`).
    password: Option<String>,
    /// Whether the person must change that password at first login. Default true: someone
    /// other than the person chose it (R11).
    require_change: Option<bool>,
}

async fn create_account(
    State(app): State<App>,
    caller: Authorized<rights::DirectoryWrite>,
    Path(person_id): Path<String>,
    ApiJson(req): ApiJson<NewAccount>,
) -> Result<(StatusCode, Json<Account>), Problem> {
    let login_id = LoginId::parse(&req.login_id).map_err(directory::DirectoryError::from)?;
    let person =
        directory::get_person(app.store.pool(), &person_id).await?.ok_or_else(|| Problem::not_found("person"))?;
    let prepared = match &req.password {
        Some(password) => {
            if let Err(refused) =
                policy::check_new_password(&app, &person, login_id.as_str(), password, password).await?
            {
                return Err(passwords::refusal_problem(&refused, app.config.password.history));
            }
            let hash = app.hasher.hash(password.clone()).await.map_err(Problem::internal)?;
            Some((hash, policy::fingerprint(&app.fingerprint_key, password)))
        }
        None => None,
    };
    let initial = prepared.as_ref().map(|(hash, fingerprint)| directory::InitialPassword {
        hash,
        fingerprint,
        must_change: req.require_change.unwrap_or(true),
    });
    let mut tx = app.store.begin().await?;
    let account =
        directory::create_account(&mut tx, &caller.actor(), app.clock.now(), &person_id, &login_id, initial).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// R8: reading the log is itself logged, with the filters asked for, and the read is recorded
/// before the events are fetched (so it can appear in its own answer).
async fn list_audit_events(
    State(app): State<App>,
    caller: Authorized<rights::AuditRead>,
    ApiQuery(params): ApiQuery<audit::query::Params>,
) -> Result<Json<List<audit::StoredEvent>>, Problem> {
    Ok(Json(List { items: read_audit(&app, &caller.actor(), &params).await? }))
}

/// Reads the access records for an auditor (API and console alike), recording the reading first.
pub(crate) async fn read_audit(
    app: &App,
    actor: &audit::Actor,
    params: &audit::query::Params,
) -> Result<Vec<audit::StoredEvent>, Problem> {
    let mut filter = audit::query::Filter::parse(params).map_err(Problem::bad_parameter)?;
    // The person as actor or target, by every name the log gives them.
    crate::reports::audit_export::resolve_person(&app.store, &mut filter).await?;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    Event::success(actor, "audit.read", "audit_events", filter.describe()).record(&mut tx, now).await?;
    tx.commit().await?;
    Ok(audit::query::find(&app.store, &filter).await?)
}

async fn verify_audit(
    State(app): State<App>,
    _caller: Authorized<rights::AuditRead>,
) -> Result<Json<Verification>, Problem> {
    Ok(Json(audit::verify(&app.store).await?))
}
