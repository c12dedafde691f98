//! What each consuming system declares: its roles, each with a classification, a longest grant
//! and a review interval, the roles it may not be held with (separation of duties), and whether
//! a login needs at least one role.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{AccessError, Classification};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::invalid::InvalidField;
use crate::store::Tx;

/// The longest grant a role may declare (ten years): longer is "forever" by another name.
pub const MAX_DURATION_DAYS: i64 = 3650;

/// A role a system declares.
#[derive(Debug, Clone, Serialize)]
pub struct Role {
    pub id: String,
    pub client_id: String,
    /// What the `roles` claim carries.
    pub name: String,
    pub label: String,
    pub label_en: Option<String>,
    pub classification: Classification,
    pub max_duration_days: Option<i64>,
    pub review_interval_days: Option<i64>,
    /// Names of the roles of the same system it may not be held with.
    pub incompatible_with: Vec<String>,
    pub retired: bool,
}

/// A role as an administrator declares it (the whole of it: declaring again replaces it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub label: String,
    #[serde(default)]
    pub label_en: Option<String>,
    pub classification: Classification,
    #[serde(default)]
    pub max_duration_days: Option<i64>,
    #[serde(default)]
    pub review_interval_days: Option<i64>,
    #[serde(default)]
    pub incompatible_with: Vec<String>,
}

/// A consuming system as access sees it.
#[derive(Debug, Clone)]
pub struct System {
    pub client_id: String,
    pub name: String,
    /// The section that owns it, whose manager approves access.
    pub owner_org_unit_id: Option<String>,
    pub requires_role: bool,
    pub active: bool,
}

pub async fn system<'e, E>(executor: E, client_id: &str) -> Result<Option<System>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT client_id, name, owner_org_unit_id, requires_role, status FROM clients WHERE client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(executor)
    .await?;
    row.map(|r| {
        Ok(System {
            client_id: r.try_get("client_id")?,
            name: r.try_get("name")?,
            owner_org_unit_id: r.try_get("owner_org_unit_id")?,
            requires_role: r.try_get::<i64, _>("requires_role")? != 0,
            active: r.try_get::<String, _>("status")? == "active",
        })
    })
    .transpose()
}

/// A column (`system_requires_role`) saying whether the system `client` (a column or
/// parameter) lets nobody log in without a role, for a query that reads the person's roles
/// too; read it with [`requires_role_from_row`].
pub fn requires_role_column(client: &str) -> String {
    format!("(SELECT rc.requires_role FROM clients rc WHERE rc.client_id = {client}) AS system_requires_role")
}

/// Reads [`requires_role_column`] (an unknown system requires nothing).
pub fn requires_role_from_row(row: &sqlx::any::AnyRow) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>("system_requires_role")?.is_some_and(|r| r != 0))
}

/// A role name: what a consuming system's code compares, so plain and short.
pub fn check_name(name: &str) -> Result<(), InvalidField> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(InvalidField {
            field: "name",
            reason: "must be 1 to 64 letters, digits, '_', '-', '.' or ':', starting with a letter or digit".into(),
        })
    }
}

fn check_label(field: &'static str, label: &str) -> Result<(), InvalidField> {
    let count = label.trim().chars().count();
    if count == 0 || count > 100 || label.chars().any(char::is_control) {
        return Err(InvalidField { field, reason: "must be 1 to 100 characters without control characters".into() });
    }
    Ok(())
}

fn check_days(field: &'static str, days: Option<i64>) -> Result<(), InvalidField> {
    match days {
        Some(d) if !(1..=MAX_DURATION_DAYS).contains(&d) => {
            Err(InvalidField { field, reason: format!("must be 1 to {MAX_DURATION_DAYS} days") })
        }
        _ => Ok(()),
    }
}

/// Declares (or declares again, replacing) role `name` of system `client_id`.
pub async fn declare_role(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    client_id: &str,
    name: &str,
    spec: RoleSpec,
) -> Result<Role, AccessError> {
    check_name(name)?;
    check_label("label", &spec.label)?;
    if let Some(en) = &spec.label_en {
        check_label("label_en", en)?;
    }
    check_days("max_duration_days", spec.max_duration_days)?;
    check_days("review_interval_days", spec.review_interval_days)?;
    if system(&mut **tx, client_id).await?.is_none() {
        return Err(AccessError::NotFound("system"));
    }
    let mut others = Vec::new();
    for other in &spec.incompatible_with {
        if other == name {
            return Err(
                InvalidField { field: "incompatible_with", reason: "a role cannot exclude itself".into() }.into()
            );
        }
        // Checked before it is looked up: PostgreSQL answers a NUL in text with an error.
        let declared = match check_name(other) {
            Ok(()) => role_by_name(&mut **tx, client_id, other).await?,
            Err(_) => None,
        };
        let Some(role) = declared else {
            return Err(InvalidField {
                field: "incompatible_with",
                reason: format!("the system declares no role {other}"),
            }
            .into());
        };
        // Named twice, stored once (the pair is the table's key).
        if !others.contains(&role.id) {
            others.push(role.id);
        }
    }
    let existing = role_by_name(&mut **tx, client_id, name).await?;
    let id = match &existing {
        Some(role) => {
            sqlx::query(
                "UPDATE system_roles SET label = $1, label_en = $2, classification = $3, max_duration_days = $4,
                     review_interval_days = $5, retired_at = NULL WHERE id = $6",
            )
            .bind(spec.label.trim())
            .bind(spec.label_en.as_deref().map(str::trim))
            .bind(spec.classification.as_str())
            .bind(spec.max_duration_days)
            .bind(spec.review_interval_days)
            .bind(&role.id)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM role_incompatibilities WHERE role_a = $1 OR role_b = $1")
                .bind(&role.id)
                .execute(&mut **tx)
                .await?;
            role.id.clone()
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO system_roles (id, client_id, name, label, label_en, classification, max_duration_days,
                                           review_interval_days, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&id)
            .bind(client_id)
            .bind(name)
            .bind(spec.label.trim())
            .bind(spec.label_en.as_deref().map(str::trim))
            .bind(spec.classification.as_str())
            .bind(spec.max_duration_days)
            .bind(spec.review_interval_days)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            id
        }
    };
    for other in others {
        let (a, b) = if id < other { (id.clone(), other) } else { (other, id.clone()) };
        sqlx::query("INSERT INTO role_incompatibilities (role_a, role_b) VALUES ($1, $2)")
            .bind(a)
            .bind(b)
            .execute(&mut **tx)
            .await?;
    }
    let role = role_by_id(tx, &id).await?.ok_or(AccessError::NotFound("role"))?;
    Event::success(
        actor,
        if existing.is_some() { "access.role_redeclared" } else { "access.role_declared" },
        format!("client:{client_id}"),
        serde_json::json!({
            "role": role.name, "classification": role.classification.as_str(),
            "max_duration_days": role.max_duration_days, "review_interval_days": role.review_interval_days,
            "incompatible_with": role.incompatible_with,
        }),
    )
    .record(tx, now)
    .await?;
    // A role's class decides which logins carry it: what a node keeps of tokens is read again.
    crate::store::changes::announce(tx, crate::store::changes::Change::People).await?;
    Ok(role)
}

/// Retires a role: nobody can ask for it any more, and every grant of it ends now.
pub async fn retire_role(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    client_id: &str,
    name: &str,
) -> Result<u64, AccessError> {
    let role = role_by_name(&mut **tx, client_id, name).await?.ok_or(AccessError::NotFound("role"))?;
    if role.retired {
        return Err(AccessError::Conflict("the role is already retired".into()));
    }
    sqlx::query("UPDATE system_roles SET retired_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&role.id)
        .execute(&mut **tx)
        .await?;
    let pending = sqlx::query(
        "UPDATE access_requests SET status = 'withdrawn', decided_at = $1 WHERE role_id = $2 AND status = 'pending'",
    )
    .bind(now)
    .bind(&role.id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let ended = super::grants::end_all_of_role(tx, actor, now, &role.id, "role_retired").await?;
    Event::success(
        actor,
        "access.role_retired",
        format!("client:{client_id}"),
        serde_json::json!({"role": role.name, "grants_ended": ended, "requests_withdrawn": pending}),
    )
    .record(tx, now)
    .await?;
    Ok(ended)
}

/// Whether a login to the system needs at least one role.
pub async fn set_requires_role(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    client_id: &str,
    requires: bool,
) -> Result<(), AccessError> {
    let changed = sqlx::query("UPDATE clients SET requires_role = $1 WHERE client_id = $2")
        .bind(i64::from(requires))
        .bind(client_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(AccessError::NotFound("system"));
    }
    Event::success(
        actor,
        "access.requires_role",
        format!("client:{client_id}"),
        serde_json::json!({"requires_role": requires}),
    )
    .record(tx, now)
    .await?;
    Ok(())
}

const ROLE_COLUMNS: &str =
    "id, client_id, name, label, label_en, classification, max_duration_days, review_interval_days, retired_at";

pub async fn role_by_name<'e, E>(executor: E, client_id: &str, name: &str) -> Result<Option<Role>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!("SELECT {ROLE_COLUMNS} FROM system_roles WHERE client_id = $1 AND name = $2");
    let row = sqlx::query(&sql).bind(client_id).bind(name).fetch_optional(executor).await?;
    row.map(|r| role_from_row(&r)).transpose()
}

/// A role with the names of the roles it excludes.
pub async fn role_by_id(tx: &mut sqlx::AnyConnection, id: &str) -> Result<Option<Role>, sqlx::Error> {
    let sql = format!("SELECT {ROLE_COLUMNS} FROM system_roles WHERE id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await? else { return Ok(None) };
    let mut role = role_from_row(&row)?;
    role.incompatible_with = incompatible_names(tx, id).await?;
    Ok(Some(role))
}

async fn incompatible_names(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.name FROM role_incompatibilities i JOIN system_roles r
             ON r.id = CASE WHEN i.role_a = $1 THEN i.role_b ELSE i.role_a END
         WHERE i.role_a = $1 OR i.role_b = $1 ORDER BY r.name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

/// The roles a system declares, retired ones included (they are marked), by name.
pub async fn roles_of(conn: &mut sqlx::AnyConnection, client_id: &str) -> Result<Vec<Role>, sqlx::Error> {
    let sql = format!("SELECT {ROLE_COLUMNS} FROM system_roles WHERE client_id = $1 ORDER BY name");
    let rows = sqlx::query(&sql).bind(client_id).fetch_all(&mut *conn).await?;
    let mut roles = rows.iter().map(role_from_row).collect::<Result<Vec<_>, _>>()?;
    for role in &mut roles {
        role.incompatible_with = incompatible_names(conn, &role.id).await?;
    }
    Ok(roles)
}

/// The live grants of `person_id` on roles `role_id` excludes, by role label: what makes a
/// request or grant of it a separation-of-duties breach.
pub async fn conflicts_of(tx: &mut Tx, person_id: &str, role_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.name FROM role_incompatibilities i
         JOIN system_roles r ON r.id = CASE WHEN i.role_a = $1 THEN i.role_b ELSE i.role_a END
         WHERE (i.role_a = $1 OR i.role_b = $1)
           AND (EXISTS (SELECT 1 FROM access_grants g WHERE g.person_id = $2 AND g.role_id = r.id AND g.ended_at IS NULL)
             OR EXISTS (SELECT 1 FROM access_requests q WHERE q.person_id = $2 AND q.role_id = r.id AND q.status = 'pending'))
         ORDER BY r.name",
    )
    .bind(role_id)
    .bind(person_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

fn role_from_row(row: &sqlx::any::AnyRow) -> Result<Role, sqlx::Error> {
    let classification: String = row.try_get("classification")?;
    Ok(Role {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        label: row.try_get("label")?,
        label_en: row.try_get("label_en")?,
        classification: Classification::parse(&classification).unwrap_or(Classification::Secret),
        max_duration_days: row.try_get("max_duration_days")?,
        review_interval_days: row.try_get("review_interval_days")?,
        incompatible_with: Vec::new(),
        retired: row.try_get::<Option<i64>, _>("retired_at")?.is_some(),
    })
}

/// A system people can be given roles on, with the roles in use: what the pages offer to be
/// requested, granted directly and reviewed.
#[derive(Debug, Clone)]
pub struct Offered {
    pub system: System,
    /// Not retired, by name, each with the names it excludes.
    pub roles: Vec<Role>,
}

/// Every active system with an owning section, by name, with its roles in use (a system that
/// declares none is listed with none). Three queries, however many systems and roles.
pub async fn offered(conn: &mut sqlx::AnyConnection) -> Result<Vec<Offered>, sqlx::Error> {
    let systems = sqlx::query(
        "SELECT client_id, name, owner_org_unit_id, requires_role, status FROM clients
         WHERE status = 'active' AND owner_org_unit_id IS NOT NULL ORDER BY name, client_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let sql = format!("SELECT {ROLE_COLUMNS} FROM system_roles WHERE retired_at IS NULL ORDER BY client_id, name");
    let mut roles =
        sqlx::query(&sql).fetch_all(&mut *conn).await?.iter().map(role_from_row).collect::<Result<Vec<_>, _>>()?;
    let pairs = sqlx::query(
        "SELECT a.id AS a_id, a.name AS a_name, b.id AS b_id, b.name AS b_name FROM role_incompatibilities i
         JOIN system_roles a ON a.id = i.role_a JOIN system_roles b ON b.id = i.role_b",
    )
    .fetch_all(&mut *conn)
    .await?;
    for pair in &pairs {
        let (a_id, a_name): (String, String) = (pair.try_get("a_id")?, pair.try_get("a_name")?);
        let (b_id, b_name): (String, String) = (pair.try_get("b_id")?, pair.try_get("b_name")?);
        for role in &mut roles {
            if role.id == a_id {
                role.incompatible_with.push(b_name.clone());
            } else if role.id == b_id {
                role.incompatible_with.push(a_name.clone());
            }
        }
    }
    let mut offered = Vec::with_capacity(systems.len());
    for row in &systems {
        let system = System {
            client_id: row.try_get("client_id")?,
            name: row.try_get("name")?,
            owner_org_unit_id: row.try_get("owner_org_unit_id")?,
            requires_role: row.try_get::<i64, _>("requires_role")? != 0,
            active: true,
        };
        let mut own: Vec<Role> = roles.iter().filter(|r| r.client_id == system.client_id).cloned().collect();
        for role in &mut own {
            role.incompatible_with.sort();
        }
        offered.push(Offered { system, roles: own });
    }
    Ok(offered)
}
