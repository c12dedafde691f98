//! The roles a person holds on one consuming system: the `roles` claim (RFC 9068 §2.2.3.1) in
//! its ID tokens, access tokens, userinfo and introspection.
//!
//! This is the seam the access capability fills: roles will come from grants approved by the
//! manager of the section that owns the system (R5–R7). Until that lands nobody holds a role,
//! and every token says so with an empty list rather than leaving the claim out.

pub async fn held_on<'e, E>(_executor: E, _person_id: &str, _client_id: &str) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(Vec::new())
}
