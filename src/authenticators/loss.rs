//! A card or security key reported lost (R14), to the hotline or by its holder: stopped through
//! the revocation module, with a reference number (受付番号) that the operator reads to the
//! caller, such as `L-20261202-7Q4K`: the report's date in Japan and four characters without
//! look-alikes. Reporting a card that a report already stopped changes nothing and answers
//! with that report's number, so a caller who rings twice hears the same number.

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::crypto;
use crate::directory::today_in_japan;
use crate::revocation::{self, Revoked, Target};
use crate::store::{is_constraint, Store, Tx};

use super::get;

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// The card is stopped now, under this reference.
    Stopped { reference: String, revoked: Revoked },
    /// An earlier report stopped it; its reference. Nothing else changed.
    Already { reference: String },
}

impl Reported {
    pub fn reference(&self) -> &str {
        match self {
            Reported::Stopped { reference, .. } | Reported::Already { reference } => reference,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("authenticator not found")]
    NotFound,
    /// Stopped, but not by a loss report: there is no reference to give.
    #[error("this authenticator has already been stopped")]
    Stopped,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How many times a report is tried when its fresh reference was taken at the same moment.
const ATTEMPTS: usize = 3;

/// Reports authenticator `id` lost: stops it and everything obtained with it, in one
/// transaction with the reference and the audit event, or answers with the reference of the
/// report that already stopped it.
pub async fn report(
    store: &Store,
    actor: &Actor,
    now: UnixTime,
    id: &str,
    reason: &str,
) -> Result<Reported, LossError> {
    for _ in 1..ATTEMPTS {
        match attempt(store, actor, now, id, reason).await {
            Ok(Some(reported)) => return Ok(reported),
            // Another report stopped the card between this one's read and its write.
            Ok(None) => continue,
            // Two reports in the same second drew the same reference (PostgreSQL: both
            // checked before either wrote); the unique index refused this one.
            Err(LossError::Database(e))
                if is_constraint(&e, "authenticators_loss_reference", "authenticators.loss_reference") =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    attempt(store, actor, now, id, reason).await?.ok_or(LossError::Stopped)
}

/// One try; None when another report won the race (this transaction is dropped unwritten).
async fn attempt(
    store: &Store,
    actor: &Actor,
    now: UnixTime,
    id: &str,
    reason: &str,
) -> Result<Option<Reported>, LossError> {
    let mut tx = store.begin().await?;
    let card = get(&mut *tx, id).await?.ok_or(LossError::NotFound)?;
    if let (false, Some(reference)) = (card.is_active(), card.loss_reference.clone()) {
        // Who rang again is an access record too, under the first report's number.
        Event::success(
            actor,
            "authenticator.loss_report_repeated",
            format!("authenticator:{}", card.id),
            serde_json::json!({"loss_reference": reference, "reason": reason}),
        )
        .record(&mut tx, now)
        .await?;
        tx.commit().await?;
        return Ok(Some(Reported::Already { reference }));
    }
    if !card.is_active() {
        return Err(LossError::Stopped);
    }
    let reference = unused_reference(&mut tx, now).await?;
    let target = Target::Authenticator { id: &card.id, loss_reference: &reference };
    let revoked = revocation::revoke(&mut tx, actor, now, target, reason).await?;
    if revoked.authenticators == 0 {
        // The revocation's own conditional update decides a race: the other report counts,
        // and this transaction (its audit event included) is dropped.
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(Reported::Stopped { reference, revoked }))
}

/// `L-<date in Japan>-<4 characters>`: short enough to read out and write down, a million
/// a day.
pub fn new_reference(now: UnixTime) -> String {
    let date = today_in_japan(now);
    format!("L-{:04}{:02}{:02}-{}", date.year(), u8::from(date.month()), date.day(), crypto::random_code(4))
}

/// Whether `text` has the form of a reference number.
pub fn is_reference(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 15
        && text.starts_with("L-")
        && bytes.get(2..10).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && bytes.get(10) == Some(&b'-')
        && text.get(11..).is_some_and(|code| code.chars().all(|c| crypto::CODE_ALPHABET.contains(c)))
}

/// A reference no report holds yet. Each write transaction checks before it writes; SQLite
/// runs them one at a time, and on PostgreSQL the unique index settles the rare tie.
async fn unused_reference(tx: &mut Tx, now: UnixTime) -> Result<String, sqlx::Error> {
    let mut reference = new_reference(now);
    for _ in 0..16 {
        let taken = sqlx::query("SELECT 1 AS one FROM authenticators WHERE loss_reference = $1")
            .bind(&reference)
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_none() {
            break;
        }
        reference = new_reference(now);
    }
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_carry_the_japan_date() {
        // 2026-12-01T15:30:00Z is already 2 December in Japan.
        let reference = new_reference(1_796_139_000);
        assert!(reference.starts_with("L-20261202-"), "{reference}");
        assert!(is_reference(&reference), "{reference}");
        for bad in ["L-20261202-7Q4", "L-2026120A-7Q4K", "L-20261202-7Q4O", "X-20261202-7Q4K", "L-20261202_7Q4K"] {
            assert!(!is_reference(bad), "{bad}");
        }
    }
}
