//! R17: repeated failures are slowed down per account (exponential backoff) and per source
//! address (a fixed window). Neither changes what a failed login looks like, so neither
//! reveals whether an account exists.

use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::{AlertsConfig, PasswordConfig};
use crate::directory::{accounts, LoginAccount};
use crate::store::{Store, Tx};
use crate::App;

/// What checking a password outside the login form found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Right,
    /// Wrong; counted, and the account is locked until then if this failure locked it.
    Wrong {
        locked_until: Option<UnixTime>,
    },
    /// The account is locked: the password was not even considered.
    Locked {
        until: UnixTime,
    },
}

/// Verifies the password of a person who is already logged in (the current password on the
/// change form). Every verification of a password counts toward the same lockout as a failed
/// login (R17), whatever form it comes through: a wrong one is counted against the account
/// and the source address and audited as `action`; while the account is locked, even the
/// right one is refused. The argon2 verification runs in every case, so timing tells nothing.
pub async fn verify_password(
    app: &App,
    account: &LoginAccount,
    password: &str,
    action: &str,
    source: Option<&str>,
    now: UnixTime,
) -> Result<Verdict, crate::Error> {
    let config = &app.config.password;
    let right = app.hasher.verify(password.to_owned(), account.password_hash.clone()).await?;
    let mut tx = app.store.begin().await?;
    let verdict = match account.locked_until.filter(|until| *until > now) {
        Some(until) => Verdict::Locked { until },
        None if right => Verdict::Right,
        None => {
            let alerts = &app.config.alerts;
            if let Some(source) = source {
                source_failed(&mut tx, config, alerts, source, now).await?;
            }
            Verdict::Wrong { locked_until: account_failed(&mut tx, config, alerts, &account.account_id, now).await? }
        }
    };
    let refused = match verdict {
        Verdict::Right => None,
        Verdict::Wrong { locked_until } => Some(("wrong current password", locked_until)),
        Verdict::Locked { until } => Some(("account locked", Some(until))),
    };
    match refused {
        None => account_succeeded(&mut tx, &account.account_id).await?,
        Some((reason, locked_until)) => {
            Event::failure(
                &Actor::Person(account.person.id.clone()),
                action,
                format!("account:{}", account.account_id),
                serde_json::json!({"refused": reason, "locked_until": locked_until}),
            )
            .from_source(source.map(str::to_owned))
            .record(&mut tx, now)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(verdict)
}

/// How long an account is locked after `failures` consecutive failures.
pub fn lock_seconds(config: &PasswordConfig, failures: i64) -> Option<i64> {
    if failures < config.lockout_threshold {
        return None;
    }
    let doublings = (failures - config.lockout_threshold).min(30) as u32;
    Some(config.lockout_base_seconds.saturating_mul(1i64 << doublings).min(config.lockout_max_seconds))
}

/// Counts a failure against the account and locks it when the threshold is reached; a lock
/// that continues a streak of them alerts the security managers.
pub async fn account_failed(
    tx: &mut Tx,
    config: &PasswordConfig,
    alerts: &AlertsConfig,
    account_id: &str,
    now: UnixTime,
) -> Result<Option<UnixTime>, sqlx::Error> {
    let failures = accounts::count_failure(tx, account_id).await?;
    let locked_until = lock_seconds(config, failures).map(|s| now + s);
    if let Some(until) = locked_until {
        accounts::lock_until(tx, account_id, until).await?;
        crate::emergency::alerts::account_locked(tx, alerts, now, account_id).await?;
    }
    Ok(locked_until)
}

/// A successful login clears the count.
pub async fn account_succeeded(tx: &mut Tx, account_id: &str) -> Result<(), sqlx::Error> {
    accounts::clear_failures(tx, account_id).await
}

/// Whether the source address has used up its failures for the current window.
pub async fn source_blocked(
    store: &Store,
    config: &PasswordConfig,
    source: &str,
    now: UnixTime,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT window_start, failures FROM login_source_failures WHERE source = $1")
        .bind(source)
        .fetch_optional(store.pool())
        .await?;
    Ok(match row {
        Some(row) => {
            let start: i64 = row.try_get("window_start")?;
            let failures: i64 = row.try_get("failures")?;
            now < start + config.source_window_seconds && failures >= config.source_max_failures
        }
        None => false,
    })
}

/// Counts a failure against the source address, starting a new window when the old one ended.
/// The failure that uses up the window throttles the source; one that continues a streak of
/// them alerts the security managers.
pub async fn source_failed(
    tx: &mut Tx,
    config: &PasswordConfig,
    alerts: &AlertsConfig,
    source: &str,
    now: UnixTime,
) -> Result<(), sqlx::Error> {
    // One upsert, so concurrent first failures from one address cannot collide.
    sqlx::query(
        "INSERT INTO login_source_failures (source, window_start, failures) VALUES ($3, $2, 1)
         ON CONFLICT (source) DO UPDATE SET
             failures = CASE WHEN login_source_failures.window_start + $1 > $2
                             THEN login_source_failures.failures + 1 ELSE 1 END,
             window_start = CASE WHEN login_source_failures.window_start + $1 > $2
                                 THEN login_source_failures.window_start ELSE $2 END",
    )
    .bind(config.source_window_seconds)
    .bind(now)
    .bind(source)
    .execute(&mut **tx)
    .await?;
    let failures: i64 = sqlx::query("SELECT failures FROM login_source_failures WHERE source = $1")
        .bind(source)
        .fetch_one(&mut **tx)
        .await?
        .try_get("failures")?;
    if failures == config.source_max_failures {
        crate::emergency::alerts::source_throttled(tx, alerts, now, source).await?;
    }
    Ok(())
}

/// Lifts an account's lock (an administrator's unlock).
pub async fn unlock(tx: &mut Tx, account_id: &str) -> Result<bool, sqlx::Error> {
    accounts::unlock(tx, account_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_threshold_and_is_capped() {
        let config = PasswordConfig {
            lockout_threshold: 5,
            lockout_base_seconds: 30,
            lockout_max_seconds: 3600,
            ..PasswordConfig::default()
        };
        assert_eq!(lock_seconds(&config, 4), None);
        assert_eq!(lock_seconds(&config, 5), Some(30));
        assert_eq!(lock_seconds(&config, 6), Some(60));
        assert_eq!(lock_seconds(&config, 8), Some(240));
        assert_eq!(lock_seconds(&config, 20), Some(3600));
        assert_eq!(lock_seconds(&config, 10_000), Some(3600));
    }
}
