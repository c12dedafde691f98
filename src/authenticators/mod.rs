//! IC cards, FIDO security keys and passkeys (R13–R15, R22), through WebAuthn (webauthn-rs).
//!
//! Each authenticator belongs to one person and carries a label, the card's management number,
//! who enrolled it and when, and when it was last used. The first one is enrolled with a
//! one-time enrollment code from a manager or the counter; more can be added by a person who
//! logged in with a card they already hold. A lost card is reported through the hotline (or by
//! its holder) and revoked through the revocation module, which ends everything obtained with
//! it. Ceremonies (enroll, login) are kept in the database between start and finish so that
//! any node can finish what another started.

pub mod ceremony;
pub mod loss;
pub mod replacement;

use serde::Serialize;
use sqlx::Row;
use webauthn_rs::prelude::{AttestationCaList, AttestationCaListBuilder, Passkey, Url, Webauthn, WebauthnBuilder};

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::Config;
use crate::crypto;
use crate::store::Tx;

/// The authentication context of a login with a hardware authenticator (the password one is
/// `oidc::claims::ACR_PASSWORD`).
pub const ACR_HWK: &str = "urn:sekimori:acr:hwk";

/// RFC 8176 methods: the password, then the card (`hwk`, proof of a hardware key); with the
/// card's own user verification (PIN or biometric) a second factor, `mfa`.
pub const AMR_PASSWORD_AND_CARD: [&str; 3] = ["pwd", "hwk", "mfa"];
pub const AMR_CARD_WITH_VERIFICATION: [&str; 2] = ["hwk", "mfa"];

/// Builds the WebAuthn relying party from the issuer. None (and a warning) when the issuer's
/// host is an IP address or the configured rp_id does not fit it: browsers refuse WebAuthn there.
pub fn relying_party(config: &Config) -> Option<Webauthn> {
    let origin = Url::parse(&config.issuer).ok()?;
    let Some(rp_id) = config.webauthn.rp_id.clone().or_else(|| origin.domain().map(str::to_owned)) else {
        tracing::warn!(
            issuer = %config.issuer,
            "IC cards and security keys are off: WebAuthn needs the issuer to be a domain name \
             (e.g. https://sso.city.example.lg.jp, or http://localhost:8080 to try it), not an IP address"
        );
        return None;
    };
    let built =
        WebauthnBuilder::new(&rp_id, &origin).map(|b| b.rp_name(&config.webauthn.rp_name)).and_then(|b| b.build());
    match built {
        Ok(webauthn) => Some(webauthn),
        Err(e) => {
            tracing::warn!(error = %e, issuer = %config.issuer, "WebAuthn is off: the issuer has no usable domain");
            None
        }
    }
}

/// The attestation CAs and AAGUIDs of the card models the organisation accepts, or None when
/// any authenticator may be enrolled.
pub fn attestation_ca_list(config: &Config) -> Result<Option<AttestationCaList>, String> {
    if config.webauthn.attestation.is_empty() {
        return Ok(None);
    }
    let mut builder = AttestationCaListBuilder::new();
    for model in &config.webauthn.attestation {
        let pem = std::fs::read(&model.ca_pem_file)
            .map_err(|e| format!("webauthn.attestation: cannot read {}: {e}", model.ca_pem_file))?;
        builder
            .insert_device_pem(&pem, model.aaguid, model.description.clone(), Default::default())
            .map_err(|e| format!("webauthn.attestation: {} is not a PEM certificate: {e}", model.ca_pem_file))?;
    }
    Ok(Some(builder.build()))
}

/// An authenticator as people, the hotline and the API see it (never its key material).
#[derive(Debug, Clone, Serialize)]
pub struct Authenticator {
    pub id: String,
    pub person_id: String,
    pub label: String,
    pub management_number: Option<String>,
    pub enrolled_by: String,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub status: String,
    pub revoked_at: Option<UnixTime>,
    pub revoked_reason: Option<String>,
    /// The reference number of the loss report that stopped it, as said to the caller.
    pub loss_reference: Option<String>,
}

impl Authenticator {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

const COLUMNS: &str = "id, person_id, label, management_number, enrolled_by, created_at, last_used_at, status, \
     revoked_at, revoked_reason, loss_reference";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Authenticator, sqlx::Error> {
    Ok(Authenticator {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        label: row.try_get("label")?,
        management_number: row.try_get("management_number")?,
        enrolled_by: row.try_get("enrolled_by")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        status: row.try_get("status")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
        loss_reference: row.try_get("loss_reference")?,
    })
}

/// Every authenticator of a person, newest first.
pub async fn list_for_person<'e, E>(executor: E, person_id: &str) -> Result<Vec<Authenticator>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM authenticators WHERE person_id = $1 ORDER BY created_at DESC, id"))
            .bind(person_id)
            .fetch_all(executor)
            .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get<'e, E>(executor: E, id: &str) -> Result<Option<Authenticator>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM authenticators WHERE id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The active credentials of a person, with their ids, for a login ceremony.
pub async fn active_credentials<'e, E>(executor: E, person_id: &str) -> Result<Vec<(String, Passkey)>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT id, credential FROM authenticators WHERE person_id = $1 AND status = 'active'")
        .bind(person_id)
        .fetch_all(executor)
        .await?;
    let mut credentials = Vec::new();
    for row in rows {
        let id: String = row.try_get("id")?;
        let text: String = row.try_get("credential")?;
        match serde_json::from_str::<Passkey>(&text) {
            Ok(passkey) => credentials.push((id, passkey)),
            Err(e) => tracing::error!(authenticator = %id, error = %e, "stored credential cannot be read; skipped"),
        }
    }
    Ok(credentials)
}

/// Whether the person holds an active authenticator.
pub async fn has_active<'e, E>(executor: E, person_id: &str) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT 1 AS one FROM authenticators WHERE person_id = $1 AND status = 'active' LIMIT 1")
        .bind(person_id)
        .fetch_optional(executor)
        .await?;
    Ok(row.is_some())
}

/// A one-time enrollment code for `person_id`, shown once; only its hash is kept.
pub async fn issue_enrollment_code(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    ttl: i64,
    person_id: &str,
) -> Result<(String, UnixTime), sqlx::Error> {
    // 20 characters of base32 without look-alikes: easy to read out over the counter, 100 bits.
    let code = crypto::random_code(20);
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO enrollment_codes (id, code_hash, person_id, issued_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(crypto::sha256_hex(&normalise_code(&code)))
    .bind(person_id)
    .bind(actor.as_text())
    .bind(now)
    .bind(now + ttl)
    .execute(&mut **tx)
    .await?;
    Event::success(
        actor,
        "authenticator.enrollment_code",
        format!("person:{person_id}"),
        serde_json::json!({"code_id": id, "expires_at": now + ttl}),
    )
    .record(tx, now)
    .await?;
    Ok((code, now + ttl))
}

/// A card's management number in the one form it is stored and compared in: NFKC (full-width
/// digits and letters as ASCII) and upper case, so that `c-0100`, `C-0100` and `Ｃ－０１００`
/// are the same card and cannot be enrolled twice.
pub fn normalise_management_number(number: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    number.trim().nfkc().collect::<String>().to_uppercase()
}

/// Codes are read out and typed in: case, spaces and hyphens do not matter.
pub fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// The id of a usable enrollment code of `person_id` matching `code`.
pub async fn find_enrollment_code(
    tx: &mut Tx,
    now: UnixTime,
    person_id: &str,
    code: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id FROM enrollment_codes WHERE code_hash = $1 AND person_id = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(crypto::sha256_hex(&normalise_code(code)))
    .bind(person_id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.try_get("id")).transpose()
}
