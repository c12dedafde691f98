//! Writes to `people`, `accounts` and `person_posts` after a person exists, as the HR lifecycle
//! (`changes`) decided them. Each writes one thing and checks nothing that is not its own
//! row's business: the rules — who may be moved, when a leave counts — live in `changes`.
//! Each that changes what a token of the person says announces it (`Change::People`), so that
//! this node does not go on answering from what it kept of the person (`oidc::token_cache`);
//! the others see it within a second.

use time::Date;

use super::types::{format_date, PersonKind, PersonStatus};
use super::DirectoryError;
use crate::clock::UnixTime;
use crate::store::changes::{announce, Change};
use crate::store::{OnConstraint, Tx};

/// The attributes a change may set on an existing person; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Attributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name_kana: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name_kana: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The person's address is withdrawn (an HR feed removed it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remove_email: bool,
    /// A new kind of staff (R3). A kind with a fixed term gets an end date if it has none:
    /// the end of the fiscal year (March 31), the longest a 会計年度任用 appointment runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<PersonKind>,
}

/// Sets the given attributes (already checked) and nothing else.
pub async fn set_attributes(
    tx: &mut Tx,
    person_id: &str,
    attributes: &Attributes,
    now: UnixTime,
) -> Result<(), DirectoryError> {
    // COALESCE keeps what is not given, in one statement.
    sqlx::query(
        "UPDATE people SET family_name = COALESCE($1, family_name), given_name = COALESCE($2, given_name),
             family_name_kana = COALESCE($3, family_name_kana), given_name_kana = COALESCE($4, given_name_kana),
             email = CASE WHEN $8 THEN NULL ELSE COALESCE($5, email) END,
             kind = COALESCE($9, kind), updated_at = $6
         WHERE id = $7",
    )
    .bind(attributes.family_name.as_deref())
    .bind(attributes.given_name.as_deref())
    .bind(attributes.family_name_kana.as_deref())
    .bind(attributes.given_name_kana.as_deref())
    .bind(attributes.email.as_deref())
    .bind(now)
    .bind(person_id)
    .bind(attributes.remove_email)
    .bind(attributes.kind.map(PersonKind::as_str))
    .execute(&mut **tx)
    .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Sets the person's last day (before a change of kind that needs one).
pub async fn set_end_date(tx: &mut Tx, person_id: &str, end_date: Date, now: UnixTime) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE people SET end_date = $1, updated_at = $2 WHERE id = $3")
        .bind(format_date(end_date))
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Sets (or, with `None`, clears) the HR system's own identifier for the person (SCIM
/// externalId); another person holding it is a conflict.
pub async fn set_external_id(
    tx: &mut Tx,
    person_id: &str,
    external_id: Option<&str>,
    now: UnixTime,
) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE people SET external_id = $1, updated_at = $2 WHERE id = $3")
        .bind(external_id)
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await
        .on_constraint([(
            "people_external_id_unique",
            "people.external_id",
            DirectoryError::Conflict("another person has this externalId"),
        )])?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Gives the person a new employee number (HR renumbered them). Their pending changes follow
/// them: they are keyed by the number.
pub async fn set_employee_number(
    tx: &mut Tx,
    person_id: &str,
    old: &str,
    new: &super::EmployeeNumber,
    now: UnixTime,
) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE people SET employee_number = $1, updated_at = $2 WHERE id = $3")
        .bind(new.as_str())
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await
        .on_constraint([(
            "people_employee_number_unique",
            "people.employee_number",
            DirectoryError::Conflict("another person has this employee number"),
        )])?;
    sqlx::query("UPDATE person_changes SET employee_number = $1 WHERE employee_number = $2 AND status = 'pending'")
        .bind(new.as_str())
        .bind(old)
        .execute(&mut **tx)
        .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Renames the person's login ID (their sign-in name; consuming systems know them by their
/// unchanging `sub`). Another account holding it is a conflict.
pub async fn set_login_id(tx: &mut Tx, person_id: &str, login_id: &super::LoginId) -> Result<bool, DirectoryError> {
    let result = sqlx::query("UPDATE accounts SET login_id = $1 WHERE person_id = $2")
        .bind(login_id.as_str())
        .bind(person_id)
        .execute(&mut **tx)
        .await
        .on_constraint([(
            "accounts_login_id_unique",
            "accounts.login_id",
            DirectoryError::Conflict("another account has this login ID"),
        )])?;
    announce(tx, Change::People).await?;
    Ok(result.rows_affected() > 0)
}

/// Marks (or, with `None`, clears) the person's SCIM resource as deleted by the HR feed; the
/// person record stays.
pub async fn set_scim_deleted(tx: &mut Tx, person_id: &str, at: Option<UnixTime>) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE people SET scim_deleted_at = $1 WHERE id = $2")
        .bind(at)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Sets the person's primary unit.
pub async fn set_primary_unit(
    tx: &mut Tx,
    person_id: &str,
    org_unit_id: &str,
    now: UnixTime,
) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE people SET org_unit_id = $1, updated_at = $2 WHERE id = $3")
        .bind(org_unit_id)
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Sets the person's status (suspended, active again).
pub async fn set_status(
    tx: &mut Tx,
    person_id: &str,
    status: PersonStatus,
    now: UnixTime,
) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE people SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Retires the person with `last_day` as their end date. The record stays.
pub async fn retire(tx: &mut Tx, person_id: &str, last_day: Date, now: UnixTime) -> Result<(), DirectoryError> {
    let last_day = format_date(last_day);
    sqlx::query("UPDATE people SET status = 'retired', end_date = $1, updated_at = $2 WHERE id = $3")
        .bind(&last_day)
        .bind(now)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    // A leaver holds no concurrent post (兼務) after their last day: open ones end with it, and
    // ones that would only have begun later never begin (a returning person starts afresh).
    sqlx::query("DELETE FROM person_posts WHERE person_id = $1 AND start_date > $2")
        .bind(person_id)
        .bind(&last_day)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE person_posts SET end_date = $1 WHERE person_id = $2 AND (end_date IS NULL OR end_date > $1)")
        .bind(&last_day)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// A returning person's new appointment on their existing record: active again, with the new
/// kind, unit and dates.
#[derive(Debug, Clone)]
pub struct Reappointment<'a> {
    pub kind: PersonKind,
    pub org_unit_id: Option<&'a str>,
    pub start_date: Date,
    pub end_date: Option<Date>,
}

pub async fn reappoint(
    tx: &mut Tx,
    person_id: &str,
    appointment: &Reappointment<'_>,
    now: UnixTime,
) -> Result<(), DirectoryError> {
    sqlx::query(
        "UPDATE people SET status = 'active', kind = $1, org_unit_id = $2, start_date = $3, end_date = $4,
             updated_at = $5
         WHERE id = $6",
    )
    .bind(appointment.kind.as_str())
    .bind(appointment.org_unit_id)
    .bind(format_date(appointment.start_date))
    .bind(appointment.end_date.map(format_date))
    .bind(now)
    .bind(person_id)
    .execute(&mut **tx)
    .await?;
    announce(tx, Change::People).await?;
    Ok(())
}

/// Disables the person's account, if they have one; returns whether one was active.
pub async fn disable_account(tx: &mut Tx, person_id: &str) -> Result<bool, DirectoryError> {
    let result = sqlx::query("UPDATE accounts SET status = 'disabled' WHERE person_id = $1 AND status = 'active'")
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    announce(tx, Change::People).await?;
    Ok(result.rows_affected() > 0)
}

/// Opens a returning person's account again under the same login ID, with its old password
/// withdrawn: it may have been known to others while the person was away, so the person sets
/// a new one (through a reset link) as a joiner would. Returns whether there was an account.
pub async fn reopen_account(tx: &mut Tx, person_id: &str) -> Result<bool, DirectoryError> {
    let result = sqlx::query(
        "UPDATE accounts SET status = 'active', password_hash = NULL, password_fingerprint = NULL,
             must_change_password = 1, failed_logins = 0, locked_until = NULL
         WHERE person_id = $1",
    )
    .bind(person_id)
    .execute(&mut **tx)
    .await?;
    announce(tx, Change::People).await?;
    Ok(result.rows_affected() > 0)
}

/// Adds a concurrent post (兼務) from `start_date`.
pub async fn add_post(
    tx: &mut Tx,
    person_id: &str,
    org_unit_id: &str,
    start_date: Date,
    now: UnixTime,
) -> Result<String, DirectoryError> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO person_posts (id, person_id, org_unit_id, start_date, end_date, created_at)
         VALUES ($1, $2, $3, $4, NULL, $5)",
    )
    .bind(&id)
    .bind(person_id)
    .bind(org_unit_id)
    .bind(format_date(start_date))
    .bind(now)
    .execute(&mut **tx)
    .await
    .on_constraint([(
        "person_posts_open",
        "person_posts.person_id, person_posts.org_unit_id",
        DirectoryError::Conflict("the person already holds a post in this unit"),
    )])?;
    Ok(id)
}

/// Ends the person's open post in a unit on `last_day`; false when there is no open post
/// there that began by then.
pub async fn end_post(tx: &mut Tx, person_id: &str, org_unit_id: &str, last_day: Date) -> Result<bool, DirectoryError> {
    let last_day = format_date(last_day);
    let result = sqlx::query(
        "UPDATE person_posts SET end_date = $1
         WHERE person_id = $2 AND org_unit_id = $3 AND end_date IS NULL AND start_date <= $1",
    )
    .bind(&last_day)
    .bind(person_id)
    .bind(org_unit_id)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// The units of a person's open concurrent posts.
pub async fn open_posts<'e, E>(executor: E, person_id: &str) -> Result<Vec<String>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT org_unit_id FROM person_posts WHERE person_id = $1 AND end_date IS NULL ORDER BY start_date",
    )
    .bind(person_id)
    .fetch_all(executor)
    .await?;
    Ok(rows.iter().map(|r| r.try_get("org_unit_id")).collect::<Result<_, _>>()?)
}
