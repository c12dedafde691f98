//! The `access_tokens` table: a row for every access token issued, so that introspection and
//! userinfo can check its live state and the revocation module can end it. Rows are written
//! here only; revocation marks them, the sweeper removes expired ones.

use crate::clock::UnixTime;
use crate::store::Tx;

/// An access token just signed.
pub struct NewAccessToken<'a> {
    pub jti: &'a str,
    pub client_id: &'a str,
    /// None for a client's own token (client_credentials).
    pub person_id: Option<&'a str>,
    /// The browser session it ends with, if any.
    pub session_id: Option<&'a str>,
    pub code_id: Option<&'a str>,
    /// The grant (refresh-token family) it came from.
    pub family_id: Option<&'a str>,
    pub scope: &'a str,
    pub claims: Option<&'a str>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

pub async fn record(tx: &mut Tx, token: NewAccessToken<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access_tokens (jti, client_id, person_id, session_id, code_id, family_id, scope, claims,
             issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(token.jti)
    .bind(token.client_id)
    .bind(token.person_id)
    .bind(token.session_id)
    .bind(token.code_id)
    .bind(token.family_id)
    .bind(token.scope)
    .bind(token.claims)
    .bind(token.issued_at)
    .bind(token.expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
