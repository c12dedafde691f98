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
    let rows = sqlx::query(
        "SELECT r.name, r.classification FROM access_grants g JOIN system_roles r ON r.id = g.role_id
         WHERE g.person_id = $1 AND g.client_id = $2 AND g.ended_at IS NULL
           AND (g.end_date IS NULL OR g.end_date >= $3) AND g.start_date <= $3 AND r.retired_at IS NULL
         ORDER BY r.name",
    )
    .bind(person_id)
    .bind(client_id)
    .bind(format_date(today))
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|r| Ok(Held { name: r.try_get("name")?, secret: r.try_get::<String, _>("classification")? == "secret" }))
        .collect()
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
    let with_card = acr == crate::authenticators::ACR_HWK;
    Ok(live_on(executor, person_id, client_id, today)
        .await?
        .into_iter()
        .filter(|held| with_card || !held.secret)
        .map(|held| held.name)
        .collect())
}

/// The people holding role `role` of system `client_id` today (live grants).
pub async fn holders<'e, E>(executor: E, client_id: &str, role: &str, today: Date) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT DISTINCT g.person_id FROM access_grants g JOIN system_roles r ON r.id = g.role_id
         WHERE g.client_id = $1 AND r.name = $2 AND g.ended_at IS NULL AND r.retired_at IS NULL
           AND g.start_date <= $3 AND (g.end_date IS NULL OR g.end_date >= $3)
         ORDER BY g.person_id",
    )
    .bind(client_id)
    .bind(role)
    .bind(format_date(today))
    .fetch_all(executor)
    .await?;
    rows.iter().map(|r| r.try_get("person_id")).collect()
}
