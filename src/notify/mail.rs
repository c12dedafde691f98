//! Notices by e-mail, sent from the `notifications` outbox.
//!
//! [`notify`](super::notify) queues a mail (`mail_status` 'pending') in the transaction of the
//! event it tells of, for a person with an address. A worker on every node ([`spawn_worker`])
//! takes it from there. With `[mail] enabled` it sends what is due through the SMTP relay of
//! `smtp_url`, like the back-channel logout worker: it claims one notice at a time by pushing
//! its due time forward by a lease (so that two nodes never send the same notice), sends it, and
//! records the outcome: 'sent'; or another attempt later, with [`backoff`]; or 'abandoned' after
//! `max_attempts`, or at once when the address cannot be used. With mail off it marks what was
//! queued not mailed ('off'). The notice stays on the person's pages whatever becomes of the mail.
//!
//! The mail is Japanese first (see [`super::messages`]): the subject is sent as RFC 2047
//! encoded words, the body as `text/plain; charset=utf-8`. Its Message-ID is made from the
//! notice's id, so that a mail a crash made us send twice is recognisably the same mail.

use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::Row;

use crate::backchannel::backoff;
use crate::clock::UnixTime;
use crate::config::{ConfigError, MailConfig};
use crate::App;

/// How long a claimed notice is reserved for the node sending it: well beyond [`SEND_LIMIT`].
const LEASE: i64 = 120;
/// The longest wait for any one step of the conversation with the relay.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest a whole sending may take, so that it ends long before the lease does.
const SEND_LIMIT: Duration = Duration::from_secs(60);
/// Notices looked at in one round.
const BATCH: i64 = 32;
/// `last_error` keeps this much of the relay's answer.
const ERROR_CHARS: usize = 500;

/// The relay and the sender, built once per worker from `[mail]`.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    max_attempts: i64,
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Result<Mailer, ConfigError> {
        Ok(Mailer {
            transport: config.relay()?.timeout(Some(STEP_TIMEOUT)).build(),
            from: config.sender()?,
            max_attempts: config.max_attempts,
        })
    }
}

/// A claimed notice.
struct Due {
    id: String,
    kind: String,
    to: Option<String>,
    subject: String,
    body: String,
    attempts: i64,
    /// The due time the claim set: the notice is ours while it still holds it.
    lease_until: UnixTime,
}

enum Attempt {
    Sent,
    /// Worth another try later. `relay_down`: the relay itself could not be used (no
    /// connection, TLS, timeout), so the rest of the round waits for the next one.
    Failed {
        error: String,
        relay_down: bool,
    },
    /// Can never be sent as it is: the address is not an address.
    Undeliverable(String),
}

/// Sends every notice mail that is due, through a relay built for this one round; returns
/// how many were sent. The worker uses [`deliver_due_with`] and keeps its relay.
pub async fn deliver_due(app: &App) -> Result<u64, crate::Error> {
    let mailer = Mailer::new(&app.config.mail)?;
    deliver_due_with(app, &mailer).await
}

/// Sends every notice mail that is due through `mailer`; returns how many were sent.
pub async fn deliver_due_with(app: &App, mailer: &Mailer) -> Result<u64, crate::Error> {
    let rows = sqlx::query(
        "SELECT id, kind, mail_to, subject, body, attempts, next_attempt_at FROM notifications
         WHERE mail_status = 'pending' AND next_attempt_at <= $1
         ORDER BY next_attempt_at, id LIMIT $2",
    )
    .bind(app.clock.now())
    .bind(BATCH)
    .fetch_all(app.store.pool())
    .await?;
    let mut sent = 0;
    for row in rows {
        let due_at: i64 = row.try_get("next_attempt_at")?;
        let id: String = row.try_get("id")?;
        // The claim, just before sending: only the node whose UPDATE still sees the old due
        // time goes on; the others find the notice taken (or already settled).
        let lease_until = app.clock.now() + LEASE;
        let mut tx = app.store.begin().await?;
        let won = sqlx::query(
            "UPDATE notifications SET next_attempt_at = $1
             WHERE id = $2 AND mail_status = 'pending' AND next_attempt_at = $3",
        )
        .bind(lease_until)
        .bind(&id)
        .bind(due_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if won != 1 {
            continue;
        }
        let due = Due {
            id,
            kind: row.try_get("kind")?,
            to: row.try_get("mail_to")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            attempts: row.try_get("attempts")?,
            lease_until,
        };
        let attempt = send(mailer, &due).await;
        let relay_down = matches!(attempt, Attempt::Failed { relay_down: true, .. });
        if matches!(attempt, Attempt::Sent) {
            sent += 1;
        }
        settle(app, mailer, &due, attempt).await?;
        if relay_down {
            break;
        }
    }
    Ok(sent)
}

/// The mail of a notice: from the configured sender to the address queued with it.
fn message(mailer: &Mailer, due: &Due) -> Result<Message, String> {
    let Some(address) = due.to.as_deref() else {
        return Err("no address was queued with the notice".into());
    };
    let to: Mailbox = address.trim().parse().map_err(|e| format!("the address {address:?} is not usable ({e})"))?;
    Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(due.subject.as_str())
        .message_id(Some(format!("<{}@{}>", due.id, mailer.from.email.domain())))
        // RFC 3834: no out-of-office replies to a machine.
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
        .header(ContentType::TEXT_PLAIN)
        .body(due.body.clone())
        .map_err(|e| format!("the mail could not be built ({e})"))
}

async fn send(mailer: &Mailer, due: &Due) -> Attempt {
    let message = match message(mailer, due) {
        Ok(message) => message,
        Err(reason) => return Attempt::Undeliverable(reason),
    };
    match tokio::time::timeout(SEND_LIMIT, mailer.transport.send(message)).await {
        Ok(Ok(_)) => Attempt::Sent,
        // A 4xx or 5xx answer concerns this mail (its recipient, most often); anything else
        // is the relay's (lettre's message holds no credentials, only what the relay said).
        Ok(Err(e)) => Attempt::Failed {
            relay_down: !(e.is_transient() || e.is_permanent()),
            error: e.to_string().chars().take(ERROR_CHARS).collect(),
        },
        Err(_) => Attempt::Failed {
            error: format!("the relay did not finish within {} seconds", SEND_LIMIT.as_secs()),
            relay_down: true,
        },
    }
}

/// Records the outcome, if the claim still holds (it always does unless a sending outlasted
/// the lease and another node took the notice over).
async fn settle(app: &App, mailer: &Mailer, due: &Due, attempt: Attempt) -> Result<(), crate::Error> {
    let now = app.clock.now();
    let attempts = due.attempts + 1;
    let (id, kind) = (&due.id, &due.kind);
    let mut tx = app.store.begin().await?;
    // Each UPDATE holds only while the claim does: the notice is still pending at our lease.
    let settled = match &attempt {
        Attempt::Sent => sqlx::query(
            "UPDATE notifications SET mail_status = 'sent', sent_at = $1, attempts = $2, last_error = NULL,
                                      next_attempt_at = NULL
             WHERE id = $3 AND mail_status = 'pending' AND next_attempt_at = $4",
        )
        .bind(now)
        .bind(attempts)
        .bind(id)
        .bind(due.lease_until),
        Attempt::Failed { error, .. } if attempts < mailer.max_attempts => sqlx::query(
            "UPDATE notifications SET next_attempt_at = $1, attempts = $2, last_error = $3
             WHERE id = $4 AND mail_status = 'pending' AND next_attempt_at = $5",
        )
        .bind(now + backoff(attempts))
        .bind(attempts)
        .bind(error.as_str())
        .bind(id)
        .bind(due.lease_until),
        Attempt::Failed { error, .. } | Attempt::Undeliverable(error) => sqlx::query(
            "UPDATE notifications SET mail_status = 'abandoned', attempts = $1, last_error = $2, next_attempt_at = NULL
             WHERE id = $3 AND mail_status = 'pending' AND next_attempt_at = $4",
        )
        .bind(attempts)
        .bind(error.as_str())
        .bind(id)
        .bind(due.lease_until),
    }
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    if settled != 1 {
        tracing::warn!(notification = %id, kind = %kind, "notice mail outlasted its claim; another node has it now");
        return Ok(());
    }
    match attempt {
        Attempt::Sent => tracing::info!(notification = %id, kind = %kind, attempts, "notice mailed"),
        Attempt::Failed { error, .. } if attempts < mailer.max_attempts => {
            tracing::info!(notification = %id, kind = %kind, attempts, error = %error, "notice not mailed; will retry")
        }
        Attempt::Failed { error, .. } | Attempt::Undeliverable(error) => {
            tracing::warn!(notification = %id, kind = %kind, attempts, error = %error, "notice mail abandoned")
        }
    }
    Ok(())
}

/// With mail off, marks the notices queued for mail as not mailed ('off'); returns how many.
/// Nothing of them is lost (they are on the person's pages), and turning mail on later does
/// not send a backlog of old news. Reads first, so that a deployment without mail does not
/// take the write lock every round for nothing.
pub async fn mark_not_mailed(app: &App) -> Result<u64, crate::Error> {
    let waiting = sqlx::query("SELECT id FROM notifications WHERE mail_status = 'pending' LIMIT 1")
        .fetch_optional(app.store.pool())
        .await?;
    if waiting.is_none() {
        return Ok(0);
    }
    let mut tx = app.store.begin().await?;
    let marked = sqlx::query(
        "UPDATE notifications SET mail_status = 'off', next_attempt_at = NULL WHERE mail_status = 'pending'",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(marked)
}

/// The mail worker, on every node until the process ends. With `[mail] enabled` it mails due
/// notices every second; otherwise it marks queued notices not mailed every ten seconds. (Every
/// node of a deployment has the same `[mail]`: a node with mail off would mark what the others
/// would send.)
pub fn spawn_worker(app: App) {
    if !app.config.mail.enabled {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(10));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(e) = mark_not_mailed(&app).await {
                    tracing::warn!(error = %e, "marking notices not mailed failed");
                }
            }
        });
        return;
    }
    tokio::spawn(async move {
        let mailer = match Mailer::new(&app.config.mail) {
            Ok(mailer) => mailer,
            Err(e) => {
                tracing::error!(error = %e, "cannot mail notices; they stay queued, and shown on people's pages");
                return;
            }
        };
        tracing::info!(relay = %crate::store::redacted_url(&app.config.mail.smtp_url), "mailing notices");
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = deliver_due_with(&app, &mailer).await {
                tracing::warn!(error = %e, "mailing notices failed");
            }
        }
    });
}
