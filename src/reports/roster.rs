//! What the reports say about a person, read once per report: who they are, their section and
//! login ID, and when they last logged in (from the audit log, the one record of logins).

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::Store;

/// A person as a report names them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Named {
    pub person_id: String,
    pub employee_number: String,
    pub name: String,
    /// The section's code and name, `KAZEI 課税課`.
    pub org_unit: String,
    #[serde(skip)]
    pub org_unit_id: Option<String>,
    pub login_id: Option<String>,
}

/// One person of the directory with their account.
#[derive(Debug, Clone)]
pub struct Member {
    pub named: Named,
    pub kind: String,
    pub status: String,
    pub end_date: Option<String>,
    pub account_id: Option<String>,
    pub account_active: bool,
    pub account_created_at: Option<UnixTime>,
    pub password_set: bool,
    pub password_changed_at: Option<UnixTime>,
}

impl Member {
    /// Active, and not past their end date on `today` (`YYYY-MM-DD`): a person whose last day
    /// has passed is a leaver in the reports, whatever their recorded status.
    pub fn in_service(&self, today: &str) -> bool {
        self.status == "active" && self.end_date.as_deref().is_none_or(|end| end >= today)
    }
}

/// Everyone, by person id.
pub struct Roster {
    pub members: HashMap<String, Member>,
    /// Org unit id → `CODE 名称`.
    pub units: HashMap<String, String>,
}

impl Roster {
    pub async fn load(store: &Store) -> Result<Roster, sqlx::Error> {
        let pool = store.pool();
        let mut units = HashMap::new();
        for row in sqlx::query("SELECT id, code, name FROM org_units").fetch_all(pool).await? {
            let code: String = row.try_get("code")?;
            let name: String = row.try_get("name")?;
            units.insert(row.try_get::<String, _>("id")?, format!("{code} {name}"));
        }
        let rows = sqlx::query(
            "SELECT p.id, p.employee_number, p.family_name, p.given_name, p.org_unit_id, p.kind, p.status, p.end_date,
                    a.id AS account_id, a.login_id, a.status AS account_status, a.created_at AS account_created_at,
                    a.password_hash, a.password_changed_at
             FROM people p LEFT JOIN accounts a ON a.person_id = p.id",
        )
        .fetch_all(pool)
        .await?;
        let mut members = HashMap::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let family: String = row.try_get("family_name")?;
            let given: String = row.try_get("given_name")?;
            let org_unit_id: Option<String> = row.try_get("org_unit_id")?;
            let account_status: Option<String> = row.try_get("account_status")?;
            let password_hash: Option<String> = row.try_get("password_hash")?;
            let named = Named {
                person_id: id.clone(),
                employee_number: row.try_get("employee_number")?,
                name: format!("{family} {given}"),
                org_unit: org_unit_id.as_ref().and_then(|u| units.get(u)).cloned().unwrap_or_default(),
                org_unit_id,
                login_id: row.try_get("login_id")?,
            };
            members.insert(
                id,
                Member {
                    named,
                    kind: row.try_get("kind")?,
                    status: row.try_get("status")?,
                    end_date: row.try_get("end_date")?,
                    account_id: row.try_get("account_id")?,
                    account_active: account_status.as_deref() == Some("active"),
                    account_created_at: row.try_get("account_created_at")?,
                    password_set: password_hash.is_some(),
                    password_changed_at: row.try_get("password_changed_at")?,
                },
            );
        }
        Ok(Roster { members, units })
    }

    /// The person as named in a report; an unknown id is shown as it is.
    pub fn named(&self, person_id: &str) -> Named {
        self.members
            .get(person_id)
            .map(|m| m.named.clone())
            .unwrap_or_else(|| Named { person_id: person_id.to_owned(), ..Named::default() })
    }

    /// The login ID an audit target names (`login_id:x` or `account:id`), as written.
    pub fn login_id_of_target(&self, target: &str) -> String {
        if let Some(login_id) = target.strip_prefix("login_id:") {
            return login_id.to_owned();
        }
        if let Some(account) = target.strip_prefix("account:") {
            if let Some(m) = self.members.values().find(|m| m.account_id.as_deref() == Some(account)) {
                return m.named.login_id.clone().unwrap_or_default();
            }
        }
        target.to_owned()
    }
}

/// A completed login in the audit log: a card login, or a password login that opened a
/// session (a password step followed by the card is counted once, as the card's).
pub const SIGN_IN_CONDITION: &str = "outcome = 'success' AND (action = 'login.card'
     OR (action = 'login.password' AND detail LIKE '%\"sid\":%'))";

/// Each person's newest login before `until`, by person id.
pub async fn last_logins(store: &Store, until: UnixTime) -> Result<HashMap<String, UnixTime>, sqlx::Error> {
    let sql = format!(
        "SELECT actor, MAX(at) AS last_at FROM audit_events WHERE {SIGN_IN_CONDITION} AND at < $1 GROUP BY actor"
    );
    let rows = sqlx::query(&sql).bind(until).fetch_all(store.pool()).await?;
    let mut last = HashMap::new();
    for row in rows {
        let actor: String = row.try_get("actor")?;
        if let Some(person) = actor.strip_prefix("person:") {
            last.insert(person.to_owned(), row.try_get("last_at")?);
        }
    }
    Ok(last)
}

/// An active account of a person in service with no login for `days` days before `as_of`
/// (an account younger than that is not counted).
#[derive(Debug, Clone, Serialize)]
pub struct Dormant {
    #[serde(flatten)]
    pub person: Named,
    /// The last login, `YYYY-MM-DD` in Japan; None when the account has never been used.
    pub last_login: Option<String>,
}

pub async fn dormant_accounts(
    store: &Store,
    roster: &Roster,
    as_of: UnixTime,
    days: i64,
) -> Result<Vec<Dormant>, sqlx::Error> {
    let last = last_logins(store, as_of).await?;
    let cutoff = as_of - days.saturating_mul(86_400);
    let today = super::japan_date(as_of);
    let mut dormant: Vec<Dormant> = roster
        .members
        .values()
        .filter(|m| m.in_service(&today) && m.account_active)
        .filter(|m| m.account_created_at.is_some_and(|created| created <= cutoff))
        .filter(|m| last.get(&m.named.person_id).is_none_or(|at| *at <= cutoff))
        .map(|m| Dormant {
            person: m.named.clone(),
            last_login: last.get(&m.named.person_id).map(|at| super::japan_date(*at)),
        })
        .collect();
    dormant.sort_by(|a, b| (&a.last_login, &a.person.employee_number).cmp(&(&b.last_login, &b.person.employee_number)));
    Ok(dormant)
}
