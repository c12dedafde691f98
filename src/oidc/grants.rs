//! The token endpoint's grants as use cases (RFC 6749 §4.1.3, §6, §4.4; OIDC Core §3.1.3 and
//! §12): each takes the authenticated client, the grant's own inputs and `now`, and returns the
//! token response or an OAuth error. Every grant re-checks live state (person, session,
//! client) before it mints anything; every refusal of a presented grant is audited.

use serde::Serialize;

use crate::access::roles::Held;
use crate::audit::{self, Actor, Event};
use crate::clock::UnixTime;
use crate::directory::Person;
use crate::revocation::{self, Target};
use crate::store::Tx;
use crate::systems::{Client, GrantType};
use crate::App;

use super::access_tokens::{self, NewAccessToken};
use super::claims::{self, AccessTokenInput, AuthContext, ClaimsRequest, IdTokenInput};
use super::codes::{self, Redemption};
use super::error::OAuthError;
use super::live::{self, PersonLive};
use super::refresh::{self, NewRefresh};

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

/// A grant, its parameters checked for shape.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    AuthorizationCode { code: &'a str, redirect_uri: &'a str, code_verifier: Option<&'a str> },
    RefreshToken { refresh_token: &'a str, scope: Option<&'a str> },
    ClientCredentials { scope: Option<&'a str> },
}

/// Exchanges `grant` for tokens for `client`, at `now`.
pub async fn exchange(
    app: &App,
    client: &Client,
    grant: Grant<'_>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let (kind, issued) = match grant {
        Grant::AuthorizationCode { code, redirect_uri, code_verifier } => {
            allowed(client, GrantType::AuthorizationCode)?;
            (
                GrantType::AuthorizationCode,
                authorization_code(app, client, code, redirect_uri, code_verifier, now).await,
            )
        }
        Grant::RefreshToken { refresh_token: presented, scope } => {
            allowed(client, GrantType::RefreshToken)?;
            (GrantType::RefreshToken, refresh_token(app, client, presented, scope, now).await)
        }
        Grant::ClientCredentials { scope } => {
            allowed(client, GrantType::ClientCredentials)?;
            (GrantType::ClientCredentials, client_credentials(app, client, scope, now).await)
        }
    };
    if issued.is_ok() {
        crate::metrics::token_issued(kind.as_str());
    }
    issued
}

/// Whether the client is registered for the grant.
pub fn allowed(client: &Client, grant: GrantType) -> Result<(), OAuthError> {
    if client.may_use(grant) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(format!("this client may not use the {} grant", grant.as_str())))
    }
}

/// Records a refused grant (in the caller's transaction, which it then commits) and returns
/// the `invalid_grant` answer.
async fn refuse(mut tx: Tx, actor: &Actor, now: UnixTime, target: String, reason: &str) -> OAuthError {
    match record_refusal(&mut tx, actor, now, target, reason).await {
        Ok(()) => match tx.commit().await {
            Ok(()) => OAuthError::invalid_grant(reason),
            Err(e) => OAuthError::from(e),
        },
        Err(e) => OAuthError::from(e),
    }
}

/// Records a refused grant in `tx`.
async fn record_refusal(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    target: String,
    reason: &str,
) -> Result<(), sqlx::Error> {
    refusal(actor, target, reason).record(tx, now).await
}

/// The audit record of a refused grant.
fn refusal<'a>(actor: &'a Actor, target: String, reason: &str) -> Event<'a> {
    Event::failure(actor, "token.refused", target, serde_json::json!({"reason": reason}))
}

/// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6): a code is redeemed once, by its client, before
/// it expires, for the redirect URI it was issued for.
async fn authorization_code(
    app: &App,
    client: &Client,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let actor = Actor::Client(client.client_id.clone());
    let mut tx = app.store.begin().await?;
    let grant = match codes::redeem(&mut tx, now, code).await? {
        Redemption::First(grant) => grant,
        Redemption::Unknown => return Err(OAuthError::invalid_grant("the code is invalid")),
        Redemption::Replayed { code_id, client_id } => {
            // RFC 6749 §4.1.2: a code used twice is a sign of theft; what it issued is revoked.
            revocation::revoke(
                &mut tx,
                &actor,
                now,
                Target::AuthorizationCode(&code_id),
                "authorization code replayed",
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(client_id = %client_id, "authorization code replayed; its tokens were revoked");
            return Err(OAuthError::invalid_grant("the code is invalid"));
        }
    };
    // Every check below uses the code up, and the refusal is audited.
    let refusal = match () {
        _ if grant.client_id != client.client_id => Some("the code was issued to another client"),
        _ if grant.expires_at <= now => Some("the code has expired"),
        _ if grant.redirect_uri != redirect_uri => Some("redirect_uri does not match the authorization request"),
        _ => match (&grant.code_challenge, verifier) {
            (Some(challenge), Some(verifier)) if codes::verifier_matches(verifier, challenge) => None,
            (Some(_), Some(_)) => Some("code_verifier does not match the code_challenge"),
            (Some(_), None) => Some("code_verifier is required"),
            // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade attempt.
            (None, Some(_)) => Some("code_verifier sent for a code issued without code_challenge"),
            (None, None) => None,
        },
    };
    let person = match refusal {
        Some(reason) => Err(reason),
        None => person_live(&mut tx, now, &grant.person_id, client, Some(&grant.auth.session_id)).await?,
    };
    let person = match person {
        Ok(person) => person,
        Err(reason) => return Err(refuse(tx, &actor, now, format!("auth_code:{}", grant.id), reason).await),
    };
    let prepared = Prepared::for_person(
        &mut tx,
        PersonGrant {
            client,
            person: &person.login.person,
            auth: &grant.auth,
            scope: &grant.scope,
            claims: grant.claims.as_deref(),
            family_id: &grant.id,
            code_id: Some(&grant.id),
            nonce: grant.nonce.as_deref(),
            session_bound: true,
        },
        person.held,
        person.requires_role,
        now,
    )
    .await?;
    let refresh_token = if client.may_use(GrantType::RefreshToken) {
        Some(
            refresh::issue(
                &mut tx,
                now,
                NewRefresh {
                    family_id: &grant.id,
                    client_id: &client.client_id,
                    person_id: &grant.person_id,
                    offline: grant.scope.split(' ').any(|s| s == "offline_access"),
                    scope: &grant.scope,
                    claims: grant.claims.as_deref(),
                    auth: &grant.auth,
                    expires_at: now + client.refresh_token_ttl,
                },
            )
            .await?,
        )
    } else {
        None
    };
    issued(&actor, &grant.person_id, "authorization_code", &prepared.jti, &grant.auth.session_id)
        .record(&mut tx, now)
        .await?;
    tx.commit().await?;
    let minted = prepared.sign(app).await?;
    Ok(TokenResponse {
        access_token: minted.access_token,
        token_type: "Bearer",
        expires_in: client.access_token_ttl,
        refresh_token,
        id_token: Some(minted.id_token),
        scope: grant.scope,
    })
}

/// RFC 6749 §6 with rotation (RFC 9700 §4.14.2): the presented token is used up and a new one
/// of the same family returned. A token presented after it was rotated means two parties hold
/// it: the family and its session end at once.
///
/// Rotations go through group commit ([`RefreshJob`]): the refresh requests waiting at the same
/// moment are read together, then each checked and written in turn in one transaction,
/// committed once, and each answered only then; the tokens are signed after the commit.
async fn refresh_token(
    app: &App,
    client: &Client,
    presented: &str,
    asked_scope: Option<&str>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let job = RefreshJob {
        client: client.clone(),
        presented_hash: crate::crypto::sha256_hex(presented),
        asked_scope: asked_scope.map(str::to_owned),
        now,
    };
    let Rotation { prepared, refresh_token, scope } = app.grouped_refreshes.submit(job).await??;
    let minted = prepared.sign(app).await?;
    Ok(TokenResponse {
        access_token: minted.access_token,
        token_type: "Bearer",
        expires_in: client.access_token_ttl,
        refresh_token: Some(refresh_token),
        id_token: scope.split(' ').any(|s| s == "openid").then_some(minted.id_token),
        scope,
    })
}

/// A refresh request waiting for group commit (`store::group`).
pub struct RefreshJob {
    client: Client,
    /// The presented token's hash, as it is stored.
    presented_hash: String,
    asked_scope: Option<String>,
    now: UnixTime,
}

/// A rotation written: the new refresh token, and the access and ID tokens to sign.
pub struct Rotation {
    prepared: Prepared,
    refresh_token: String,
    scope: String,
}

impl crate::store::Batch for RefreshJob {
    /// The rotation, or the refusal (already recorded, when it is one the log keeps).
    type Outcome = Result<Rotation, OAuthError>;

    /// Each item reads and writes in several round trips: more batches at once (measured in BENCHMARKS.md).
    const POSTGRES_COMMITTERS: usize = 8;

    fn write<'a>(tx: &'a mut Tx, items: &'a [Self]) -> crate::store::Written<'a, Self::Outcome> {
        Box::pin(async move {
            let mut read_ahead = ReadAhead::of(tx, items).await?;
            if let Some(outcomes) = rotate_together(tx, items, &read_ahead).await? {
                return Ok(outcomes);
            }
            let mut outcomes = Vec::with_capacity(items.len());
            let mut issued_events = Vec::with_capacity(items.len());
            for job in items {
                let found = read_ahead.take(tx, job).await?;
                outcomes.push(rotate(tx, job, found, &mut read_ahead, &mut issued_events).await?);
            }
            // One write for the batch's records of issued tokens (on SQLite three statements
            // instead of three each), in the transaction that writes the tokens.
            audit::record_all(tx, &issued_events).await?;
            Ok(outcomes)
        })
    }
}

/// Group commit for refresh-token rotations.
pub type GroupedRefreshes = crate::store::GroupCommit<RefreshJob>;

/// A refresh token with its person's live state, as `live` reads it.
type Found = (refresh::RefreshGrant, Option<PersonLive>);

/// The tokens of a batch of refreshes, read in one query before the first is decided, instead
/// of a round trip each (on SQLite's one writer, every statement is a wait for all). An item
/// decides on what it would have read alone: the batch's own earlier writes that could change
/// that are revocations (a reused token ends its family and session), after which every later
/// item reads its token again; a token presented twice in the batch is read again the second
/// time. What another transaction commits after the reading is caught at the write, which
/// rotates only a token neither rotated nor revoked ([`refresh::rotate_and_issue`]).
struct ReadAhead {
    found: std::collections::HashMap<(UnixTime, String), Found>,
}

impl ReadAhead {
    async fn of(tx: &mut Tx, items: &[RefreshJob]) -> Result<Self, sqlx::Error> {
        let mut found = std::collections::HashMap::new();
        if items.len() > 1 {
            // Read at each item's own `now` (a batch spans at most a second or two).
            let mut nows: Vec<UnixTime> = items.iter().map(|job| job.now).collect();
            nows.sort_unstable();
            nows.dedup();
            let dialect = tx.dialect();
            for now in nows {
                let hashes: Vec<&str> =
                    items.iter().filter(|job| job.now == now).map(|job| job.presented_hash.as_str()).collect();
                let tokens = live::refresh_tokens(&mut **tx, dialect, now, &hashes).await.map_err(database)?;
                found.extend(tokens.into_iter().map(|(hash, token)| ((now, hash), token)));
            }
        }
        Ok(ReadAhead { found })
    }

    /// `job`'s token as read ahead (once), else as it is read now.
    async fn take(&mut self, tx: &mut Tx, job: &RefreshJob) -> Result<Option<Found>, sqlx::Error> {
        match self.found.remove(&(job.now, job.presented_hash.clone())) {
            Some(found) => Ok(Some(found)),
            None => live::refresh_token(&mut **tx, job.now, &job.presented_hash).await.map_err(database),
        }
    }

    /// `job`'s token as read ahead, left for [`ReadAhead::take`]; None when the reading found
    /// no such token (or the batch was too small to read ahead).
    fn peek(&self, job: &RefreshJob) -> Option<Found> {
        self.found.get(&(job.now, job.presented_hash.clone())).cloned()
    }

    /// After a revocation in the batch: what was read ahead may no longer hold.
    fn forget(&mut self) {
        self.found.clear();
    }
}

/// What a refresh request comes to, decided from its token as read (with its person's live
/// state) before anything is written for it.
enum Decided {
    /// Answered without a record: a token unknown (or another client's), a scope or a role
    /// refused.
    Answer(OAuthError),
    /// Refused, with a record of why.
    Refused { target: String, reason: &'static str },
    /// Presented again after its rotation: two parties hold it.
    Reused(refresh::RefreshGrant),
    /// To be rotated.
    Rotate(Box<Plan>),
}

/// A rotation decided: the token, its person, the scope and roles of the new access token.
struct Plan {
    grant: refresh::RefreshGrant,
    person: Person,
    scope: String,
    roles: Roles,
    jti: String,
}

impl Plan {
    /// What the new tokens speak for.
    fn person_grant<'a>(&'a self, client: &'a Client) -> PersonGrant<'a> {
        refreshed_grant(client, &self.grant, &self.person, &self.scope)
    }

    /// The successor of the token: the family's scope, claims and end, whatever was asked.
    fn successor<'a>(&'a self, client: &'a Client) -> NewRefresh<'a> {
        let grant = &self.grant;
        NewRefresh {
            family_id: &grant.family_id,
            client_id: &client.client_id,
            person_id: &grant.person_id,
            offline: grant.offline,
            scope: &grant.scope,
            claims: grant.claims.as_deref(),
            auth: &grant.auth,
            expires_at: grant.expires_at,
        }
    }

    /// Records the rotation's issued token in `tx` (the session is marked when a secret-class
    /// role came with it) and returns what to sign and answer.
    async fn written(
        self,
        tx: &mut Tx,
        client: &Client,
        refresh_token: String,
        now: UnixTime,
    ) -> Result<(Rotation, audit::Pending), sqlx::Error> {
        let Plan { grant, person, scope, roles, jti } = self;
        let prepared =
            Prepared::after_recording(tx, refreshed_grant(client, &grant, &person, &scope), roles, jti, now).await?;
        let actor = Actor::Client(client.client_id.clone());
        let event = issued(&actor, &grant.person_id, "refresh_token", &prepared.jti, &grant.session_id);
        Ok((Rotation { prepared, refresh_token, scope }, audit::Pending::new(event, now)))
    }
}

/// What the tokens of a refresh of `grant` speak for: `person`, the family's login, `scope`.
fn refreshed_grant<'a>(
    client: &'a Client,
    grant: &'a refresh::RefreshGrant,
    person: &'a Person,
    scope: &'a str,
) -> PersonGrant<'a> {
    PersonGrant {
        client,
        person,
        auth: &grant.auth,
        scope,
        claims: grant.claims.as_deref(),
        family_id: &grant.family_id,
        code_id: None,
        // OIDC Core §12.2: an ID token from a refresh carries no nonce.
        nonce: None,
        // Tokens an offline_access family mints outlive the browser session.
        session_bound: !grant.offline,
    }
}

/// Decides `job` on its token `found`. Everything that can refuse a refresh is decided here,
/// before its first write, so that a refusal leaves only its own record.
fn decide(job: &RefreshJob, found: Option<Found>) -> Decided {
    let RefreshJob { client, asked_scope, now, .. } = job;
    // A token of another client is as unknown as a made-up one (RFC 6749 §6: bound to its client).
    let Some((grant, person)) = found.filter(|(g, _)| g.client_id == client.client_id) else {
        return Decided::Answer(OAuthError::invalid_grant("the refresh token is invalid"));
    };
    let target = format!("grant:{}", grant.family_id);
    if grant.rotated && !grant.revoked {
        return Decided::Reused(grant);
    }
    if grant.rotated || grant.revoked {
        return Decided::Refused { target, reason: "the refresh token has been revoked" };
    }
    if grant.expires_at <= *now {
        return Decided::Refused { target, reason: "the refresh token has expired" };
    }
    let person = match person {
        Some(person) if person.usable() => person,
        _ => return Decided::Refused { target, reason: PERSON_GONE },
    };
    // RFC 6749 §6: a narrower scope may be asked for the access token; the family keeps its own.
    let scope = match asked_scope {
        None => grant.scope.clone(),
        Some(asked) => {
            let held: Vec<&str> = grant.scope.split(' ').collect();
            let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if asked.is_empty() || asked.iter().any(|s| !held.contains(s)) {
                return Decided::Answer(OAuthError::invalid_scope("scope must be within the scope originally granted"));
            }
            asked.join(" ")
        }
    };
    let PersonLive { login, held, requires_role, .. } = person;
    let person = login.person;
    match Roles::counted(&refreshed_grant(client, &grant, &person, &scope), held, requires_role) {
        Ok(roles) => Decided::Rotate(Box::new(Plan { grant, person, scope, roles, jti: claims::new_jti() })),
        Err(refusal) => Decided::Answer(refusal),
    }
}

/// The requests of a batch decided on what was read ahead and written together: the
/// rotations in one call ([`refresh::rotate_all`]), then every record, in the order the
/// requests came. None, with nothing written, when the batch needs the one-by-one path: a
/// single request (nothing was read ahead), a token presented twice, or a reuse (whose
/// revocation changes what the requests after it would read). An error when a token was
/// rotated or revoked by another transaction since it was read: the batch is rolled back and
/// each request written alone (`store::group`), where the one-by-one path tells which.
async fn rotate_together(
    tx: &mut Tx,
    items: &[RefreshJob],
    read_ahead: &ReadAhead,
) -> Result<Option<Vec<Result<Rotation, OAuthError>>>, sqlx::Error> {
    if items.len() < 2 {
        return Ok(None);
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    if !items.iter().all(|job| seen.insert(&job.presented_hash)) {
        return Ok(None);
    }
    let mut decided = Vec::with_capacity(items.len());
    for job in items {
        match decide(job, read_ahead.peek(job)) {
            Decided::Reused(_) => return Ok(None),
            other => decided.push(other),
        }
    }
    let rotating: Vec<refresh::Rotating<'_>> = items
        .iter()
        .zip(&decided)
        .filter_map(|(job, decided)| match decided {
            Decided::Rotate(plan) => Some(refresh::Rotating {
                id: &plan.grant.id,
                now: job.now,
                successor: plan.successor(&job.client),
                access: Prepared::access_token_row(&plan.person_grant(&job.client), &plan.jti, job.now),
            }),
            _ => None,
        })
        .collect();
    let Some(tokens) = refresh::rotate_all(tx, &rotating).await? else {
        return Err(sqlx::Error::Protocol(
            "a refresh token of the batch was rotated or revoked since it was read".into(),
        ));
    };
    drop(rotating);
    let mut tokens = tokens.into_iter();
    let mut outcomes = Vec::with_capacity(items.len());
    let mut events = Vec::with_capacity(items.len());
    for (job, decided) in items.iter().zip(decided) {
        let actor = Actor::Client(job.client.client_id.clone());
        outcomes.push(match decided {
            Decided::Answer(answer) => Err(answer),
            Decided::Refused { target, reason } => {
                events.push(audit::Pending::new(refusal(&actor, target, reason), job.now));
                Err(OAuthError::invalid_grant(reason))
            }
            Decided::Rotate(plan) => {
                let token =
                    tokens.next().ok_or_else(|| sqlx::Error::Protocol("a rotation without its token".into()))?;
                let (rotation, event) = plan.written(tx, &job.client, token, job.now).await?;
                events.push(event);
                Ok(rotation)
            }
            // Not reached: a batch with a reuse took the one-by-one path before writing.
            Decided::Reused(_) => return Err(sqlx::Error::Protocol("a reuse in a batch written together".into())),
        });
    }
    audit::record_all(tx, &events).await?;
    Ok(Some(outcomes))
}

/// One refresh request, its token `found` (with its person's live state), checked and written
/// in `tx`; the record of the tokens it issues is added to `issued_events`, which the batch
/// writes at its end (in the same transaction).
/// Everything that can refuse it is decided before its first write ([`decide`]), so that a
/// refusal leaves only its own record; an error rolls back the whole batch (each request is
/// then run again alone).
async fn rotate(
    tx: &mut Tx,
    job: &RefreshJob,
    found: Option<Found>,
    read_ahead: &mut ReadAhead,
    issued_events: &mut Vec<audit::Pending>,
) -> Result<Result<Rotation, OAuthError>, sqlx::Error> {
    let now = job.now;
    let client = &job.client;
    let actor = Actor::Client(client.client_id.clone());
    let plan = match decide(job, found) {
        Decided::Answer(answer) => return Ok(Err(answer)),
        Decided::Refused { target, reason } => {
            return refused(tx, issued_events, &actor, now, target, reason).await;
        }
        Decided::Reused(grant) => {
            return reused(tx, read_ahead, issued_events, &actor, now, &grant, "refresh token reused after rotation")
                .await;
        }
        Decided::Rotate(plan) => plan,
    };
    let grant = &plan.grant;
    let target = format!("grant:{}", grant.family_id);
    let person_grant = plan.person_grant(client);
    let access = Prepared::access_token_row(&person_grant, &plan.jti, now);
    let Some(refresh_token) = refresh::rotate_and_issue(tx, now, &grant.id, plan.successor(client), access).await?
    else {
        // Rotated or revoked since it was read. Rotated by another request: the same theft
        // signal as a reuse. Revoked (a revocation committed first, here or on another node):
        // refused, as if the revocation had come before the read.
        let now_stored = refresh::find_by_hash(tx, &job.presented_hash).await?;
        if now_stored.is_some_and(|stored| stored.revoked) {
            return refused(tx, issued_events, &actor, now, target, "the refresh token has been revoked").await;
        }
        return reused(tx, read_ahead, issued_events, &actor, now, grant, "refresh token used twice at once").await;
    };
    let (rotation, event) = plan.written(tx, client, refresh_token, now).await?;
    issued_events.push(event);
    Ok(Ok(rotation))
}

/// Records a refused refresh in `tx` (after the batch's tokens issued before it, so that the
/// log keeps the order things were decided in) and returns the refusal.
async fn refused(
    tx: &mut Tx,
    issued_events: &mut Vec<audit::Pending>,
    actor: &Actor,
    now: UnixTime,
    target: String,
    reason: &str,
) -> Result<Result<Rotation, OAuthError>, sqlx::Error> {
    audit::record_all(tx, &std::mem::take(issued_events)).await?;
    record_refusal(tx, actor, now, target, reason).await?;
    Ok(Err(OAuthError::invalid_grant(reason)))
}

/// Two parties hold one refresh token: the family and its session end (RFC 9700 §4.14.2).
/// Recorded, as a refusal is, after the batch's tokens issued before it.
async fn reused(
    tx: &mut Tx,
    read_ahead: &mut ReadAhead,
    issued_events: &mut Vec<audit::Pending>,
    actor: &Actor,
    now: UnixTime,
    grant: &refresh::RefreshGrant,
    reason: &'static str,
) -> Result<Result<Rotation, OAuthError>, sqlx::Error> {
    let target = Target::ReusedGrant { family_id: &grant.family_id, session_id: &grant.session_id };
    audit::record_all(tx, &std::mem::take(issued_events)).await?;
    revocation::revoke(tx, actor, now, target, reason).await?;
    read_ahead.forget();
    // Logged once the revocation is committed: a batch rolled back and written again item by
    // item decides again, and would otherwise log the same reuse twice.
    let client_id = grant.client_id.clone();
    tx.after_commit(Box::new(move || {
        tracing::warn!(client_id = %client_id, "{reason}; its family and session are revoked");
    }));
    Ok(Err(OAuthError::invalid_grant("the refresh token is invalid")))
}

/// An error of a write inside a group-commit batch, as the batch reports it.
fn database(error: crate::Error) -> sqlx::Error {
    match error {
        crate::Error::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// RFC 6749 §4.4: a consuming system calling another on its own behalf, with the service
/// scopes it was registered for. No refresh token (§4.4.3), no ID token: no person is involved.
async fn client_credentials(
    app: &App,
    client: &Client,
    asked_scope: Option<&str>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let scope = match asked_scope {
        None => client.service_scopes.clone(),
        Some(asked) => {
            let mut scope: Vec<String> = Vec::new();
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                if !client.service_scopes.iter().any(|held| held == s) {
                    return Err(OAuthError::invalid_scope(format!("{s} is not a service scope of this client")));
                }
                if !scope.iter().any(|have| have == s) {
                    scope.push(s.to_owned());
                }
            }
            scope
        }
    };
    if scope.is_empty() {
        return Err(OAuthError::invalid_scope("this client has no service scopes"));
    }
    let scope = scope.join(" ");
    // No row: the token is as live as its system, in the token generation read when the
    // client authenticated (a disable since then has raised it, ending this token too).
    let jti = access_tokens::service_jti(client.token_generation);
    let access_token = app.keys.sign(
        crate::systems::SigningAlg::ES256,
        "at+jwt",
        &claims::service_access_token(&app.config.issuer, client, &scope, &jti, now),
    )?;
    // Every token issued is in the audit log (R16), the system's own too. Its event is its
    // only write, so it goes through group commit: the events waiting at the same moment are
    // written together in one transaction, and each answer waits for that commit.
    let actor = Actor::Client(client.client_id.clone());
    let detail = serde_json::json!({"grant_type": "client_credentials", "jti": jti, "scope": scope});
    let event = Event::success(&actor, "token.issued", format!("client:{}", client.client_id), detail);
    app.grouped_events.record(event, now).await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: client.access_token_ttl,
        refresh_token: None,
        id_token: None,
        scope,
    })
}

/// Why a grant is refused when the person or the session it speaks for has ended.
const PERSON_GONE: &str = "the person or session can no longer be used";

/// The person, their session (when given) and their roles on `client`, in one query; the
/// refusal when the person may not log in or the session has ended. Every grant that speaks
/// for a person asks this first.
async fn person_live(
    tx: &mut Tx,
    now: UnixTime,
    person_id: &str,
    client: &Client,
    session_id: Option<&str>,
) -> Result<Result<PersonLive, &'static str>, crate::Error> {
    match live::person_on_client(&mut **tx, now, person_id, &client.client_id, session_id).await? {
        Some(person) if person.usable() => Ok(Ok(person)),
        _ => Ok(Err(PERSON_GONE)),
    }
}

struct PersonGrant<'a> {
    client: &'a Client,
    person: &'a Person,
    auth: &'a AuthContext,
    scope: &'a str,
    claims: Option<&'a str>,
    family_id: &'a str,
    code_id: Option<&'a str>,
    nonce: Option<&'a str>,
    /// Whether the access token ends with the browser session. Tokens an offline_access
    /// family mints after the login do not (the person's own state still governs them).
    session_bound: bool,
}

/// The roles a person's tokens carry on a system: their live roles there, the secret-class
/// ones only after a card login.
struct Roles {
    names: Vec<String>,
    /// Whether a secret-class role is among them.
    secret: bool,
}

impl Roles {
    /// `held` (the person's live roles on the system, read with their live state) as this
    /// login counts them; the refusal when the system lets nobody in without a role and none counts.
    fn counted(grant: &PersonGrant<'_>, held: Vec<Held>, requires_role: bool) -> Result<Roles, OAuthError> {
        let with_card = grant.auth.acr == crate::authenticators::ACR_HWK;
        let held: Vec<Held> = held.into_iter().filter(|h| with_card || !h.secret).collect();
        if held.is_empty() && requires_role {
            return Err(OAuthError::invalid_grant("the person holds no role on this system"));
        }
        let secret = held.iter().any(|h| h.secret);
        Ok(Roles { names: held.into_iter().map(|h| h.name).collect(), secret })
    }
}

/// An access token (stored for live-state checks) and an ID token for one person, recorded
/// inside the grant's transaction and signed after it commits: signing (RS256 above all) is
/// the slowest step, and on SQLite the transaction holds the one writer while it lasts.
/// A signature cannot fail once the keys are loaded; if one did, the grant's writes would stand
/// unanswered, as they would after a lost connection, and the client would start again.
struct Prepared {
    client: Client,
    person: Person,
    auth: AuthContext,
    scope: String,
    claims: Option<String>,
    nonce: Option<String>,
    roles: Vec<String>,
    jti: String,
    now: UnixTime,
}

/// The tokens signed.
struct Minted {
    access_token: String,
    id_token: String,
}

impl Prepared {
    /// Checks what the person holds on the system and records the access token, in `tx`.
    async fn for_person(
        tx: &mut Tx,
        grant: PersonGrant<'_>,
        held: Vec<Held>,
        requires_role: bool,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        let roles = Roles::counted(&grant, held, requires_role)?;
        Ok(Self::record(tx, grant, roles, now).await?)
    }

    /// Records the access token of `grant` carrying `roles`, in `tx`.
    async fn record(tx: &mut Tx, grant: PersonGrant<'_>, roles: Roles, now: UnixTime) -> Result<Self, sqlx::Error> {
        let jti = claims::new_jti();
        access_tokens::record(tx, Self::access_token_row(&grant, &jti, now)).await?;
        Self::after_recording(tx, grant, roles, jti, now).await
    }

    /// The `access_tokens` row of the access token `jti` of `grant`.
    fn access_token_row<'g>(grant: &PersonGrant<'g>, jti: &'g str, now: UnixTime) -> NewAccessToken<'g> {
        NewAccessToken {
            jti,
            client_id: &grant.client.client_id,
            person_id: &grant.person.id,
            session_id: grant.session_bound.then_some(grant.auth.session_id.as_str()),
            code_id: grant.code_id,
            family_id: Some(grant.family_id),
            scope: grant.scope,
            claims: grant.claims,
            issued_at: now,
            expires_at: now + grant.client.access_token_ttl,
        }
    }

    /// The tokens to sign once the access token `jti` of `grant` is recorded; the session is
    /// marked when a secret-class role came with it.
    async fn after_recording(
        tx: &mut Tx,
        grant: PersonGrant<'_>,
        roles: Roles,
        jti: String,
        now: UnixTime,
    ) -> Result<Self, sqlx::Error> {
        // A session that obtained a secret-class role idles out sooner (R6, R15).
        if grant.session_bound && roles.secret {
            crate::sessions::mark_secret_roles(tx, &grant.auth.session_id).await?;
        }
        Ok(Prepared {
            client: grant.client.clone(),
            person: grant.person.clone(),
            auth: grant.auth.clone(),
            scope: grant.scope.to_owned(),
            claims: grant.claims.map(str::to_owned),
            nonce: grant.nonce.map(str::to_owned),
            roles: roles.names,
            jti,
            now,
        })
    }

    /// Reads what the ID token tells of the person (not their live state: that was read in the
    /// grant's transaction), then signs the access token, then the ID token (whose `at_hash`
    /// covers it).
    async fn sign(self, app: &App) -> Result<Minted, OAuthError> {
        let Prepared { client, person, auth, scope, claims, nonce, roles, jti, now } = self;
        let scopes: Vec<&str> = scope.split(' ').collect();
        let claims_request = ClaimsRequest::from_stored(claims.as_deref());
        let requested = claims_request.names(claims::ClaimsTarget::IdToken);
        let staff = claims::StaffFacts::read(app.store.pool(), &person, &scopes, &requested).await?;
        let access_token = app.keys.sign(
            crate::systems::SigningAlg::ES256,
            "at+jwt",
            &claims::access_token(AccessTokenInput {
                issuer: &app.config.issuer,
                client: &client,
                person_id: &person.id,
                auth: &auth,
                scope: &scope,
                roles: &roles,
                jti: &jti,
                now,
            }),
        )?;
        let id_token = app.keys.sign(
            client.id_token_signed_response_alg,
            "JWT",
            &claims::id_token(IdTokenInput {
                issuer: &app.config.issuer,
                client: &client,
                person: &person,
                staff: &staff,
                auth: &auth,
                scopes: &scopes,
                nonce: nonce.as_deref(),
                access_token: &access_token,
                claims_request: &claims_request,
                roles: &roles,
                now,
                ttl: app.config.tokens.id_token_ttl,
            }),
        )?;
        Ok(Minted { access_token, id_token })
    }
}

/// The record of a token issued for a person.
fn issued<'a>(actor: &'a Actor, person_id: &str, grant_type: &str, jti: &str, sid: &str) -> Event<'a> {
    Event::success(
        actor,
        "token.issued",
        format!("person:{person_id}"),
        serde_json::json!({"grant_type": grant_type, "jti": jti, "sid": sid}),
    )
}
