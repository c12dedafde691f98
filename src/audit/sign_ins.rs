//! R16, R17 (R8: only their own entries): a person's own recent sign-ins, for their page
//! (マイページ): when, from where, with what, and the failed attempts at their login ID, so that
//! they notice someone else trying. Read
//! from the audit log, the one record of what happened; only the person's own entries.

use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::Store;

/// How a sign-in was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    /// An IC card or security key (alone, or after the password).
    Card,
}

#[derive(Debug, Clone)]
pub struct SignIn {
    pub at: UnixTime,
    /// None for a failed attempt (the method is not known then).
    pub method: Option<Method>,
    pub source_ip: Option<String>,
    /// The session it opened (its consuming systems are read from there).
    pub session_id: Option<String>,
}

impl SignIn {
    pub fn succeeded(&self) -> bool {
        self.method.is_some()
    }
}

/// The newest `limit` sign-ins of `person_id` and failed attempts at `login_id`.
pub async fn recent(store: &Store, person_id: &str, login_id: &str, limit: i64) -> Result<Vec<SignIn>, sqlx::Error> {
    // A password step that was followed by the card is not a sign-in of its own (the card's
    // event is): rows are fetched generously and sifted here.
    let rows = sqlx::query(
        "SELECT at, action, outcome, detail, source_ip FROM audit_events
         WHERE (actor = $1 AND action IN ('login.password', 'login.card') AND outcome = 'success')
            OR (target = $2 AND action = 'login.password' AND outcome = 'failure')
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(format!("person:{person_id}"))
    .bind(format!("login_id:{login_id}"))
    .bind(limit.saturating_mul(3))
    .fetch_all(store.pool())
    .await?;
    let mut sign_ins = Vec::new();
    for row in rows {
        let action: String = row.try_get("action")?;
        let outcome: String = row.try_get("outcome")?;
        let detail: String = row.try_get("detail")?;
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
        let session_id = detail.get("sid").and_then(|v| v.as_str()).map(str::to_owned);
        let method = match (action.as_str(), outcome.as_str()) {
            (_, "failure") => None,
            ("login.card", _) => Some(Method::Card),
            // A password step without a session went on to the card (or to a forced change).
            (_, _) if session_id.is_some() => Some(Method::Password),
            _ => continue,
        };
        sign_ins.push(SignIn { at: row.try_get("at")?, method, source_ip: row.try_get("source_ip")?, session_id });
        if sign_ins.len() as i64 >= limit {
            break;
        }
    }
    Ok(sign_ins)
}
