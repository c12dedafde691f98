//! WebAuthn ceremonies: enrollment, and login with a card (as the second factor after the
//! password, passwordless with a discoverable credential, or a step-up of a password session).
//!
//! A ceremony is started by the server, which keeps webauthn-rs's state in the database under
//! a random token (stored as a hash) and hands the browser the options; the browser's answer
//! comes back with the token, which is used up at once, whatever the outcome.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use webauthn_rs::prelude::{
    AttestedPasskeyRegistration, CreationChallengeResponse, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Uuid,
};

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::crypto;
use crate::directory;
use crate::sessions::Session;
use crate::store::Tx;
use crate::App;

use super::{active_credentials, find_enrollment_code, Authenticator};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Register,
    SecondFactor,
    Passwordless,
    StepUp,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::SecondFactor => "second_factor",
            Kind::Passwordless => "passwordless",
            Kind::StepUp => "step_up",
        }
    }
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "register" => Kind::Register,
            "second_factor" => Kind::SecondFactor,
            "passwordless" => Kind::Passwordless,
            "step_up" => Kind::StepUp,
            _ => return None,
        })
    }
}

/// Why a ceremony could not start or finish. Each maps to a message for the person.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("WebAuthn is not available on this server")]
    Unavailable,
    #[error("enrolling needs a valid enrollment code, or a login with a card already held")]
    NotEntitled,
    #[error("the ceremony is unknown, used or expired")]
    Expired,
    #[error("the authenticator's answer was not accepted")]
    Rejected,
    #[error("this card is already enrolled")]
    AlreadyEnrolled,
    #[error("the label or management number is not acceptable")]
    BadInput,
    #[error("no usable card is enrolled")]
    NoCard,
    #[error(transparent)]
    Internal(#[from] crate::Error),
}

impl From<sqlx::Error> for CardError {
    fn from(e: sqlx::Error) -> Self {
        CardError::Internal(e.into())
    }
}

/// What an enrollment waits for: any authenticator, or one of the attested card models.
#[derive(Serialize, Deserialize)]
enum RegistrationState {
    Any(PasskeyRegistration),
    Attested(AttestedPasskeyRegistration),
}

/// A stored ceremony.
#[derive(Debug, Clone)]
pub struct Ceremony {
    pub id: String,
    pub kind: Kind,
    state: String,
    pub person_id: Option<String>,
    pub session_id: Option<String>,
    pub authorization_request_id: Option<String>,
    enrollment_code_id: Option<String>,
    label: Option<String>,
    management_number: Option<String>,
}

struct NewCeremony<'a> {
    kind: Kind,
    state: String,
    person_id: Option<&'a str>,
    session_id: Option<&'a str>,
    authorization_request_id: Option<&'a str>,
    enrollment_code_id: Option<&'a str>,
    label: Option<&'a str>,
    management_number: Option<&'a str>,
}

async fn save(app: &App, tx: &mut Tx, new: NewCeremony<'_>, now: UnixTime) -> Result<String, sqlx::Error> {
    let token = crypto::random_token(32);
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (id, token_hash, kind, state, person_id, session_id,
             authorization_request_id, enrollment_code_id, label, management_number, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(crypto::sha256_hex(&token))
    .bind(new.kind.as_str())
    .bind(new.state)
    .bind(new.person_id)
    .bind(new.session_id)
    .bind(new.authorization_request_id)
    .bind(new.enrollment_code_id)
    .bind(new.label)
    .bind(new.management_number)
    .bind(now)
    .bind(now + app.config.webauthn.ceremony_ttl)
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

/// Uses the ceremony up (a second answer finds nothing) and returns it.
async fn take(tx: &mut Tx, now: UnixTime, token: &str) -> Result<Option<Ceremony>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE webauthn_ceremonies SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
         RETURNING id, kind, state, person_id, session_id, authorization_request_id, enrollment_code_id, label,
             management_number",
    )
    .bind(now)
    .bind(crypto::sha256_hex(token))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let kind: String = row.try_get("kind")?;
    let Some(kind) = Kind::parse(&kind) else { return Ok(None) };
    Ok(Some(Ceremony {
        id: row.try_get("id")?,
        kind,
        state: row.try_get("state")?,
        person_id: row.try_get("person_id")?,
        session_id: row.try_get("session_id")?,
        authorization_request_id: row.try_get("authorization_request_id")?,
        enrollment_code_id: row.try_get("enrollment_code_id")?,
        label: row.try_get("label")?,
        management_number: row.try_get("management_number")?,
    }))
}

fn state_text<T: Serialize>(state: &T) -> Result<String, CardError> {
    serde_json::to_string(state).map_err(|_| CardError::Rejected)
}

fn user_uuid(person_id: &str) -> Result<Uuid, CardError> {
    Uuid::parse_str(person_id).map_err(|_| CardError::Rejected)
}

/// Label and management number as typed: trimmed, bounded, printable.
fn clean(value: &str, max: usize) -> Result<String, CardError> {
    let value = value.trim();
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(CardError::BadInput);
    }
    Ok(value.to_owned())
}

/// Starts enrolling a card for the person of `session`: with an enrollment code, or because the
/// session was opened with a card the person still holds.
pub async fn start_registration(
    app: &App,
    session: &Session,
    label: &str,
    management_number: &str,
    code: Option<&str>,
    now: UnixTime,
) -> Result<(String, CreationChallengeResponse), CardError> {
    let enrollee = Enrollee { person_id: &session.person_id, session: Some(session), authorization_request_id: None };
    start_enrollment(app, enrollee, label, management_number, code, now).await
}

/// Starts enrolling a replacement card in the middle of a login (after the right password, for a
/// person whose card was stopped): only with an enrollment code. When it is finished, the new
/// card completes the login of `authorization_request_id`.
pub async fn start_replacement(
    app: &App,
    person_id: &str,
    authorization_request_id: &str,
    label: &str,
    management_number: &str,
    code: &str,
    now: UnixTime,
) -> Result<(String, CreationChallengeResponse), CardError> {
    if code.trim().is_empty() {
        return Err(CardError::NotEntitled);
    }
    let enrollee = Enrollee { person_id, session: None, authorization_request_id: Some(authorization_request_id) };
    start_enrollment(app, enrollee, label, management_number, Some(code), now).await
}

/// Whose card is being enrolled, and in what context.
struct Enrollee<'a> {
    person_id: &'a str,
    /// The person's session (self-service enrollment); None in the middle of a login.
    session: Option<&'a Session>,
    authorization_request_id: Option<&'a str>,
}

async fn start_enrollment(
    app: &App,
    enrollee: Enrollee<'_>,
    label: &str,
    management_number: &str,
    code: Option<&str>,
    now: UnixTime,
) -> Result<(String, CreationChallengeResponse), CardError> {
    let webauthn = app.webauthn.as_ref().ok_or(CardError::Unavailable)?;
    let label = clean(label, 64)?;
    if label.is_empty() {
        return Err(CardError::BadInput);
    }
    let management_number = super::normalise_management_number(&clean(management_number, 64)?);
    let mut tx = app.store.begin().await?;
    let code_id = match code.filter(|c| !c.trim().is_empty()) {
        Some(code) => {
            Some(find_enrollment_code(&mut tx, now, enrollee.person_id, code).await?.ok_or(CardError::NotEntitled)?)
        }
        None => None,
    };
    let by_card = match enrollee.session.and_then(|s| s.authenticator_id.as_deref()) {
        Some(id) => super::get(&mut *tx, id).await?.is_some_and(|a| a.is_active() && a.person_id == enrollee.person_id),
        None => false,
    };
    if code_id.is_none() && !by_card {
        return Err(CardError::NotEntitled);
    }
    let person = directory::get_person(&mut *tx, enrollee.person_id)
        .await
        .map_err(|e| CardError::Internal(e.into()))?
        .ok_or(CardError::NotEntitled)?;
    let exclude: Vec<_> =
        active_credentials(&mut *tx, &person.id).await?.iter().map(|(_, p)| p.cred_id().clone()).collect();
    let user = user_uuid(&person.id)?;
    let (mut options, state) = match &app.attestation {
        None => webauthn
            .start_passkey_registration(user, &person.employee_number, &person.full_name(), Some(exclude))
            .map(|(o, s)| (o, RegistrationState::Any(s))),
        Some(models) => webauthn
            .start_attested_passkey_registration(
                user,
                &person.employee_number,
                &person.full_name(),
                Some(exclude),
                models.clone(),
                None,
            )
            .map(|(o, s)| (o, RegistrationState::Attested(s))),
    }
    .map_err(|_| CardError::Rejected)?;
    // Ask for a discoverable credential where the card can hold one, so that it can also log in
    // without the password (the card's PIN is still required). Cards that cannot are enrolled
    // all the same and serve as the second factor.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Preferred);
    }
    let token = save(
        app,
        &mut tx,
        NewCeremony {
            kind: Kind::Register,
            state: state_text(&state)?,
            person_id: Some(&person.id),
            session_id: enrollee.session.map(|s| s.id.as_str()),
            authorization_request_id: enrollee.authorization_request_id,
            enrollment_code_id: code_id.as_deref(),
            label: Some(&label),
            management_number: (!management_number.is_empty()).then_some(management_number.as_str()),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((token, options))
}

/// Finishes enrolling: the card is the person's from now on, and the code is used up.
/// An enrolled card, and the login it completes when it replaced a stopped one.
pub struct Enrolled {
    pub authenticator: Authenticator,
    /// Set for a replacement enrolled in the middle of a login.
    pub authorization_request_id: Option<String>,
}

/// Finishes enrolling: the card is the person's from now on, and the code is used up. A
/// self-service enrollment belongs to `session`; a replacement started in a login (no session
/// yet) is identified by its ceremony token alone, which only that browser was given.
pub async fn finish_registration(
    app: &App,
    session: Option<&Session>,
    token: &str,
    credential: &RegisterPublicKeyCredential,
    now: UnixTime,
) -> Result<Enrolled, CardError> {
    let webauthn = app.webauthn.as_ref().ok_or(CardError::Unavailable)?;
    let mut tx = app.store.begin().await?;
    let ceremony = take(&mut tx, now, token).await?.ok_or(CardError::Expired)?;
    let belongs = match (&ceremony.session_id, session) {
        // The ceremony belongs to this browser's session and nobody else's.
        (Some(id), Some(session)) => *id == session.id,
        // A replacement: started after the right password, with an enrollment code.
        (None, _) => ceremony.authorization_request_id.is_some() && ceremony.enrollment_code_id.is_some(),
        (Some(_), None) => false,
    };
    let person_id = ceremony.person_id.clone().filter(|_| belongs && ceremony.kind == Kind::Register);
    let Some(person_id) = person_id else {
        tx.commit().await?;
        return Err(CardError::Expired);
    };
    let state: RegistrationState = serde_json::from_str(&ceremony.state).map_err(|_| CardError::Expired)?;
    let verified = match &state {
        RegistrationState::Any(state) => webauthn.finish_passkey_registration(credential, state),
        // The chain must lead to one of the organisation's CAs, with one of its AAGUIDs.
        RegistrationState::Attested(state) => {
            webauthn.finish_attested_passkey_registration(credential, state).map(Passkey::from)
        }
    };
    let passkey = match verified {
        Ok(passkey) => passkey,
        Err(e) => {
            tracing::info!(error = %e, "enrollment refused by WebAuthn verification");
            tx.commit().await?;
            return Err(CardError::Rejected);
        }
    };
    if let Some(code_id) = &ceremony.enrollment_code_id {
        let used = sqlx::query(
            "UPDATE enrollment_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(code_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            tx.commit().await?;
            return Err(CardError::NotEntitled);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let credential_id = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, passkey.cred_id());
    let actor = Actor::Person(person_id.clone());
    let inserted = sqlx::query(
        "INSERT INTO authenticators (id, person_id, credential_id, credential, label, management_number, enrolled_by,
             enrollment_code_id, created_at, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active')",
    )
    .bind(&id)
    .bind(&person_id)
    .bind(&credential_id)
    .bind(state_text(&passkey)?)
    .bind(ceremony.label.as_deref().unwrap_or(""))
    .bind(ceremony.management_number.as_deref())
    .bind(actor.as_text())
    .bind(ceremony.enrollment_code_id.as_deref())
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        if crate::store::is_unique_violation(&e) {
            return Err(CardError::AlreadyEnrolled);
        }
        return Err(e.into());
    }
    Event::success(
        &actor,
        "authenticator.enroll",
        format!("authenticator:{id}"),
        serde_json::json!({
            "person": person_id,
            "label": ceremony.label,
            "management_number": ceremony.management_number,
            "enrollment_code": ceremony.enrollment_code_id,
            "by_existing_card": ceremony.enrollment_code_id.is_none(),
            "replacement_during_login": ceremony.session_id.is_none(),
        }),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    let authenticator = super::get(app.store.pool(), &id).await?.ok_or(CardError::Expired)?;
    let authorization_request_id = ceremony.session_id.is_none().then_some(ceremony.authorization_request_id).flatten();
    Ok(Enrolled { authenticator, authorization_request_id })
}

/// Starts a card login. `person_id` is known for the second factor and the step-up (the
/// person's own cards are allowed); for a passwordless login the card says who it is.
pub async fn start_login(
    app: &App,
    kind: Kind,
    person_id: Option<&str>,
    session_id: Option<&str>,
    authorization_request_id: Option<&str>,
    now: UnixTime,
) -> Result<(String, RequestChallengeResponse), CardError> {
    let webauthn = app.webauthn.as_ref().ok_or(CardError::Unavailable)?;
    let mut tx = app.store.begin().await?;
    let (options, state) = match (kind, person_id) {
        (Kind::Passwordless, _) => {
            let (mut options, state) = webauthn.start_discoverable_authentication().map_err(|_| CardError::Rejected)?;
            // A button press, not autofill: the browser should ask at once.
            options.mediation = None;
            (options, state_text(&state)?)
        }
        (Kind::SecondFactor | Kind::StepUp, Some(person_id)) => {
            let credentials: Vec<_> =
                active_credentials(&mut *tx, person_id).await?.into_iter().map(|(_, p)| p).collect();
            if credentials.is_empty() {
                return Err(CardError::NoCard);
            }
            let (options, state) =
                webauthn.start_passkey_authentication(&credentials).map_err(|_| CardError::Rejected)?;
            (options, state_text(&state)?)
        }
        _ => return Err(CardError::Rejected),
    };
    let token = save(
        app,
        &mut tx,
        NewCeremony {
            kind,
            state,
            person_id,
            session_id,
            authorization_request_id,
            enrollment_code_id: None,
            label: None,
            management_number: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((token, options))
}

/// A card login that passed: who, with which card, for which ceremony.
#[derive(Debug, Clone)]
pub struct CardLogin {
    pub ceremony: Ceremony,
    pub person_id: String,
    pub authenticator_id: String,
}

/// Verifies the card's answer, records the use, and leaves the transaction open for the
/// caller to open (or step up) the session in it. The card must still be active in this
/// transaction: a card the hotline revoked a moment ago is refused.
pub async fn finish_login(
    app: &App,
    tx: &mut Tx,
    token: &str,
    credential: &PublicKeyCredential,
    now: UnixTime,
) -> Result<CardLogin, CardError> {
    let webauthn = app.webauthn.as_ref().ok_or(CardError::Unavailable)?;
    let ceremony = take(tx, now, token).await?.ok_or(CardError::Expired)?;
    let credential_id =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, credential.get_credential_id());
    let row = sqlx::query(
        "SELECT id, person_id, credential FROM authenticators WHERE credential_id = $1 AND status = 'active'",
    )
    .bind(&credential_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Err(CardError::Rejected) };
    let authenticator_id: String = row.try_get("id")?;
    let person_id: String = row.try_get("person_id")?;
    let stored: String = row.try_get("credential")?;
    let mut passkey: Passkey = serde_json::from_str(&stored).map_err(|_| CardError::Rejected)?;
    let result = match ceremony.kind {
        Kind::Passwordless => {
            let (user, _) =
                webauthn.identify_discoverable_authentication(credential).map_err(|_| CardError::Rejected)?;
            if user != user_uuid(&person_id)? {
                return Err(CardError::Rejected);
            }
            let state: DiscoverableAuthentication =
                serde_json::from_str(&ceremony.state).map_err(|_| CardError::Expired)?;
            webauthn.finish_discoverable_authentication(credential, state, &[DiscoverableKey::from(&passkey)])
        }
        Kind::SecondFactor | Kind::StepUp => {
            if ceremony.person_id.as_deref() != Some(person_id.as_str()) {
                return Err(CardError::Rejected);
            }
            let state: PasskeyAuthentication = serde_json::from_str(&ceremony.state).map_err(|_| CardError::Expired)?;
            webauthn.finish_passkey_authentication(credential, &state)
        }
        Kind::Register => return Err(CardError::Expired),
    };
    let result = result.map_err(|e| {
        tracing::info!(error = %e, "card login refused by WebAuthn verification");
        CardError::Rejected
    })?;
    passkey.update_credential(&result);
    // The row lock of this UPDATE orders us against a concurrent hotline report.
    let updated =
        sqlx::query("UPDATE authenticators SET last_used_at = $1, credential = $2 WHERE id = $3 AND status = 'active'")
            .bind(now)
            .bind(state_text(&passkey)?)
            .bind(&authenticator_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    if updated != 1 {
        return Err(CardError::Rejected);
    }
    Ok(CardLogin { ceremony, person_id, authenticator_id })
}

/// Records a refused card login (its own transaction: the refused one is rolled back).
pub async fn record_refusal(
    app: &App,
    reason: &CardError,
    source_ip: Option<String>,
    now: UnixTime,
) -> Result<(), crate::Error> {
    crate::metrics::login("card", "refused");
    let mut tx = app.store.begin().await?;
    Event::failure(
        &Actor::Anonymous,
        "login.card",
        "authenticator:unknown",
        serde_json::json!({"reason": reason.to_string()}),
    )
    .from_source(source_ip)
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok(())
}
