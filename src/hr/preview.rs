//! A manager's preview (issue 11): what will change in one section on or before a date —
//! who arrives, who departs, who leaves, which concurrent posts begin or end — from the changes
//! waiting to be applied, and from batches the safety valve holds (marked as such, since an
//! administrator may still discard them).

use sqlx::Row;
use time::Date;

use super::changes::Action;
use crate::directory::types::{format_date, parse_date};
use crate::directory::{DirectoryError, EmployeeNumber};
use crate::store::Store;

/// What a change means for the section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// 着任: joins the section, by a move or as a joiner.
    Arrival,
    /// 転出: moves from the section to another.
    Departure,
    /// 退職: leaves the municipality from the section.
    Leaver,
    /// 兼務発令: a concurrent post in the section begins.
    PostBegins,
    /// 兼務解除: a concurrent post in the section ends.
    PostEnds,
}

impl Effect {
    pub fn label(self) -> &'static str {
        match self {
            Effect::Arrival => "着任 (arrival)",
            Effect::Departure => "転出 (departure)",
            Effect::Leaver => "退職 (leaver)",
            Effect::PostBegins => "兼務発令 (post begins)",
            Effect::PostEnds => "兼務解除 (post ends)",
        }
    }
}

/// One line of the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub effective_date: Date,
    pub effect: Effect,
    pub employee_number: String,
    /// 姓 名, when the person or the joiner's row gives it.
    pub name: Option<String>,
    /// The other section of a move (where they come from, or go to).
    pub other_section: Option<String>,
    /// Held by the safety valve in this batch: an administrator may still discard it.
    pub held_in: Option<String>,
}

struct Person {
    name: String,
    section: Option<String>,
}

/// The changes on or before `until` that concern the section `code`, by date.
pub async fn section(store: &Store, code: &str, until: Date) -> Result<Vec<Entry>, DirectoryError> {
    if crate::directory::org_unit_by_code(store.pool(), code).await?.is_none() {
        return Err(DirectoryError::NotFound("org unit"));
    }
    let until_text = format_date(until);
    let mut waiting: Vec<(String, String, Action, Option<String>)> = Vec::new();
    for row in sqlx::query(
        "SELECT employee_number, effective_date, payload FROM person_changes
         WHERE status = 'pending' AND effective_date <= $1",
    )
    .bind(&until_text)
    .fetch_all(store.pool())
    .await?
    {
        let action = serde_json::from_str(&row.try_get::<String, _>("payload")?)
            .map_err(|e| crate::directory::InvalidField { field: "payload", reason: format!("unreadable: {e}") })?;
        waiting.push((row.try_get("employee_number")?, row.try_get("effective_date")?, action, None));
    }
    for batch in super::batches::held(store).await? {
        for change in super::batches::held_changes(store, &batch.id).await? {
            if change.effective_date <= until_text {
                waiting.push((change.employee_number, change.effective_date, change.action, Some(batch.id.clone())));
            }
        }
    }
    let mut entries = Vec::new();
    for (employee_number, date, action, held_in) in waiting {
        let person = person(store, &employee_number).await?;
        let here = person.as_ref().and_then(|p| p.section.as_deref()) == Some(code);
        let (effect, other_section, row_name) = match &action {
            Action::Join(joiner) if joiner.org_unit_code.as_deref() == Some(code) => {
                (Effect::Arrival, None, Some(format!("{} {}", joiner.family_name, joiner.given_name)))
            }
            Action::Move { org_unit_code } if org_unit_code == code && !here => {
                (Effect::Arrival, person.as_ref().and_then(|p| p.section.clone()), None)
            }
            Action::Move { org_unit_code } if org_unit_code != code && here => {
                (Effect::Departure, Some(org_unit_code.clone()), None)
            }
            Action::Leave if here => (Effect::Leaver, None, None),
            Action::AddPost { org_unit_code } if org_unit_code == code => (Effect::PostBegins, None, None),
            Action::EndPost { org_unit_code } if org_unit_code == code => (Effect::PostEnds, None, None),
            _ => continue,
        };
        entries.push(Entry {
            effective_date: parse_date("effective_date", &date)?,
            effect,
            name: row_name.or(person.map(|p| p.name)),
            employee_number,
            other_section,
            held_in,
        });
    }
    entries.sort_by(|a, b| {
        (a.effective_date, a.effect, &a.employee_number).cmp(&(b.effective_date, b.effect, &b.employee_number))
    });
    Ok(entries)
}

async fn person(store: &Store, employee_number: &str) -> Result<Option<Person>, DirectoryError> {
    let Ok(number) = EmployeeNumber::parse(employee_number) else { return Ok(None) };
    let row = sqlx::query(
        "SELECT p.family_name, p.given_name, o.code FROM people p LEFT JOIN org_units o ON o.id = p.org_unit_id
         WHERE p.employee_number = $1",
    )
    .bind(number.as_str())
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let family: String = row.try_get("family_name")?;
    let given: String = row.try_get("given_name")?;
    Ok(Some(Person { name: format!("{family} {given}"), section: row.try_get("code")? }))
}
