//! The `access_tokens` table: a row for every access token issued for a person, so that
//! introspection and userinfo can check its live state and the revocation module can end it
//! with the session, grant or person it hangs off. Rows are written here only; revocation
//! marks them, the sweeper removes expired ones.
//!
//! A consuming system's own tokens (client_credentials) have no row: nothing but the system
//! itself stands behind them. Their jti carries the system's token generation
//! (`<random>.<generation>`), which `revocation` raises to end all of them at once; one of them
//! revoked alone (RFC 7009) is listed in `revoked_access_tokens` until it expires.

use crate::clock::UnixTime;
use crate::store::Tx;

/// A jti for a system's own token, issued in its token generation `generation`.
pub fn service_jti(generation: i64) -> String {
    format!("{}.{generation}", super::claims::new_jti())
}

/// The token generation a system's own token was issued in; None for a person's token (whose
/// jti is a UUID only, which has no `.`).
pub fn service_generation(jti: &str) -> Option<i64> {
    let (random, generation) = jti.rsplit_once('.')?;
    if random.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    generation.parse().ok()
}

/// An SQL expression counting the entries of `revoked_access_tokens` for the jti `jti` (a
/// column or parameter): 0 while that system's token is not revoked on its own.
pub fn revoked_sql(jti: &str) -> String {
    format!("(SELECT COUNT(*) FROM revoked_access_tokens x WHERE x.jti = {jti})")
}

/// An access token just signed.
pub struct NewAccessToken<'a> {
    pub jti: &'a str,
    pub client_id: &'a str,
    pub person_id: &'a str,
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

/// The columns of a row as [`bind`] gives their values, for an INSERT here or in a statement
/// that writes the row with others (`refresh::rotate_and_issue`).
pub const COLUMNS: &str =
    "jti, client_id, person_id, session_id, code_id, family_id, scope, claims, issued_at, expires_at";

/// Binds the values of [`COLUMNS`] for `token`, in order, after those `query` has.
pub fn bind<'q>(query: crate::store::AnyQuery<'q>, token: &NewAccessToken<'q>) -> crate::store::AnyQuery<'q> {
    query
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
}

pub async fn record(tx: &mut Tx, token: NewAccessToken<'_>) -> Result<(), sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("INSERT INTO access_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
    });
    bind(sqlx::query(&SQL), &token).execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_jti_carries_its_generation_and_a_person_jti_none() {
        let jti = service_jti(7);
        assert_eq!(service_generation(&jti), Some(7));
        assert_eq!(service_generation(&service_jti(0)), Some(0));
        assert_eq!(service_generation(&super::super::claims::new_jti()), None);
        for odd in ["", ".", ".3", "abc.", "abc.-1", "abc.+1", "abc.1x", "abc.99999999999999999999"] {
            assert_eq!(service_generation(odd), None, "{odd}");
        }
    }
}
