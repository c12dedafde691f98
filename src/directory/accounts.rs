//! Writes to the `accounts` table after an account exists: its password (set, re-hashed,
//! withdrawn) and its failure count and lock. The rules — when to lock, for how long, what a
//! password must be — live in `password`; this module only writes what they decided.

use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::Tx;

/// Counts one more failure; returns the count.
pub async fn count_failure(tx: &mut Tx, account_id: &str) -> Result<i64, sqlx::Error> {
    let row =
        sqlx::query("UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
            .bind(account_id)
            .fetch_one(&mut **tx)
            .await?;
    row.try_get("failed_logins")
}

/// Locks the account until `until`.
pub async fn lock_until(tx: &mut Tx, account_id: &str, until: UnixTime) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET locked_until = $1 WHERE id = $2")
        .bind(until)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Clears the failure count and any lock after a success; writes nothing when there is none
/// (most logins), so that a login does not take the write lock for nothing.
pub async fn clear_failures(tx: &mut Tx, account_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET failed_logins = 0, locked_until = NULL
         WHERE id = $1 AND (failed_logins <> 0 OR locked_until IS NOT NULL)",
    )
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Lifts a lock (an administrator's unlock); false when there is no such account.
pub async fn unlock(tx: &mut Tx, account_id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// Replaces the hash of the same password (made with newer parameters).
pub async fn replace_password_hash(tx: &mut Tx, account_id: &str, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets a new password: its hash and fingerprint, changed now, no change pending, no failures.
/// A fingerprint another account holds fails with the unique index's violation (R9).
pub async fn set_password(
    tx: &mut Tx,
    account_id: &str,
    hash: &str,
    fingerprint: &str,
    now: UnixTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET password_hash = $1, password_fingerprint = $2, password_changed_at = $3,
             must_change_password = 0, failed_logins = 0, locked_until = NULL
         WHERE id = $4",
    )
    .bind(hash)
    .bind(fingerprint)
    .bind(now)
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Withdraws the password (suspected compromise): it stops working, and a new one must be set.
pub async fn withdraw_password(tx: &mut Tx, account_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET password_hash = NULL, password_fingerprint = NULL, must_change_password = 1 WHERE id = $1",
    )
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
