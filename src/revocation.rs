//! THE one place that revokes. Card loss, retirement, transfer, suspected compromise,
//! emergency stop and code replay all come here, so that whatever is revoked ends everything
//! obtained through it, in the caller's transaction, with its audit event.
//!
//! Later capabilities extend [`Target`] (authenticator, grant, refresh-token family) and the
//! back-channel logout outbox; callers do not change.

use crate::audit::{self, Actor, Event, Outcome};
use crate::clock::UnixTime;
use crate::store::Tx;

/// What is being revoked.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    /// One browser session and every token issued from it.
    Session(&'a str),
    /// Every token issued from one authorization code (RFC 6749 §4.1.2: on code replay the
    /// server SHOULD revoke the tokens previously issued from that code).
    AuthorizationCode(&'a str),
    /// Every session and token of one person.
    Person(&'a str),
    /// Every session and token of one person but the session they are using (a password
    /// change ends the others).
    PersonExceptSession { person_id: &'a str, session_id: &'a str },
}

/// Revokes `target`, recording who did it and why. Returns how many sessions and access
/// tokens were ended.
pub async fn revoke(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    target: Target<'_>,
    reason: &str,
) -> Result<Revoked, sqlx::Error> {
    let (sessions, tokens, target_text) = match target {
        Target::Session(id) => {
            let s = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            let t =
                sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
            (s, t, format!("session:{id}"))
        }
        Target::AuthorizationCode(code_id) => {
            let t = sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE code_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(code_id)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            (0, t, format!("auth_code:{code_id}"))
        }
        Target::Person(person_id) => {
            let s = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE person_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(person_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            let t = sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE person_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(person_id)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            (s, t, format!("person:{person_id}"))
        }
        Target::PersonExceptSession { person_id, session_id } => {
            let s = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2
                 WHERE person_id = $3 AND id <> $4 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(person_id)
            .bind(session_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            let t = sqlx::query(
                "UPDATE access_tokens SET revoked_at = $1
                 WHERE person_id = $2 AND (session_id IS NULL OR session_id <> $3) AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(person_id)
            .bind(session_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            (s, t, format!("person:{person_id}"))
        }
    };
    audit::record(
        tx,
        now,
        Event {
            actor,
            action: "revoke",
            target: target_text,
            outcome: Outcome::Success,
            detail: serde_json::json!({"reason": reason, "sessions": sessions, "access_tokens": tokens}),
            source_ip: None,
        },
    )
    .await?;
    Ok(Revoked { sessions, access_tokens: tokens })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    pub sessions: u64,
    pub access_tokens: u64,
}
