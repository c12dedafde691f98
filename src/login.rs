//! Logging in with a password, as a use case (R9–R11, R13, R17): the attempt is checked at a
//! given `now` and the outcome is a value — refused, throttled, a forced change, the card next,
//! a replacement card next, or a session. The login pages render it; nothing here knows HTTP.
//!
//! A failed login is the same outcome whether the login ID exists or not, whether the account
//! is locked, and whatever the reason; an unknown ID still costs one argon2 verification. Every
//! attempt is audited and counted toward the account's lockout and the source's throttle.

use crate::audit::{self, Actor, Event, Outcome};
use crate::authenticators::replacement::{self, CardState};
use crate::clock::UnixTime;
use crate::directory::{self, LoginAccount, LoginId};
use crate::oidc::flow::AuthorizationRequest;
use crate::password::lockout;
use crate::password::policy::{self, Expiry};
use crate::password::tickets::{self, Purpose};
use crate::revocation::{self, Target};
use crate::sessions::{self, Session};
use crate::store::Tx;
use crate::App;

/// A login form as sent: the login ID and password (shape checked), and where it came from.
pub struct Attempt<'a> {
    pub login_id: &'a str,
    pub password: &'a str,
    /// The source address (`web::SourceIp`).
    pub source: &'a str,
    /// The browser's current session cookie, if it sent one: a new login replaces it.
    pub previous_session: Option<&'a str>,
}

/// What a login step came to.
#[derive(Debug)]
pub enum Step {
    /// Refused: one answer for every reason.
    Refused,
    /// The source address has used up its failures for now.
    Throttled { retry_after: i64 },
    /// The password has expired (or was set by someone else): it must be changed, with this
    /// ticket, before the login goes on.
    MustChange { ticket: String },
    /// The person's card comes next; no session yet.
    Card { person_id: String },
    /// The person's card was stopped: a replacement card comes next, with this ticket.
    Replacement { ticket: String },
    /// Logged in; `expires_in_days` when the password expires soon.
    LoggedIn { session: Session, cookie: String, expires_in_days: Option<i64> },
}

/// A password login for the pending `request` (`request_id`) at `now`.
pub async fn with_password(
    app: &App,
    request: &AuthorizationRequest,
    request_id: &str,
    attempt: &Attempt<'_>,
    now: UnixTime,
) -> Result<Step, crate::Error> {
    let step = password_step(app, request, request_id, attempt, now).await?;
    crate::metrics::login("password", step.outcome());
    Ok(step)
}

impl Step {
    /// What the step came to, for monitoring (`sekimori_logins_total`).
    pub fn outcome(&self) -> &'static str {
        match self {
            Step::Refused => "refused",
            Step::Throttled { .. } => "throttled",
            Step::MustChange { .. } => "password_change",
            Step::Card { .. } => "card_next",
            Step::Replacement { .. } => "replacement_card",
            Step::LoggedIn { .. } => "success",
        }
    }
}

async fn password_step(
    app: &App,
    request: &AuthorizationRequest,
    request_id: &str,
    attempt: &Attempt<'_>,
    now: UnixTime,
) -> Result<Step, crate::Error> {
    let config = &app.config.password;
    if lockout::source_blocked(&app.store, config, attempt.source, now).await? {
        record_failure(app, None, attempt, now, "source address throttled").await?;
        return Ok(Step::Throttled { retry_after: config.source_window_seconds });
    }
    let account = match LoginId::parse(attempt.login_id).ok() {
        Some(id) => directory::find_login_account(&app.store, &id).await?,
        None => None,
    };
    // Always one argon2 verification, against a dummy hash when there is no account.
    let password_ok =
        app.hasher.verify(attempt.password.to_owned(), account.as_ref().and_then(|a| a.password_hash.clone())).await?;
    let refusal = match &account {
        None => Some("unknown login ID"),
        Some(a) if a.locked_until.is_some_and(|until| until > now) => Some("account locked"),
        Some(_) if !password_ok => Some("wrong password"),
        Some(a) if !(a.account_active && a.person.may_log_in(directory::today_in_japan(now))) => {
            Some("account or person not active")
        }
        Some(_) => None,
    };
    let (Some(account), None) = (account.as_ref(), refusal) else {
        record_failure(app, account.as_ref(), attempt, now, refusal.unwrap_or("refused")).await?;
        return Ok(Step::Refused);
    };
    // A hash made with older parameters is replaced while the password is at hand.
    let rehash = match &account.password_hash {
        Some(stored) if app.hasher.needs_rehash(stored) => Some(app.hasher.hash(attempt.password.to_owned()).await?),
        _ => None,
    };
    let expiry =
        policy::expiry(config, account.person.kind, account.password_changed_at, account.must_change_password, now);
    let mut tx = app.store.begin().await?;
    lockout::account_succeeded(&mut tx, &account.account_id).await?;
    if let Some(hash) = &rehash {
        directory::accounts::replace_password_hash(&mut tx, &account.account_id, hash).await?;
    }
    if expiry == Expiry::MustChange {
        // R10: the login does not complete, and no code is issued, until the password is changed.
        let actor = Actor::Person(account.person.id.clone());
        let ticket =
            tickets::issue(&mut tx, now, &account.account_id, Purpose::Expired, Some(request_id), &actor).await?;
        let detail = serde_json::json!({"reason": "password change required"});
        record_password_step(&mut tx, now, account, Outcome::Failure, detail, attempt.source).await?;
        tx.commit().await?;
        return Ok(Step::MustChange { ticket });
    }
    let step = after_password(app, &mut tx, account, request, request_id, attempt, now).await?;
    tx.commit().await?;
    Ok(match (step, expiry) {
        (Step::LoggedIn { session, cookie, .. }, Expiry::ExpiresSoon { days_left }) => {
            Step::LoggedIn { session, cookie, expires_in_days: Some(days_left) }
        }
        (step, _) => step,
    })
}

/// What follows a verified password (on the login form, or once an expired password has been
/// replaced): the card gate, then the session. Runs in the caller's transaction.
pub async fn after_password(
    app: &App,
    tx: &mut Tx,
    account: &LoginAccount,
    request: &AuthorizationRequest,
    request_id: &str,
    attempt: &Attempt<'_>,
    now: UnixTime,
) -> Result<Step, crate::Error> {
    match card_gate(app, tx, &account.person.id, request, now).await? {
        CardGate::Card => {
            let detail = serde_json::json!({"client_id": request.system(), "next": "card"});
            record_password_step(tx, now, account, Outcome::Success, detail, attempt.source).await?;
            Ok(Step::Card { person_id: account.person.id.clone() })
        }
        CardGate::Replacement => {
            let detail = serde_json::json!({
                "reason": "card stopped: a replacement card is needed", "client_id": request.system()
            });
            record_password_step(tx, now, account, Outcome::Failure, detail, attempt.source).await?;
            let ticket = replacement::issue_ticket(tx, now, &account.person.id, request_id).await?;
            Ok(Step::Replacement { ticket })
        }
        CardGate::Pass => {
            end_previous_session(tx, attempt.previous_session, &Actor::Person(account.person.id.clone()), now).await?;
            let new = sessions::NewSession {
                person_id: &account.person.id,
                account_id: &account.account_id,
                amr: &["pwd"],
                acr: crate::oidc::claims::ACR_PASSWORD,
                authenticator_id: None,
                source_ip: Some(attempt.source),
            };
            let (session, cookie) = sessions::create(tx, &app.config.session, now, new).await?;
            let detail = serde_json::json!({"sid": session.id, "client_id": request.system()});
            record_password_step(tx, now, account, Outcome::Success, detail, attempt.source).await?;
            Ok(Step::LoggedIn { session, cookie, expires_in_days: None })
        }
    }
}

/// What must follow a correct password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardGate {
    /// Nothing: the login completes.
    Pass,
    /// The person's card: the policy asks for it always, or the consuming system asked.
    Card,
    /// A replacement card: the person's card was stopped, and a stopped card never leaves its
    /// holder with the password alone (unless a temporary exception was granted).
    Replacement,
}

/// The card gate of every password login.
pub async fn card_gate(
    app: &App,
    tx: &mut Tx,
    person_id: &str,
    request: &AuthorizationRequest,
    now: UnixTime,
) -> Result<CardGate, crate::Error> {
    if app.webauthn.is_none() {
        return Ok(CardGate::Pass);
    }
    let require = app.config.webauthn.require_card_when_enrolled;
    Ok(match replacement::card_state(&mut **tx, person_id).await? {
        CardState::Active if require || request.needs_card() => CardGate::Card,
        CardState::Stopped if require => match replacement::live_exception(tx, person_id, now).await? {
            Some(exception) => {
                Event::success(
                    &Actor::Person(person_id.to_owned()),
                    "login.password_only_exception",
                    format!("person:{person_id}"),
                    serde_json::json!({"exception": exception, "client_id": request.system()}),
                )
                .record(tx, now)
                .await?;
                CardGate::Pass
            }
            None => CardGate::Replacement,
        },
        _ => CardGate::Pass,
    })
}

/// A new login replaces the browser's session: the earlier one (whoever's it was, idle or not)
/// ends through the revocation module, with its tokens and the logout notices it owes, so that
/// its cookie can obtain nothing more.
pub async fn end_previous_session(
    tx: &mut Tx,
    previous_cookie: Option<&str>,
    actor: &Actor,
    now: UnixTime,
) -> Result<(), crate::Error> {
    let Some(cookie) = previous_cookie else { return Ok(()) };
    if let Some(id) = sessions::id_of_cookie(&mut **tx, cookie).await? {
        revocation::revoke(tx, actor, now, Target::Session(&id), "replaced by a new login in the same browser").await?;
    }
    Ok(())
}

/// The audit event of a step of a password login for a known account.
async fn record_password_step(
    tx: &mut Tx,
    now: UnixTime,
    account: &LoginAccount,
    outcome: Outcome,
    detail: serde_json::Value,
    source: &str,
) -> Result<(), sqlx::Error> {
    let event = Event {
        actor: &Actor::Person(account.person.id.clone()),
        action: "login.password",
        target: format!("account:{}", account.account_id),
        outcome,
        detail,
        source_ip: Some(source.to_owned()),
    };
    audit::record(tx, now, event).await
}

/// Counts and audits a failed attempt; the outcome is the same whatever the reason.
async fn record_failure(
    app: &App,
    account: Option<&LoginAccount>,
    attempt: &Attempt<'_>,
    now: UnixTime,
    reason: &str,
) -> Result<(), crate::Error> {
    let (config, alerts) = (&app.config.password, &app.config.alerts);
    let mut tx = app.store.begin().await?;
    lockout::source_failed(&mut tx, config, alerts, attempt.source, now).await?;
    let mut locked_until = None;
    if let Some(account) = account.filter(|a| a.locked_until.is_none_or(|until| until <= now)) {
        locked_until = lockout::account_failed(&mut tx, config, alerts, &account.account_id, now).await?;
    }
    let login_id =
        LoginId::parse(attempt.login_id).map(|l| l.as_str().to_owned()).unwrap_or_else(|_| "(invalid)".into());
    Event::failure(
        &Actor::Anonymous,
        "login.password",
        format!("login_id:{login_id}"),
        serde_json::json!({"reason": reason, "locked_until": locked_until}),
    )
    .from_source(Some(attempt.source.to_owned()))
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok(())
}
