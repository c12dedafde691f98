//! The live state behind a token, read in one query. Each rule stays with the module that owns
//! it — whether a person may log in (`directory`), whether a session is live (`sessions`),
//! which roles count (`access::roles`) and whether a system needs one (`access::catalog`),
//! whether a system may be used (`systems`, with the emergency stop) — as an SQL fragment and the function that reads it back; this module only
//! joins the fragments, so that a token request, an introspection or a userinfo call costs one
//! round trip to the database for all of them instead of one each.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::Row;

use crate::access::catalog;
use crate::access::roles::{self, Held};
use crate::clock::UnixTime;
use crate::directory::{self, types::format_date, LoginState};
use crate::sessions;
use crate::store::{in_json_array, Dialect, JsonArrayOf};
use crate::systems::{self, LiveClient};

use super::access_tokens;
use super::refresh::{self, RefreshGrant};

/// A person as a grant finds them: may they log in, is their session live, what they hold.
#[derive(Debug, Clone)]
pub struct PersonLive {
    pub login: LoginState,
    /// True when no session was asked about.
    pub session_live: bool,
    /// Their live roles on the system, secret ones included (the caller filters by acr).
    pub held: Vec<Held>,
    /// Whether the system lets nobody in without a role (`access::catalog`).
    pub requires_role: bool,
}

impl PersonLive {
    /// Whether a token may be issued for the person now (and, when asked, in the session).
    pub fn usable(&self) -> bool {
        self.login.may_log_in && self.session_live
    }
}

/// The person `person_id` (None when there is no such person), whether the session
/// `session_id` (when given) is live at `now`, and their live roles on `client_id`.
pub async fn person_on_client<'e, E>(
    executor: E,
    now: UnixTime,
    person_id: &str,
    client_id: &str,
    session_id: Option<&str>,
) -> Result<Option<PersonLive>, crate::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // The text is made once: every grant for a person runs it.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {person}, s.id AS live_session_id, {roles}, {requires_role}
         FROM people p LEFT JOIN accounts a ON a.person_id = p.id
         LEFT JOIN sessions s ON s.id = $2 AND {session}
         {held}
         WHERE p.id = $1
         ORDER BY {order}",
            person = directory::login_state_columns("p", "a"),
            roles = roles::held_columns(),
            requires_role = catalog::requires_role_column("$4"),
            session = sessions::live_condition("s", "$3"),
            held = roles::held_join("p.id", "$4", "$5"),
            order = roles::HELD_ORDER,
        )
    });
    let today = directory::today_in_japan(now);
    let rows = sqlx::query(&SQL)
        .bind(person_id)
        .bind(session_id.unwrap_or(""))
        .bind(now)
        .bind(client_id)
        .bind(format_date(today))
        .fetch_all(executor)
        .await?;
    person_live(&rows, today, session_id.is_none())
}

/// The person as [`person_on_client`] and [`refresh_token`] read them (None when there is no
/// such person): their session counts as live when `no_session_needed`, else when the query
/// found it live.
fn person_live(
    rows: &[sqlx::any::AnyRow],
    today: time::Date,
    no_session_needed: bool,
) -> Result<Option<PersonLive>, crate::Error> {
    let Some(first) = rows.first() else { return Ok(None) };
    let Some(login) = directory::login_state_from_row(first, today)? else { return Ok(None) };
    let session_live = no_session_needed || first.try_get::<Option<String>, _>("live_session_id")?.is_some();
    Ok(Some(PersonLive {
        login,
        session_live,
        held: roles::held_from_rows(rows)?,
        requires_role: catalog::requires_role_from_row(first)?,
    }))
}

/// The refresh token whose hash is `token_hash` (whatever its state), with its person as
/// [`person_on_client`] reads them on the token's system — the session asked about only when
/// the family is not offline — at `now`, in one query. The person is None when there is none.
pub async fn refresh_token<'e, E>(
    executor: E,
    now: UnixTime,
    token_hash: &str,
) -> Result<Option<(RefreshGrant, Option<PersonLive>)>, crate::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // The text is made once: every refresh read alone runs it.
    static SQL: LazyLock<String> = LazyLock::new(|| refresh_sql("rt.token_hash = $1", ""));
    let today = directory::today_in_japan(now);
    let rows = sqlx::query(&SQL).bind(token_hash).bind(now).bind(format_date(today)).fetch_all(executor).await?;
    let Some(first) = rows.first() else { return Ok(None) };
    refresh_from_rows(&rows, first, today).map(Some)
}

/// The refresh tokens whose hashes are `token_hashes`, each as [`refresh_token`] reads it, in
/// one query: a group-commit batch of refreshes reads its tokens together instead of one
/// round trip each. Keyed by hash; a hash no token has is absent.
pub async fn refresh_tokens<'e, E>(
    executor: E,
    dialect: Dialect,
    now: UnixTime,
    token_hashes: &[&str],
) -> Result<HashMap<String, (RefreshGrant, Option<PersonLive>)>, crate::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // The hashes go as one JSON array, so that one statement text serves every batch size.
    fn text(dialect: Dialect) -> String {
        refresh_sql(&in_json_array(dialect, "rt.token_hash", "$1", JsonArrayOf::Text), "rt.id, ")
    }
    static SQLITE: LazyLock<String> = LazyLock::new(|| text(Dialect::Sqlite));
    static POSTGRES: LazyLock<String> = LazyLock::new(|| text(Dialect::Postgres));
    let sql = match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    };
    let today = directory::today_in_japan(now);
    let rows = read_batch(executor, sql, token_hashes, now).await?;
    let mut found = HashMap::new();
    // Each token's rows are together (ordered by the token's id first).
    for token_rows in per_key(&rows, "refresh_id") {
        let Some(first) = token_rows.first() else { continue };
        found.insert(first.try_get("refresh_token_hash")?, refresh_from_rows(token_rows, first, today)?);
    }
    Ok(found)
}

/// The rows of a batch reading `sql`: `$1` the keys as one JSON array, `$2` now, `$3` today in
/// Japan.
async fn read_batch<'e, E>(
    executor: E,
    sql: &str,
    keys: &[&str],
    now: UnixTime,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(sql)
        .bind(serde_json::json!(keys).to_string())
        .bind(now)
        .bind(format_date(directory::today_in_japan(now)))
        .fetch_all(executor)
        .await
}

/// A batch reading's rows cut into each key's: the statement orders them by `key_column` first.
fn per_key<'r>(rows: &'r [sqlx::any::AnyRow], key_column: &'r str) -> impl Iterator<Item = &'r [sqlx::any::AnyRow]> {
    rows.chunk_by(move |a, b| a.try_get::<String, _>(key_column).ok() == b.try_get(key_column).ok())
}

/// The text of a refresh-token reading: the rows of the tokens `condition` picks, ordered by
/// `order_first` and then the roles' order; `$1` is the condition's, `$2` now, `$3` today.
fn refresh_sql(condition: &str, order_first: &str) -> String {
    format!(
        "SELECT rt.token_hash AS refresh_token_hash, {refresh}, {person}, s.id AS live_session_id, {roles}, {requires_role}
         FROM refresh_tokens rt LEFT JOIN people p ON p.id = rt.person_id
         LEFT JOIN accounts a ON a.person_id = p.id
         LEFT JOIN sessions s ON s.id = rt.session_id AND {session}
         {held}
         WHERE {condition}
         ORDER BY {order_first}{order}",
        refresh = refresh::columns("rt"),
        person = directory::login_state_columns("p", "a"),
        roles = roles::held_columns(),
        requires_role = catalog::requires_role_column("rt.client_id"),
        session = sessions::live_condition("s", "$2"),
        held = roles::held_join("p.id", "rt.client_id", "$3"),
        order = roles::HELD_ORDER,
    )
}

/// One token of [`refresh_sql`]'s rows (`first` is the first of them).
fn refresh_from_rows(
    rows: &[sqlx::any::AnyRow],
    first: &sqlx::any::AnyRow,
    today: time::Date,
) -> Result<(RefreshGrant, Option<PersonLive>), crate::Error> {
    let grant = refresh::from_row(first)?;
    // An offline_access family outlives the browser session; any other ends with it.
    let person = person_live(rows, today, grant.offline)?;
    Ok((grant, person))
}

/// What the `access_tokens` row of a person's token says, with everything behind it.
#[derive(Debug, Clone)]
pub struct RowToken {
    pub client_id: String,
    /// None for a client_credentials token issued before they stopped having rows.
    pub person_id: Option<String>,
    pub session_id: Option<String>,
    pub scope: String,
    pub claims: Option<String>,
    pub client: LiveClient,
    /// The person and whether they may log in; None for a client's own token.
    pub login: Option<LoginState>,
    /// Whether the session the token is bound to is live (true when it is bound to none).
    pub session_live: bool,
    pub held: Vec<Held>,
}

impl RowToken {
    /// Whether everything behind the token still stands.
    pub fn live(&self) -> bool {
        self.client.active
            && self.session_live
            && match (&self.person_id, &self.login) {
                (None, _) => true,
                (Some(_), Some(login)) => login.may_log_in,
                (Some(_), None) => false,
            }
    }
}

/// The unrevoked, unexpired rows of the tokens `jtis`, each with its system, its person, their
/// session and their live roles on the system, at `now`, in one query: the calls of a moment
/// whose tokens this node does not keep are read together (`token_cache`). Keyed by jti; a
/// token with no such row is absent.
pub async fn row_tokens<'e, E>(
    executor: E,
    dialect: Dialect,
    now: UnixTime,
    jtis: &[&str],
) -> Result<HashMap<String, RowToken>, crate::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // The jtis go as one JSON array, so that one statement text serves every batch size.
    fn text(dialect: Dialect) -> String {
        format!(
            "SELECT t.jti AS token_jti, t.client_id AS token_client_id, t.person_id AS token_person_id,
             t.session_id AS token_session_id, t.scope AS token_scope, t.claims AS token_claims, {client}, {person},
             s.id AS live_session_id, {roles}
         FROM access_tokens t JOIN clients c ON c.client_id = t.client_id
         LEFT JOIN people p ON p.id = t.person_id
         LEFT JOIN accounts a ON a.person_id = p.id
         LEFT JOIN sessions s ON s.id = t.session_id AND {session}
         {held}
         WHERE {jtis} AND t.revoked_at IS NULL AND t.expires_at > $2
         ORDER BY t.jti, {order}",
            client = systems::live_columns("c"),
            person = directory::login_state_columns("p", "a"),
            roles = roles::held_columns(),
            session = sessions::live_condition("s", "$2"),
            held = roles::held_join("p.id", "t.client_id", "$3"),
            jtis = in_json_array(dialect, "t.jti", "$1", JsonArrayOf::Text),
            order = roles::HELD_ORDER,
        )
    }
    static SQLITE: LazyLock<String> = LazyLock::new(|| text(Dialect::Sqlite));
    static POSTGRES: LazyLock<String> = LazyLock::new(|| text(Dialect::Postgres));
    let sql = match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    };
    let today = directory::today_in_japan(now);
    let rows = read_batch(executor, sql, jtis, now).await?;
    let mut found = HashMap::new();
    // Each token's rows are together (ordered by the jti first).
    for token_rows in per_key(&rows, "token_jti") {
        let Some(first) = token_rows.first() else { continue };
        let Some(client) = systems::live_from_row(first)? else { continue };
        let session_id: Option<String> = first.try_get("token_session_id")?;
        let session_live = session_id.is_none() || first.try_get::<Option<String>, _>("live_session_id")?.is_some();
        let token = RowToken {
            client_id: first.try_get("token_client_id")?,
            person_id: first.try_get("token_person_id")?,
            session_id,
            scope: first.try_get("token_scope")?,
            claims: first.try_get("token_claims")?,
            client,
            login: directory::login_state_from_row(first, today)?,
            session_live,
            held: roles::held_from_rows(token_rows)?,
        };
        found.insert(first.try_get("token_jti")?, token);
    }
    Ok(found)
}

/// What stands behind a system's own token: its system's live state, and whether the token is
/// on the revocation list.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    client: LiveClient,
    revoked: bool,
}

impl ServiceToken {
    /// Whether the token, issued in token generation `generation`, is active: the system may
    /// be used, has not ended its tokens since (its generation is still that one) and the
    /// token is not on the revocation list.
    pub fn active(&self, generation: i64) -> bool {
        self.client.active && self.client.token_generation == generation && !self.revoked
    }

    fn from_row(row: &sqlx::any::AnyRow) -> Result<Option<Self>, crate::Error> {
        let Some(client) = systems::live_from_row(row)? else { return Ok(None) };
        Ok(Some(ServiceToken { client, revoked: row.try_get::<i64, _>("revoked")? > 0 }))
    }
}

/// Whether the system's own token `jti`, issued to `client_id` in token generation
/// `generation`, is active ([`ServiceToken::active`]): [`service_tokens`] asked about one.
pub async fn service_token_active<'e, E>(
    executor: E,
    dialect: Dialect,
    jti: &str,
    client_id: &str,
    generation: i64,
) -> Result<bool, crate::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let key = (jti.to_owned(), client_id.to_owned());
    let found = service_tokens(executor, dialect, std::slice::from_ref(&key)).await?;
    Ok(found.get(&key).is_some_and(|token| token.active(generation)))
}

/// The systems' own tokens `tokens`, each a (jti, system) pair, with what stands behind each,
/// in one query: the introspections of a moment read together (`token_cache`).
/// Keyed by the pair; a token whose system does not exist is absent.
pub async fn service_tokens<'e, E>(
    executor: E,
    dialect: Dialect,
    tokens: &[(String, String)],
) -> Result<HashMap<(String, String), ServiceToken>, crate::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // The pairs go as one JSON array of [jti, system], so that one statement text serves every
    // batch size. Both come from a token this server signed.
    fn text(dialect: Dialect) -> String {
        let pairs = match dialect {
            Dialect::Sqlite => {
                "SELECT json_extract(value, '$[0]') AS jti, json_extract(value, '$[1]') AS client_id FROM json_each($1)"
            }
            Dialect::Postgres => {
                "SELECT e ->> 0 AS jti, e ->> 1 AS client_id FROM json_array_elements(CAST($1 AS json)) AS e"
            }
        };
        format!(
            "SELECT k.jti AS token_jti, k.client_id AS token_client_id, {client}, {revoked} AS revoked
             FROM ({pairs}) k JOIN clients c ON c.client_id = k.client_id",
            client = systems::live_columns("c"),
            revoked = access_tokens::revoked_sql("k.jti"),
        )
    }
    static SQLITE: LazyLock<String> = LazyLock::new(|| text(Dialect::Sqlite));
    static POSTGRES: LazyLock<String> = LazyLock::new(|| text(Dialect::Postgres));
    let sql = match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    };
    // Prepared once per connection, not planned at each execution: the tables it reads stay
    // small (the systems, the stops, and the revocation list, which keeps a token only until
    // it would have expired), so a plan made while they were smaller stays a good one;
    // planning it at each execution cost PostgreSQL a third of these answers (BENCHMARKS.md,
    // fourteenth run).
    let rows = sqlx::query(sql).bind(serde_json::json!(tokens).to_string()).fetch_all(executor).await?;
    let mut found = HashMap::new();
    for row in &rows {
        let Some(token) = ServiceToken::from_row(row)? else { continue };
        found.insert((row.try_get("token_jti")?, row.try_get("token_client_id")?), token);
    }
    Ok(found)
}
