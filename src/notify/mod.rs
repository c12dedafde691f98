//! What Sekimori tells people: an approval waits, a request was decided or lapsed, a review
//! opened, a grant ended. A notice is written in the transaction of the event it tells of
//! (nothing is told that did not happen, nothing happens untold), is always shown on the
//! person's own pages, and is queued for e-mail when the person has an address. The mail worker
//! ([`mail`]) sends it when `[mail] enabled`, with retries like the back-channel logout notices,
//! and otherwise marks it not mailed: the domain that writes a notice does not need to know.

pub mod mail;
mod messages;

pub use messages::Notice;

use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::Tx;

/// Writes `notice` for `person_id`, queued for mail when the person has an address.
pub async fn notify(tx: &mut Tx, now: UnixTime, person_id: &str, notice: &Notice<'_>) -> Result<(), sqlx::Error> {
    let address: Option<String> = sqlx::query("SELECT email FROM people WHERE id = $1")
        .bind(person_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| row.try_get::<Option<String>, _>("email"))
        .transpose()?
        .flatten()
        .filter(|a| !a.trim().is_empty());
    let (status, to, next) = match address {
        Some(to) => ("pending", Some(to), Some(now)),
        _ => ("off", None, None),
    };
    let (subject, body) = notice.render();
    sqlx::query(
        "INSERT INTO notifications (id, person_id, kind, subject, body, created_at, mail_status, mail_to, attempts,
                                    next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(person_id)
    .bind(notice.kind())
    .bind(subject)
    .bind(body)
    .bind(now)
    .bind(status)
    .bind(to)
    .bind(next)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A notice as the person's pages show it.
#[derive(Debug, Clone)]
pub struct Shown {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: UnixTime,
    pub read: bool,
}

/// The person's latest notices, newest first.
pub async fn list_for_person<'e, E>(executor: E, person_id: &str, limit: i64) -> Result<Vec<Shown>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT id, kind, subject, body, created_at, read_at FROM notifications WHERE person_id = $1
         ORDER BY created_at DESC, id LIMIT $2",
    )
    .bind(person_id)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Shown {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                subject: row.try_get("subject")?,
                body: row.try_get("body")?,
                created_at: row.try_get("created_at")?,
                read: row.try_get::<Option<i64>, _>("read_at")?.is_some(),
            })
        })
        .collect()
}

/// Marks every notice of the person read (when they open the page that shows them).
pub async fn mark_read(tx: &mut Tx, now: UnixTime, person_id: &str) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE notifications SET read_at = $1 WHERE person_id = $2 AND read_at IS NULL")
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}
