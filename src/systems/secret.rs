//! R12: A confidential client's secret: checked at client authentication, rotated with a grace
//! period. During the grace period the secret that was replaced still authenticates, so that a
//! consuming system run by several servers can take the new one on each in turn without an
//! outage; a grace of zero ends the old secret at once (it leaked).
//!
//! At most two secrets live: a rotation during another's grace period ends the older one.

use serde::Serialize;
use subtle::{Choice, ConstantTimeEq};

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::crypto;
use crate::store::Tx;

use super::{get_locked, rules, Client, ClientError, ClientType};

/// How long the replaced secret still authenticates when the rotation does not say.
pub const DEFAULT_SECRET_GRACE: i64 = 86_400;
/// The longest grace period: two secrets for a month at most.
pub const MAX_SECRET_GRACE: i64 = 30 * 86_400;

/// A new secret, shown once.
#[derive(Debug, Serialize)]
pub struct RotatedSecret {
    pub client_id: String,
    /// Shown only now; only its hash is stored.
    pub client_secret: String,
    /// Until when the replaced secret still authenticates; None when it ended at once.
    pub previous_secret_expires_at: Option<UnixTime>,
}

/// Gives `client_id` a new secret; the current one keeps authenticating for `grace_seconds`.
pub async fn rotate_secret(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    client_id: &str,
    grace_seconds: i64,
) -> Result<RotatedSecret, ClientError> {
    if !(0..=MAX_SECRET_GRACE).contains(&grace_seconds) {
        return Err(rules::invalid("grace_seconds", "must be between 0 and 2592000 seconds (30 days)").into());
    }
    let client = get_locked(tx, client_id).await?;
    if client.client_type == ClientType::Public {
        return Err(ClientError::StateConflict("a public client has no secret to rotate"));
    }
    let secret = crypto::random_token(32);
    let (previous_hash, previous_expires_at) = match grace_seconds {
        0 => (None, None),
        grace => (client.secret_hash.as_deref(), Some(now + grace)),
    };
    sqlx::query(
        "UPDATE clients SET secret_hash = $1, previous_secret_hash = $2, previous_secret_expires_at = $3
         WHERE client_id = $4",
    )
    .bind(crypto::sha256_hex(&secret))
    .bind(previous_hash)
    .bind(previous_expires_at)
    .bind(client_id)
    .execute(&mut **tx)
    .await?;
    Event::success(
        actor,
        "client.secret_rotate",
        format!("client:{client_id}"),
        serde_json::json!({ "grace_seconds": grace_seconds, "previous_secret_expires_at": previous_expires_at }),
    )
    .record(tx, now)
    .await?;
    Ok(RotatedSecret {
        client_id: client.client_id,
        client_secret: secret,
        previous_secret_expires_at: previous_expires_at,
    })
}

impl Client {
    /// Whether `secret` is this client's current secret, or the replaced one within its grace
    /// period. Both comparisons always run, in constant time, and are combined without a
    /// branch: the time taken says neither which secret matched nor how close a guess came.
    pub fn secret_matches(&self, secret: &str, now: UnixTime) -> bool {
        let presented = crypto::sha256_hex(secret);
        let current = self.secret_hash.as_deref().unwrap_or("");
        let previous = self.previous_secret_hash.as_deref().unwrap_or("");
        let in_grace = Choice::from(u8::from(self.previous_secret_expires_at.is_some_and(|end| now < end)));
        let matched = presented.as_bytes().ct_eq(current.as_bytes())
            | (presented.as_bytes().ct_eq(previous.as_bytes()) & in_grace);
        matched.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systems::{AuthMethod, GrantType, SigningAlg};

    fn client(current: &str, previous: Option<(&str, UnixTime)>) -> Client {
        Client {
            client_id: "zeimu".into(),
            name: "税務システム".into(),
            owner_org_unit_id: None,
            client_type: ClientType::Confidential,
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            redirect_uris: vec!["https://zeimu.example.lg.jp/cb".into()],
            post_logout_redirect_uris: vec![],
            scopes: vec!["openid".into()],
            id_token_signed_response_alg: SigningAlg::RS256,
            require_pkce: false,
            access_token_ttl: 300,
            grant_types: vec![GrantType::AuthorizationCode],
            service_scopes: vec![],
            refresh_token_ttl: 3600,
            backchannel_logout_uri: None,
            status: "active".into(),
            disabled_at: None,
            emergency_stopped: false,
            token_generation: 0,
            previous_secret_expires_at: previous.map(|(_, end)| end),
            secret_hash: Some(crypto::sha256_hex(current)),
            previous_secret_hash: previous.map(|(secret, _)| crypto::sha256_hex(secret)),
        }
    }

    #[test]
    fn the_current_secret_always_matches_and_a_wrong_one_never() {
        let c = client("new", None);
        assert!(c.secret_matches("new", 1000));
        assert!(!c.secret_matches("old", 1000));
        assert!(!c.secret_matches("", 1000));
    }

    #[test]
    fn the_replaced_secret_matches_until_its_grace_period_ends() {
        let c = client("new", Some(("old", 2000)));
        assert!(c.secret_matches("old", 1999));
        assert!(c.secret_matches("new", 1999));
        assert!(!c.secret_matches("old", 2000), "the grace period ends at its last second");
        assert!(c.secret_matches("new", 2000));
        assert!(!c.secret_matches("other", 1999));
    }

    #[test]
    fn a_public_client_matches_no_secret() {
        let mut c = client("x", None);
        c.secret_hash = None;
        assert!(!c.secret_matches("", 0));
        assert!(!c.secret_matches("x", 0));
    }
}
