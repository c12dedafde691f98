//! Disabling a consuming system and enabling it again: R17's emergency stop for one system,
//! and what a section does while its system is being replaced or investigated.
//!
//! While disabled, a system's authorization requests get an error page (its redirect URI is
//! not trusted: OIDC Core §3.1.2.6 lets an OP answer a request it cannot verify without
//! redirecting), its authentication at the token, introspection and revocation endpoints fails
//! with `invalid_client` (RFC 6749 §5.2), and back-channel logout notices are not sent to it.
//! Disabling also ends, through the revocation module, every token issued to it, so enabling
//! it again brings none back: its users log in anew.

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::revocation::{self, Revoked, Target};
use crate::store::Tx;

use super::{get_locked, Client, ClientError};

/// Disables `client_id` and ends every token issued to it; returns the client as it is now and
/// what was ended.
pub async fn disable(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    client_id: &str,
) -> Result<(Client, Revoked), ClientError> {
    let client = get_locked(tx, client_id).await?;
    // An emergency stop is not a status: a stopped system can still be disabled, and stays so
    // when the stop is lifted.
    if !client.is_enabled() {
        return Err(ClientError::StateConflict("the client is already disabled"));
    }
    sqlx::query("UPDATE clients SET status = 'disabled', disabled_at = $1 WHERE client_id = $2")
        .bind(now)
        .bind(client_id)
        .execute(&mut **tx)
        .await?;
    Event::success(actor, "client.disable", format!("client:{client_id}"), serde_json::json!({}))
        .record(tx, now)
        .await?;
    let revoked = revocation::revoke(tx, actor, now, Target::Client(client_id), "consuming system disabled").await?;
    Ok((Client { status: "disabled".into(), disabled_at: Some(now), ..client }, revoked))
}

/// Enables `client_id` again. Tokens ended when it was disabled stay ended.
pub async fn enable(tx: &mut Tx, actor: &Actor, now: UnixTime, client_id: &str) -> Result<Client, ClientError> {
    let client = get_locked(tx, client_id).await?;
    if client.is_enabled() {
        return Err(ClientError::StateConflict("the client is not disabled"));
    }
    // A token request that authenticated just before the disable committed may have written
    // its token after the disable's revocation: inactive while disabled, it must not come back
    // to life now. Nothing can be issued while disabled, so ending the client's tokens once
    // more, before it is enabled, catches exactly those.
    revocation::revoke(tx, actor, now, Target::Client(client_id), "issued while the consuming system was disabled")
        .await?;
    sqlx::query("UPDATE clients SET status = 'active', disabled_at = NULL WHERE client_id = $1")
        .bind(client_id)
        .execute(&mut **tx)
        .await?;
    Event::success(
        actor,
        "client.enable",
        format!("client:{client_id}"),
        serde_json::json!({ "disabled_at": client.disabled_at }),
    )
    .record(tx, now)
    .await?;
    Ok(Client { status: "active".into(), disabled_at: None, ..client })
}
