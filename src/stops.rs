//! Whether an emergency stop (R17) holds on a person or a consuming system: the one SQL
//! fragment that every login, token and introspection check reads, in the very query that
//! reads the account or the client. The stops themselves are made and lifted by `emergency`;
//! this module only reads their table, so that `directory` and `systems` can depend on it
//! without depending on what a stop does.

use serde::Serialize;
use sqlx::Row;

/// What is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One person: every session and token, and every login (password or card).
    Person,
    /// One consuming system (OIDC client): every token issued to it, its logins, its token
    /// requests and its introspection.
    System,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::System => "system",
        }
    }

    pub fn parse(value: &str) -> Option<Kind> {
        match value {
            "person" => Some(Kind::Person),
            "system" => Some(Kind::System),
            _ => None,
        }
    }
}

/// An SQL expression counting the stops in force on the `kind` target whose id is `column`:
/// the one fragment every login, token and introspection check reads, so that the stop is
/// seen in the very query that reads the account or the client.
pub fn stops_in_force_sql(kind: Kind, column: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM emergency_stops es WHERE es.kind = '{}' AND es.target_id = {column} AND es.lifted_at IS NULL)",
        kind.as_str()
    )
}

/// Whether a stop is in force on the person `person_id` or the system `client_id`.
pub async fn is_stopped<'e, E>(executor: E, kind: Kind, target_id: &str) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {} AS n", stops_in_force_sql(kind, "$1")))
        .bind(target_id)
        .fetch_one(executor)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}
