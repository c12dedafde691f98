//! Who decides for whom, read from the org tree: the sections a person works in (their unit
//! and concurrent posts, with every unit above them), the manager who decides for a unit (the
//! nearest unit upwards that has one), and designated deputies (代理) inside their dates.

use sqlx::Row;
use time::Date;

use crate::directory::types::format_date;
use crate::store::Tx;

/// How deep an org tree may go before a loop in it is assumed (部 → 課 → 係 is three).
const MAX_DEPTH: usize = 16;

/// In which capacity a person decides for a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    Manager,
    Deputy,
}

impl Capacity {
    pub fn as_str(self) -> &'static str {
        match self {
            Capacity::Manager => "manager",
            Capacity::Deputy => "deputy",
        }
    }
}

/// `unit_id` and the units above it, nearest first, each with its manager.
pub async fn chain(tx: &mut Tx, unit_id: &str) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let mut chain = Vec::new();
    let mut next = Some(unit_id.to_owned());
    while let Some(id) = next.take() {
        if chain.len() >= MAX_DEPTH || chain.iter().any(|(seen, _)| *seen == id) {
            break;
        }
        let Some(row) = sqlx::query("SELECT parent_id, manager_person_id FROM org_units WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut **tx)
            .await?
        else {
            break;
        };
        next = row.try_get("parent_id")?;
        chain.push((id, row.try_get("manager_person_id")?));
    }
    Ok(chain)
}

/// The units a person works in today: their unit and their open concurrent posts.
pub async fn units_of(tx: &mut Tx, person_id: &str, today: Date) -> Result<Vec<String>, sqlx::Error> {
    let today = format_date(today);
    let rows = sqlx::query(
        "SELECT org_unit_id FROM people WHERE id = $1 AND org_unit_id IS NOT NULL
         UNION
         SELECT org_unit_id FROM person_posts
         WHERE person_id = $1 AND start_date <= $2 AND (end_date IS NULL OR end_date >= $2)",
    )
    .bind(person_id)
    .bind(today)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| r.try_get("org_unit_id")).collect()
}

/// Whether the person works today inside `section` (in it, or in a unit below it).
pub async fn works_in(tx: &mut Tx, person_id: &str, section: &str, today: Date) -> Result<bool, sqlx::Error> {
    for unit in units_of(tx, person_id, today).await? {
        if chain(tx, &unit).await?.iter().any(|(id, _)| id == section) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The unit whose manager decides for `unit_id`: the nearest, from the unit upwards, that has a
/// manager other than `not_person` (nobody decides their own request: a manager's request goes
/// to the manager above them).
pub async fn deciding_unit(tx: &mut Tx, unit_id: &str, not_person: &str) -> Result<Option<String>, sqlx::Error> {
    Ok(chain(tx, unit_id)
        .await?
        .into_iter()
        .find(|(_, manager)| manager.as_deref().is_some_and(|m| m != not_person))
        .map(|(id, _)| id))
}

/// In which capacity `person_id` decides for `unit_id` on `today`, if at all: its manager, or a
/// deputy designated for it whose dates include today.
pub async fn capacity(
    tx: &mut Tx,
    person_id: &str,
    unit_id: &str,
    today: Date,
) -> Result<Option<Capacity>, sqlx::Error> {
    let manages = sqlx::query("SELECT 1 AS yes FROM org_units WHERE id = $1 AND manager_person_id = $2")
        .bind(unit_id)
        .bind(person_id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if manages {
        return Ok(Some(Capacity::Manager));
    }
    let deputy = sqlx::query(
        "SELECT 1 AS yes FROM deputies WHERE org_unit_id = $1 AND deputy_person_id = $2 AND revoked_at IS NULL
         AND valid_from <= $3 AND valid_until >= $3",
    )
    .bind(unit_id)
    .bind(person_id)
    .bind(format_date(today))
    .fetch_optional(&mut **tx)
    .await?
    .is_some();
    Ok(deputy.then_some(Capacity::Deputy))
}

/// Everyone who may decide for `unit_id` today: its manager and its deputies in their dates.
pub async fn deciders(tx: &mut Tx, unit_id: &str, today: Date) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT manager_person_id AS person_id FROM org_units WHERE id = $1 AND manager_person_id IS NOT NULL
         UNION
         SELECT deputy_person_id AS person_id FROM deputies WHERE org_unit_id = $1 AND revoked_at IS NULL
         AND valid_from <= $2 AND valid_until >= $2",
    )
    .bind(unit_id)
    .bind(format_date(today))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| r.try_get("person_id")).collect()
}

/// The units `person_id` decides for today, with the capacity.
pub async fn units_decided_by(
    tx: &mut Tx,
    person_id: &str,
    today: Date,
) -> Result<Vec<(String, Capacity)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, 'manager' AS capacity FROM org_units WHERE manager_person_id = $1
         UNION
         SELECT org_unit_id AS id, 'deputy' AS capacity FROM deputies WHERE deputy_person_id = $1
         AND revoked_at IS NULL AND valid_from <= $2 AND valid_until >= $2",
    )
    .bind(person_id)
    .bind(format_date(today))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let capacity: String = r.try_get("capacity")?;
            Ok((r.try_get("id")?, if capacity == "manager" { Capacity::Manager } else { Capacity::Deputy }))
        })
        .collect()
}
