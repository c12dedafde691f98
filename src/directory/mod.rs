//! The directory: org units (部 > 課 > 係, each with a manager), people, and accounts.
//! R1: one account per person, enforced by the `accounts_person_unique` constraint.

pub mod accounts;
pub mod search;
pub mod shared;
pub mod types;
pub mod updates;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::Date;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::stops;
use crate::store::{OnConstraint, Store, Tx};
pub use types::{EmployeeNumber, InvalidField, LoginId, OrgLevel, PersonKind, PersonStatus};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

// ---------- org units ----------

#[derive(Debug, Clone, Serialize)]
pub struct OrgUnit {
    pub id: String,
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub level: OrgLevel,
    pub parent_id: Option<String>,
    pub manager_person_id: Option<String>,
}

/// An org unit as a caller asks for it, not yet checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrgUnit {
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub level: String,
    pub parent_id: Option<String>,
}

pub async fn create_org_unit(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    new: NewOrgUnit,
) -> Result<OrgUnit, DirectoryError> {
    let code = EmployeeNumber::parse(&new.code)
        .map_err(|_| InvalidField { field: "code", reason: "must be 1 to 64 ASCII letters, digits or '-'".into() })?
        .as_str()
        .to_owned();
    let name = types::parse_name("name", &new.name)?;
    let name_en = new.name_en.as_deref().map(|n| types::parse_name("name_en", n)).transpose()?;
    let level = OrgLevel::parse(&new.level)?;
    match (level.parent_level(), &new.parent_id) {
        (None, Some(_)) => {
            return Err(InvalidField { field: "parent_id", reason: "a department has no parent".into() }.into())
        }
        (Some(_), None) => {
            return Err(InvalidField { field: "parent_id", reason: "required for sections and units".into() }.into())
        }
        (Some(expected), Some(parent_id)) => {
            let parent = get_org_unit(&mut **tx, parent_id)
                .await?
                .ok_or(InvalidField { field: "parent_id", reason: "no such org unit".into() })?;
            if parent.level != expected {
                return Err(InvalidField {
                    field: "parent_id",
                    reason: format!("the parent of a {} must be a {}", level.as_str(), expected.as_str()),
                }
                .into());
            }
        }
        (None, None) => {}
    }
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO org_units (id, code, name, name_en, level, parent_id, manager_person_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
    )
    .bind(&id)
    .bind(&code)
    .bind(&name)
    .bind(name_en.as_deref())
    .bind(level.as_str())
    .bind(new.parent_id.as_deref())
    .bind(now)
    .execute(&mut **tx)
    .await
    .on_constraint([(
        "org_units_code_unique",
        "org_units.code",
        DirectoryError::Conflict("an org unit with this code already exists"),
    )])?;
    Event::success(
        actor,
        "org_unit.create",
        format!("org_unit:{id}"),
        serde_json::json!({"code": code, "name": name, "level": level.as_str()}),
    )
    .record(tx, now)
    .await?;
    Ok(OrgUnit { id, code, name, name_en, level, parent_id: new.parent_id, manager_person_id: None })
}

/// Names the manager (課長, 係長…) of an org unit; the person must exist.
pub async fn set_org_unit_manager(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    org_unit_id: &str,
    person_id: &str,
) -> Result<(), DirectoryError> {
    if get_org_unit(&mut **tx, org_unit_id).await?.is_none() {
        return Err(DirectoryError::NotFound("org unit"));
    }
    if get_person(&mut **tx, person_id).await?.is_none() {
        return Err(InvalidField { field: "person_id", reason: "no such person".into() }.into());
    }
    let result = sqlx::query("UPDATE org_units SET manager_person_id = $1 WHERE id = $2")
        .bind(person_id)
        .bind(org_unit_id)
        .execute(&mut **tx)
        .await?;
    if result.rows_affected() == 0 {
        return Err(DirectoryError::NotFound("org unit"));
    }
    Event::success(
        actor,
        "org_unit.set_manager",
        format!("org_unit:{org_unit_id}"),
        serde_json::json!({"manager_person_id": person_id}),
    )
    .record(tx, now)
    .await?;
    Ok(())
}

/// Renames an org unit and sets (or clears) the HR system's identifier for it.
pub async fn update_org_unit(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    org_unit_id: &str,
    name: &str,
    external_id: Option<&str>,
) -> Result<(), DirectoryError> {
    let name = types::parse_name("name", name)?;
    if let Some(external_id) = external_id {
        if external_id.trim().is_empty()
            || external_id.chars().count() > 255
            || external_id.chars().any(char::is_control)
        {
            return Err(InvalidField { field: "external_id", reason: "must be 1 to 255 characters".into() }.into());
        }
    }
    let result = sqlx::query(
        "UPDATE org_units SET name = $1, external_id = $2, updated_at = $3 WHERE id = $4 AND closed_at IS NULL",
    )
    .bind(&name)
    .bind(external_id)
    .bind(now)
    .bind(org_unit_id)
    .execute(&mut **tx)
    .await
    .on_constraint([(
        "org_units_external_id_unique",
        "org_units.external_id",
        DirectoryError::Conflict("another org unit has this externalId"),
    )])?;
    if result.rows_affected() == 0 {
        return Err(DirectoryError::NotFound("org unit"));
    }
    Event::success(actor, "org_unit.update", format!("org_unit:{org_unit_id}"), serde_json::json!({"name": name}))
        .record(tx, now)
        .await?;
    Ok(())
}

/// Closes an org unit: kept for the people, systems and records that name it, but nobody can
/// be moved into it. A unit that still has people, open posts, sub-units or systems is not
/// closed: they must go first.
pub async fn close_org_unit(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    org_unit_id: &str,
) -> Result<(), DirectoryError> {
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM people WHERE org_unit_id = $1 AND status <> 'retired')
              + (SELECT COUNT(*) FROM person_posts WHERE org_unit_id = $1 AND end_date IS NULL)
              + (SELECT COUNT(*) FROM org_units WHERE parent_id = $1 AND closed_at IS NULL)
              + (SELECT COUNT(*) FROM clients WHERE owner_org_unit_id = $1) AS n",
    )
    .bind(org_unit_id)
    .fetch_one(&mut **tx)
    .await?;
    let in_use: i64 = row.try_get("n")?;
    if in_use > 0 {
        return Err(DirectoryError::Conflict(
            "the org unit still has people, concurrent posts, sub-units or systems: move them first",
        ));
    }
    let result =
        sqlx::query("UPDATE org_units SET closed_at = $1, updated_at = $1 WHERE id = $2 AND closed_at IS NULL")
            .bind(now)
            .bind(org_unit_id)
            .execute(&mut **tx)
            .await?;
    if result.rows_affected() == 0 {
        return Err(DirectoryError::NotFound("org unit"));
    }
    Event::success(actor, "org_unit.close", format!("org_unit:{org_unit_id}"), serde_json::json!({}))
        .record(tx, now)
        .await?;
    Ok(())
}

fn org_unit_from_row(row: &sqlx::any::AnyRow) -> Result<OrgUnit, DirectoryError> {
    let level: String = row.try_get("level")?;
    Ok(OrgUnit {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        name_en: row.try_get("name_en")?,
        level: OrgLevel::parse(&level)?,
        parent_id: row.try_get("parent_id")?,
        manager_person_id: row.try_get("manager_person_id")?,
    })
}

const ORG_UNIT_COLUMNS: &str = "id, code, name, name_en, level, parent_id, manager_person_id";

pub async fn get_org_unit<'e, E>(executor: E, id: &str) -> Result<Option<OrgUnit>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {ORG_UNIT_COLUMNS} FROM org_units WHERE id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(org_unit_from_row).transpose()
}

/// The org unit HR calls by `code`.
pub async fn org_unit_by_code<'e, E>(executor: E, code: &str) -> Result<Option<OrgUnit>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // A closed unit (deleted by the HR feed) takes nobody in.
    let row = sqlx::query(&format!("SELECT {ORG_UNIT_COLUMNS} FROM org_units WHERE code = $1 AND closed_at IS NULL"))
        .bind(code)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(org_unit_from_row).transpose()
}

pub async fn list_org_units(store: &Store) -> Result<Vec<OrgUnit>, DirectoryError> {
    let rows = sqlx::query(&format!("SELECT {ORG_UNIT_COLUMNS} FROM org_units WHERE closed_at IS NULL ORDER BY code"))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(org_unit_from_row).collect()
}

// ---------- people ----------

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    /// Stable identifier; also the OIDC `sub`.
    pub id: String,
    pub employee_number: String,
    pub family_name: String,
    pub given_name: String,
    pub family_name_kana: String,
    pub given_name_kana: String,
    pub birth_date: Option<String>,
    pub kind: PersonKind,
    pub org_unit_id: Option<String>,
    pub email: Option<String>,
    pub status: PersonStatus,
    pub start_date: String,
    pub end_date: Option<String>,
}

impl Person {
    /// Whether the person may log in on `today`: active and within their employment dates.
    pub fn may_log_in(&self, today: Date) -> bool {
        let Ok(start) = types::parse_date("start_date", &self.start_date) else {
            return false;
        };
        let ended = match &self.end_date {
            Some(end) => types::parse_date("end_date", end).map(|end| today > end).unwrap_or(true),
            None => false,
        };
        self.status == PersonStatus::Active && today >= start && !ended
    }

    pub fn full_name(&self) -> String {
        format!("{} {}", self.family_name, self.given_name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    pub employee_number: String,
    pub family_name: String,
    pub given_name: String,
    pub family_name_kana: String,
    pub given_name_kana: String,
    pub birth_date: Option<String>,
    pub kind: String,
    pub org_unit_id: Option<String>,
    pub email: Option<String>,
    pub start_date: String,
    pub end_date: Option<String>,
}

pub async fn create_person(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    new: NewPerson,
) -> Result<Person, DirectoryError> {
    let employee_number = EmployeeNumber::parse(&new.employee_number)?;
    let kind = PersonKind::parse(&new.kind)?;
    let birth_date = new.birth_date.as_deref().map(|d| types::parse_date("birth_date", d)).transpose()?;
    let start_date = types::parse_date("start_date", &new.start_date)?;
    let end_date = new.end_date.as_deref().map(|d| types::parse_date("end_date", d)).transpose()?;
    if kind.requires_end_date() && end_date.is_none() {
        return Err(InvalidField { field: "end_date", reason: format!("required for kind {}", kind.as_str()) }.into());
    }
    if matches!(end_date, Some(end) if end < start_date) {
        return Err(InvalidField { field: "end_date", reason: "must not be before start_date".into() }.into());
    }
    // A person whose last day is already behind them could never log in: registering them
    // as active would only hide the mistake until their first login failed.
    let today = today_in_japan(now);
    if matches!(end_date, Some(end) if end < today) {
        let reason = format!("has already passed (today is {} in Japan)", types::format_date(today));
        return Err(InvalidField { field: "end_date", reason }.into());
    }
    let email = new.email.as_deref().map(types::parse_email).transpose()?;
    if let Some(org) = &new.org_unit_id {
        if get_org_unit(&mut **tx, org).await?.is_none() {
            return Err(InvalidField { field: "org_unit_id", reason: "no such org unit".into() }.into());
        }
    }
    let person = Person {
        id: uuid::Uuid::new_v4().to_string(),
        employee_number: employee_number.as_str().to_owned(),
        family_name: types::parse_name("family_name", &new.family_name)?,
        given_name: types::parse_name("given_name", &new.given_name)?,
        family_name_kana: optional_kana("family_name_kana", &new.family_name_kana)?,
        given_name_kana: optional_kana("given_name_kana", &new.given_name_kana)?,
        birth_date: birth_date.map(types::format_date),
        kind,
        org_unit_id: new.org_unit_id,
        email,
        status: PersonStatus::Active,
        start_date: types::format_date(start_date),
        end_date: end_date.map(types::format_date),
    };
    sqlx::query(
        "INSERT INTO people (id, employee_number, family_name, given_name, family_name_kana, given_name_kana,
             birth_date, kind, org_unit_id, email, status, start_date, end_date, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
    )
    .bind(&person.id)
    .bind(&person.employee_number)
    .bind(&person.family_name)
    .bind(&person.given_name)
    .bind(&person.family_name_kana)
    .bind(&person.given_name_kana)
    .bind(person.birth_date.as_deref())
    .bind(person.kind.as_str())
    .bind(person.org_unit_id.as_deref())
    .bind(person.email.as_deref())
    .bind(person.status.as_str())
    .bind(&person.start_date)
    .bind(person.end_date.as_deref())
    .bind(now)
    .execute(&mut **tx)
    .await
    .on_constraint([(
        "people_employee_number_unique",
        "people.employee_number",
        DirectoryError::Conflict("a person with this employee number already exists"),
    )])?;
    // The audit detail names the person by employee number only: no birth date in the log.
    Event::success(
        actor,
        "person.create",
        format!("person:{}", person.id),
        serde_json::json!({"employee_number": person.employee_number, "kind": kind.as_str()}),
    )
    .record(tx, now)
    .await?;
    Ok(person)
}

/// A reading, or empty when the source has none (an HR feed over SCIM sends no kana). The
/// admin API still demands one (`admin::create_person`).
fn optional_kana(field: &'static str, value: &str) -> Result<String, InvalidField> {
    if value.trim().is_empty() {
        Ok(String::new())
    } else {
        types::parse_kana(field, value)
    }
}

const PERSON_COLUMNS: &str = "id, employee_number, family_name, given_name, family_name_kana, given_name_kana, \
     birth_date, kind, org_unit_id, email, status, start_date, end_date";

fn person_from_row(row: &sqlx::any::AnyRow) -> Result<Person, DirectoryError> {
    person_from_prefixed_row(row, "")
}

/// A person read from columns named `<prefix><column>` (a query that reads other tables too).
fn person_from_prefixed_row(row: &sqlx::any::AnyRow, prefix: &str) -> Result<Person, DirectoryError> {
    let column = |name: &str| format!("{prefix}{name}");
    let kind: String = row.try_get(column("kind").as_str())?;
    let status: String = row.try_get(column("status").as_str())?;
    Ok(Person {
        id: row.try_get(column("id").as_str())?,
        employee_number: row.try_get(column("employee_number").as_str())?,
        family_name: row.try_get(column("family_name").as_str())?,
        given_name: row.try_get(column("given_name").as_str())?,
        family_name_kana: row.try_get(column("family_name_kana").as_str())?,
        given_name_kana: row.try_get(column("given_name_kana").as_str())?,
        birth_date: row.try_get(column("birth_date").as_str())?,
        kind: PersonKind::parse(&kind)?,
        org_unit_id: row.try_get(column("org_unit_id").as_str())?,
        email: row.try_get(column("email").as_str())?,
        status: PersonStatus::parse(&status)?,
        start_date: row.try_get(column("start_date").as_str())?,
        end_date: row.try_get(column("end_date").as_str())?,
    })
}

pub async fn get_person<'e, E>(executor: E, id: &str) -> Result<Option<Person>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {PERSON_COLUMNS} FROM people WHERE id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(person_from_row).transpose()
}

/// The person HR knows by `employee_number`, whatever their status.
pub async fn person_by_employee_number<'e, E>(
    executor: E,
    employee_number: &EmployeeNumber,
) -> Result<Option<Person>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {PERSON_COLUMNS} FROM people WHERE employee_number = $1"))
        .bind(employee_number.as_str())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(person_from_row).transpose()
}

/// How the audit log names a person and their account, as actor or target: the person, the
/// account, and the login ID a failed login names (it may not know whose it is).
pub async fn audit_names<'e, E>(executor: E, person_id: &str) -> Result<Vec<String>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut names = vec![format!("person:{person_id}")];
    let row = sqlx::query("SELECT id, login_id FROM accounts WHERE person_id = $1")
        .bind(person_id)
        .fetch_optional(executor)
        .await?;
    if let Some(row) = row {
        let id: String = row.try_get("id")?;
        let login_id: String = row.try_get("login_id")?;
        names.push(format!("account:{id}"));
        names.push(format!("login_id:{login_id}"));
    }
    Ok(names)
}

/// The login ID of a person's account, if they have one.
pub async fn login_id_of<'e, E>(executor: E, person_id: &str) -> Result<Option<String>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT login_id FROM accounts WHERE person_id = $1")
        .bind(person_id)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(|r| r.try_get("login_id")).transpose()?)
}

// ---------- accounts ----------

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub id: String,
    pub person_id: String,
    pub login_id: String,
    pub status: String,
}

/// An account's first password, already checked against the password policy.
#[derive(Debug, Clone)]
pub struct InitialPassword<'a> {
    /// argon2id PHC string.
    pub hash: &'a str,
    /// Keyed fingerprint (see `password::policy::fingerprint`).
    pub fingerprint: &'a str,
    /// Whether the person must change it at first login (true when someone else chose it).
    pub must_change: bool,
}

/// Creates the person's one account, with a first password or none (the person then cannot
/// log in with a password until a reset link is used).
pub async fn create_account(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    person_id: &str,
    login_id: &LoginId,
    password: Option<InitialPassword<'_>>,
) -> Result<Account, DirectoryError> {
    if get_person(&mut **tx, person_id).await?.is_none() {
        return Err(DirectoryError::NotFound("person"));
    }
    let account = Account {
        id: uuid::Uuid::new_v4().to_string(),
        person_id: person_id.to_owned(),
        login_id: login_id.as_str().to_owned(),
        status: "active".into(),
    };
    sqlx::query(
        "INSERT INTO accounts (id, person_id, login_id, password_hash, password_fingerprint, password_changed_at,
             must_change_password, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)",
    )
    .bind(&account.id)
    .bind(person_id)
    .bind(&account.login_id)
    .bind(password.as_ref().map(|p| p.hash))
    .bind(password.as_ref().map(|p| p.fingerprint))
    .bind(password.as_ref().map(|_| now))
    .bind(i64::from(password.as_ref().is_some_and(|p| p.must_change)))
    .bind(now)
    .execute(&mut **tx)
    .await
    .on_constraint([
        (
            "accounts_person_unique",
            "accounts.person_id",
            DirectoryError::Conflict("this person already has an account (one login ID per person)"),
        ),
        ("accounts_login_id_unique", "accounts.login_id", DirectoryError::Conflict("this login ID is already in use")),
        (
            // R9: another account holds this password now.
            "accounts_password_fingerprint_unique",
            "accounts.password_fingerprint",
            DirectoryError::Invalid(InvalidField {
                field: "password",
                reason: "cannot be used: passwords may not be shared between people".into(),
            }),
        ),
    ])?;
    if let Some(password) = &password {
        sqlx::query("INSERT INTO password_history (account_id, fingerprint, created_at) VALUES ($1, $2, $3)")
            .bind(&account.id)
            .bind(password.fingerprint)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Event::success(
        actor,
        "account.create",
        format!("account:{}", account.id),
        serde_json::json!({"person_id": person_id, "login_id": account.login_id}),
    )
    .record(tx, now)
    .await?;
    Ok(account)
}

/// What login and the password rules need to know about an account.
#[derive(Debug, Clone)]
pub struct LoginAccount {
    pub account_id: String,
    pub login_id: String,
    /// The account is active and no emergency stop holds the person (R17): what every login
    /// (password or card) checks.
    pub account_active: bool,
    pub password_hash: Option<String>,
    pub password_changed_at: Option<i64>,
    pub must_change_password: bool,
    pub locked_until: Option<i64>,
    pub person: Person,
}

fn login_account_query(condition: &str) -> String {
    format!(
        "SELECT a.id AS account_id, a.login_id, a.status AS account_status, a.password_hash,
             a.password_changed_at, a.must_change_password, a.locked_until, {} AS emergency_stops, {}
         FROM accounts a JOIN people p ON p.id = a.person_id WHERE {condition}",
        stops::stops_in_force_sql(stops::Kind::Person, "a.person_id"),
        PERSON_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
    )
}

fn login_account_from_row(row: &sqlx::any::AnyRow) -> Result<LoginAccount, DirectoryError> {
    let status: String = row.try_get("account_status")?;
    let must_change: i64 = row.try_get("must_change_password")?;
    let stops: i64 = row.try_get("emergency_stops")?;
    Ok(LoginAccount {
        account_id: row.try_get("account_id")?,
        login_id: row.try_get("login_id")?,
        account_active: status == "active" && stops == 0,
        password_hash: row.try_get("password_hash")?,
        password_changed_at: row.try_get("password_changed_at")?,
        must_change_password: must_change != 0,
        locked_until: row.try_get("locked_until")?,
        person: person_from_row(row)?,
    })
}

pub async fn find_login_account(store: &Store, login_id: &LoginId) -> Result<Option<LoginAccount>, DirectoryError> {
    let row = sqlx::query(&login_account_query("a.login_id = $1"))
        .bind(login_id.as_str())
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(login_account_from_row).transpose()
}

pub async fn get_login_account<'e, E>(executor: E, account_id: &str) -> Result<Option<LoginAccount>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&login_account_query("a.id = $1")).bind(account_id).fetch_optional(executor).await?;
    row.as_ref().map(login_account_from_row).transpose()
}

/// The account of a person, if they have one.
pub async fn account_of_person<'e, E>(executor: E, person_id: &str) -> Result<Option<LoginAccount>, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&login_account_query("a.person_id = $1")).bind(person_id).fetch_optional(executor).await?;
    row.as_ref().map(login_account_from_row).transpose()
}

/// Whether the person still may use Sekimori (account active, in service, no emergency stop):
/// the one check every grant repeats.
pub async fn person_may_log_in<'e, E>(executor: E, person_id: &str, today: Date) -> Result<bool, DirectoryError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {} FROM people p JOIN accounts a ON a.person_id = p.id WHERE p.id = $1",
        login_state_columns("p", "a")
    ))
    .bind(person_id)
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else { return Ok(false) };
    Ok(login_state_from_row(&row, today)?.is_some_and(|state| state.may_log_in))
}

/// A person as a live-state check reads them, with the answer to [`person_may_log_in`].
#[derive(Debug, Clone)]
pub struct LoginState {
    pub person: Person,
    /// Account active, in service today, no emergency stop.
    pub may_log_in: bool,
}

/// The columns (named `person_…`) a live-state check selects from `people` under `person` and
/// `accounts` under `account`, the emergency stop included: what [`login_state_from_row`]
/// reads, so that a token check reads the person in the same query as the rest.
pub fn login_state_columns(person: &str, account: &str) -> String {
    let mut columns: Vec<String> = PERSON_COLUMNS.split(", ").map(|c| format!("{person}.{c} AS person_{c}")).collect();
    columns.push(format!("{account}.status AS person_account_status"));
    let stops = stops::stops_in_force_sql(stops::Kind::Person, &format!("{person}.id"));
    columns.push(format!("{stops} AS person_stops"));
    columns.join(", ")
}

/// Reads [`login_state_columns`]; None when the row has no person (an outer join found none).
/// A person without an account may not log in.
pub fn login_state_from_row(row: &sqlx::any::AnyRow, today: Date) -> Result<Option<LoginState>, DirectoryError> {
    if row.try_get::<Option<String>, _>("person_id")?.is_none() {
        return Ok(None);
    }
    let person = person_from_prefixed_row(row, "person_")?;
    let account_status: Option<String> = row.try_get("person_account_status")?;
    let stops: i64 = row.try_get("person_stops")?;
    let may_log_in = account_status.as_deref() == Some("active") && stops == 0 && person.may_log_in(today);
    Ok(Some(LoginState { person, may_log_in }))
}

/// Today's date in Japan, where the employment dates are kept.
pub fn today_in_japan(now: UnixTime) -> Date {
    time::OffsetDateTime::from_unix_timestamp(now).map(|t| t.to_offset(crate::clock::JAPAN).date()).unwrap_or(Date::MIN)
}
