//! Authorization codes: random, stored only as a hash, short-lived, redeemable once. The
//! redemption is one atomic UPDATE, so a code is single-use even across nodes.

use sqlx::Row;

use crate::clock::UnixTime;
use crate::crypto;
use crate::store::Tx;

use super::claims::AuthContext;

/// What an authorization code was issued for.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub id: String,
    pub client_id: String,
    pub person_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    /// The OIDC claims request, as stored JSON.
    pub claims: Option<String>,
    pub expires_at: UnixTime,
    pub auth: AuthContext,
}

pub struct NewCode<'a> {
    pub client_id: &'a str,
    pub person_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub code_challenge: Option<&'a str>,
    pub claims: Option<&'a str>,
    pub auth: &'a AuthContext,
}

/// Stores a new code and returns it; only its hash is kept.
pub async fn issue(tx: &mut Tx, now: UnixTime, ttl: i64, new: NewCode<'_>) -> Result<String, sqlx::Error> {
    let code = crypto::random_token(32);
    sqlx::query(
        "INSERT INTO auth_codes (id, code_hash, client_id, session_id, person_id, redirect_uri, scope, nonce,
             code_challenge, auth_time, created_at, expires_at, claims)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(crypto::sha256_hex(&code))
    .bind(new.client_id)
    .bind(&new.auth.session_id)
    .bind(new.person_id)
    .bind(new.redirect_uri)
    .bind(new.scope)
    .bind(new.nonce)
    .bind(new.code_challenge)
    .bind(new.auth.auth_time)
    .bind(now)
    .bind(now + ttl)
    .bind(new.claims)
    .execute(&mut **tx)
    .await?;
    Ok(code)
}

pub enum Redemption {
    /// First use of this code (it may still be expired: the caller checks `expires_at`).
    First(Box<CodeGrant>),
    /// The code was already used: tokens issued from it must be revoked.
    Replayed {
        code_id: String,
        client_id: String,
    },
    Unknown,
}

/// Marks the code used and returns what it was for. Every attempt uses the code up, so a
/// wrong verifier or client cannot be retried against the same code.
pub async fn redeem(tx: &mut Tx, now: UnixTime, code: &str) -> Result<Redemption, sqlx::Error> {
    let hash = crypto::sha256_hex(code);
    // The session's acr and amr as they are now (a step-up since the code raised them) come
    // back with the claim, in the same statement.
    let row = sqlx::query(
        "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL
         RETURNING id, client_id, person_id, session_id, redirect_uri, scope, nonce, code_challenge, claims, auth_time,
             expires_at,
             (SELECT s.acr FROM sessions s WHERE s.id = auth_codes.session_id) AS session_acr,
             (SELECT s.amr FROM sessions s WHERE s.id = auth_codes.session_id) AS session_amr",
    )
    .bind(now)
    .bind(&hash)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = row {
        let session_id: String = row.try_get("session_id")?;
        let acr: String = row.try_get::<Option<String>, _>("session_acr")?.unwrap_or_default();
        let amr: String = row.try_get::<Option<String>, _>("session_amr")?.unwrap_or_default();
        return Ok(Redemption::First(Box::new(CodeGrant {
            id: row.try_get("id")?,
            client_id: row.try_get("client_id")?,
            person_id: row.try_get("person_id")?,
            redirect_uri: row.try_get("redirect_uri")?,
            scope: row.try_get("scope")?,
            nonce: row.try_get("nonce")?,
            code_challenge: row.try_get("code_challenge")?,
            claims: row.try_get("claims")?,
            expires_at: row.try_get("expires_at")?,
            auth: AuthContext {
                session_id,
                auth_time: row.try_get("auth_time")?,
                acr,
                amr: amr.split_whitespace().map(str::to_owned).collect(),
            },
        })));
    }
    let used = sqlx::query("SELECT id, client_id FROM auth_codes WHERE code_hash = $1")
        .bind(&hash)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match used {
        Some(row) => Redemption::Replayed { code_id: row.try_get("id")?, client_id: row.try_get("client_id")? },
        None => Redemption::Unknown,
    })
}

/// RFC 7636 §4.1: a verifier is 43–128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.4.1 (S256): BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    crypto::ct_eq(crypto::sha256_b64url(verifier.as_bytes()).as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_verifier(verifier));
        assert!(verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
    }
}
