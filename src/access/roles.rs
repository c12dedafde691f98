//! The roles a person holds on one consuming system: the `roles` claim (RFC 9068 §2.2.3.1) in
//! its ID tokens, access tokens, userinfo and introspection. Only live grants count (not
//! ended, today not past their last day), and a secret-class role counts only for a login
//! with a card (R6, R15): a password-only session never carries one.

use sqlx::Row;
use time::Date;

use crate::directory::types::format_date;

/// A role held, with whether it is secret-class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub name: String,
    pub secret: bool,
}

/// Every live role of the person on the system, secret ones included.
pub async fn live_on<'e, E>(
    executor: E,
    person_id: &str,
    client_id: &str,
    today: Date,
) -> Result<Vec<Held>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {HELD_COLUMNS} FROM access_grants g JOIN system_roles r ON r.id = g.role_id AND {LIVE_ROLE}
         WHERE g.person_id = $1 AND g.client_id = $2 AND {}
         ORDER BY {HELD_ORDER}",
        live_grant("$3"),
    ))
    .bind(person_id)
    .bind(client_id)
    .bind(format_date(today))
    .fetch_all(executor)
    .await?;
    held_from_rows(&rows)
}

/// A grant under `g` that counts on `today` (a parameter holding the date as text): not ended,
/// begun, and not past its last day.
fn live_grant(today: &str) -> String {
    format!("g.ended_at IS NULL AND (g.end_date IS NULL OR g.end_date >= {today}) AND g.start_date <= {today}")
}

/// A role under `r` that still exists for its system.
const LIVE_ROLE: &str = "r.retired_at IS NULL";

/// What [`held_from_rows`] reads of a role under `r`.
const HELD_COLUMNS: &str = "r.name AS role_name, r.classification AS role_classification";

/// Outer joins, for a token check's own query, of the live roles on system `client` (a column
/// or parameter) of the person `person` (a column), on `today` (a parameter, the date as
/// text): one row per role held, or one row with no role. Select [`held_columns`], order by
/// [`HELD_ORDER`] and read [`held_from_rows`].
pub fn held_join(person: &str, client: &str, today: &str) -> String {
    format!(
        "LEFT JOIN access_grants g ON g.person_id = {person} AND g.client_id = {client} AND {}
         LEFT JOIN system_roles r ON r.id = g.role_id AND {LIVE_ROLE}",
        live_grant(today)
    )
}

/// The columns [`held_from_rows`] reads, for a query that uses [`held_join`].
pub fn held_columns() -> &'static str {
    HELD_COLUMNS
}

/// What a query reading roles orders by, so that roles come in one order whatever reads them
/// (the database's collation, as `live_on` has always given them).
pub const HELD_ORDER: &str = "r.name";

/// The roles in rows of [`held_join`] (or [`live_on`]), in the rows' order; a row with no live
/// role counts for none.
pub fn held_from_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<Held>, sqlx::Error> {
    let mut held = Vec::new();
    for row in rows {
        if let Some(name) = row.try_get::<Option<String>, _>("role_name")? {
            let classification: String = row.try_get("role_classification")?;
            held.push(Held { name, secret: classification == "secret" });
        }
    }
    Ok(held)
}

/// The names of the roles a login of class `acr` carries: secret-class ones only when the login
/// was made with a card (R6).
pub fn names_for_acr(held: Vec<Held>, acr: &str) -> Vec<String> {
    let with_card = acr == crate::authenticators::ACR_HWK;
    held.into_iter().filter(|held| with_card || !held.secret).map(|held| held.name).collect()
}

/// The role names a token carries for a login of class `acr`: secret-class roles only when the
/// login was made with a card.
pub async fn held_on<'e, E>(
    executor: E,
    person_id: &str,
    client_id: &str,
    today: Date,
    acr: &str,
) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(names_for_acr(live_on(executor, person_id, client_id, today).await?, acr))
}

/// The people holding role `role` of system `client_id` today (live grants).
pub async fn holders<'e, E>(executor: E, client_id: &str, role: &str, today: Date) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT DISTINCT g.person_id FROM access_grants g JOIN system_roles r ON r.id = g.role_id AND {LIVE_ROLE}
         WHERE g.client_id = $1 AND r.name = $2 AND {}
         ORDER BY g.person_id",
        live_grant("$3")
    ))
    .bind(client_id)
    .bind(role)
    .bind(format_date(today))
    .fetch_all(executor)
    .await?;
    rows.iter().map(|r| r.try_get("person_id")).collect()
}
