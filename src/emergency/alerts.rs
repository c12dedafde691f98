//! R17: when abnormal access continues — one account locked again and again, one source address
//! throttled again and again — every security manager is told, through the notification outbox
//! (shown on their pages, mailed when mail is on), so that someone decides whether to stop it.
//!
//! Each sign is kept in `abnormal_access`. When `[alerts]` says a streak is long enough (by
//! default the 3rd lockout of one account within 24 hours), the alert marks the signs it
//! counted: the same streak never alerts twice, and the next alert needs a new streak.

use sqlx::Row;
use time::Date;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::AlertsConfig;
use crate::notify::{self, Notice};
use crate::store::Tx;

/// The role of the security manager (統括) on Sekimori's own console (`admin::roles`).
const SECURITY_MANAGER_ROLE: &str = "security_manager";

/// A sign of abnormal access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    AccountLocked,
    SourceThrottled,
}

impl Sign {
    fn as_str(self) -> &'static str {
        match self {
            Sign::AccountLocked => "account_locked",
            Sign::SourceThrottled => "source_throttled",
        }
    }
}

/// The people holding, today, a live grant of the security manager's role on the console.
pub async fn security_managers<'e, E>(executor: E, today: Date) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    crate::access::roles::holders(executor, crate::systems::CONSOLE_CLIENT_ID, SECURITY_MANAGER_ROLE, today).await
}

/// The account `account_id` was locked now (R17's lockout); alerts when it is locked again and
/// again.
pub async fn account_locked(
    tx: &mut Tx,
    config: &AlertsConfig,
    now: UnixTime,
    account_id: &str,
) -> Result<(), sqlx::Error> {
    let Some(count) = streak(tx, config, config.account_lockouts, now, Sign::AccountLocked, account_id).await? else {
        return Ok(());
    };
    let login_id: String = sqlx::query("SELECT login_id FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| row.try_get("login_id"))
        .transpose()?
        .unwrap_or_else(|| account_id.to_owned());
    let notice = Notice::AccountLockedRepeatedly { login_id: &login_id, lockouts: count, hours: hours(config) };
    alert(tx, now, &notice, format!("account:{account_id}"), Sign::AccountLocked, count).await
}

/// The source address `source` used up its failed logins for a window now (it is throttled);
/// alerts when it is throttled again and again.
pub async fn source_throttled(
    tx: &mut Tx,
    config: &AlertsConfig,
    now: UnixTime,
    source: &str,
) -> Result<(), sqlx::Error> {
    let Some(count) = streak(tx, config, config.source_throttles, now, Sign::SourceThrottled, source).await? else {
        return Ok(());
    };
    let notice = Notice::SourceThrottledRepeatedly { source, throttles: count, hours: hours(config) };
    alert(tx, now, &notice, format!("source:{source}"), Sign::SourceThrottled, count).await
}

fn hours(config: &AlertsConfig) -> i64 {
    (config.window_seconds + 3599) / 3600
}

/// Records the sign; when it makes a streak of `threshold` signs not yet alerted within the
/// window, marks them alerted and returns how many there were.
async fn streak(
    tx: &mut Tx,
    config: &AlertsConfig,
    threshold: i64,
    now: UnixTime,
    sign: Sign,
    subject: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query("INSERT INTO abnormal_access (id, kind, subject, at) VALUES ($1, $2, $3, $4)")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(sign.as_str())
        .bind(subject)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    // The update is the claim: of two signs racing to complete one streak, the second finds
    // the first's signs alerted (PostgreSQL makes it wait) and claims too few to alert again.
    let claimed = sqlx::query(
        "UPDATE abnormal_access SET alerted_at = $1
         WHERE kind = $2 AND subject = $3 AND alerted_at IS NULL AND at > $4
           AND (SELECT COUNT(*) FROM abnormal_access o
                WHERE o.kind = $2 AND o.subject = $3 AND o.alerted_at IS NULL AND o.at > $4) >= $5",
    )
    .bind(now)
    .bind(sign.as_str())
    .bind(subject)
    .bind(now - config.window_seconds)
    .bind(threshold)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let claimed = i64::try_from(claimed).unwrap_or(i64::MAX);
    Ok((claimed >= threshold).then_some(claimed))
}

/// Tells every security manager, and records that they were told (or that nobody could be).
async fn alert(
    tx: &mut Tx,
    now: UnixTime,
    notice: &Notice<'_>,
    target: String,
    sign: Sign,
    count: i64,
) -> Result<(), sqlx::Error> {
    let managers = security_managers(&mut **tx, crate::directory::today_in_japan(now)).await?;
    for person_id in &managers {
        notify::notify(tx, now, person_id, notice).await?;
    }
    if managers.is_empty() {
        tracing::warn!(%target, sign = sign.as_str(), count, "abnormal access continues and no security manager is named");
    }
    Event::success(
        &Actor::System,
        "alert.abnormal_access",
        target,
        serde_json::json!({"sign": sign.as_str(), "count": count, "told": managers}),
    )
    .record(tx, now)
    .await
}
