//! Refresh tokens (RFC 6749 §6, RFC 9700 §4.14): opaque, stored only as a hash, rotated on
//! every use. Tokens descended from one authorization form a family whose id is the id of
//! the authorization code that began it; the family keeps that login's scope, claims request
//! and authentication context, and ends at a fixed time whatever its use.

use std::sync::LazyLock;

use sqlx::Row;

use crate::clock::UnixTime;
use crate::crypto;
use crate::store::{Dialect, Tx};

use super::access_tokens::{self, NewAccessToken};
use super::claims::AuthContext;

/// One refresh token as stored.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub id: String,
    pub family_id: String,
    pub client_id: String,
    pub person_id: String,
    pub session_id: String,
    pub offline: bool,
    pub scope: String,
    pub claims: Option<String>,
    pub auth: AuthContext,
    pub expires_at: UnixTime,
    pub rotated: bool,
    pub revoked: bool,
}

/// What a new refresh token continues (or begins).
pub struct NewRefresh<'a> {
    pub family_id: &'a str,
    pub client_id: &'a str,
    pub person_id: &'a str,
    pub offline: bool,
    pub scope: &'a str,
    pub claims: Option<&'a str>,
    pub auth: &'a AuthContext,
    pub expires_at: UnixTime,
}

/// The columns of a new row as [`bind_new`] gives their values.
const NEW_COLUMNS: &str =
    "id, token_hash, family_id, client_id, person_id, session_id, offline, scope, claims, auth_time, \
     acr, amr, issued_at, expires_at";

/// Binds the values of [`NEW_COLUMNS`] for a new token whose hash is `hash`, after those
/// `query` has.
fn bind_new<'q>(
    query: crate::store::AnyQuery<'q>,
    hash: String,
    now: UnixTime,
    new: &NewRefresh<'q>,
) -> crate::store::AnyQuery<'q> {
    query
        .bind(crate::store::time_ordered_id())
        .bind(hash)
        .bind(new.family_id)
        .bind(new.client_id)
        .bind(new.person_id)
        .bind(new.auth.session_id.as_str())
        .bind(i64::from(new.offline))
        .bind(new.scope)
        .bind(new.claims)
        .bind(new.auth.auth_time)
        .bind(new.auth.acr.as_str())
        .bind(new.auth.amr.join(" "))
        .bind(now)
        .bind(new.expires_at)
}

/// Stores a new refresh token and returns it; only its hash is kept.
pub async fn issue(tx: &mut Tx, now: UnixTime, new: NewRefresh<'_>) -> Result<String, sqlx::Error> {
    let token = crypto::random_token(32);
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("INSERT INTO refresh_tokens ({NEW_COLUMNS}) VALUES ({})", params(1, 14)));
    bind_new(sqlx::query(&SQL), crypto::sha256_hex(&token), now, &new).execute(&mut **tx).await?;
    Ok(token)
}

/// Marks the token `id` as used and stores its successor `new` and the access token `access`
/// issued with it, in one round trip: a rotation is three writes, and on SQLite's one writer
/// every statement is a wait. The two rows are written only if this call rotated `id`.
/// Returns the successor, or None when `id` was rotated or revoked since it was read — by
/// another request, or a revocation that committed first (nothing is written then): a token
/// is never continued past its revocation.
pub async fn rotate_and_issue(
    tx: &mut Tx,
    now: UnixTime,
    id: &str,
    new: NewRefresh<'_>,
    access: NewAccessToken<'_>,
) -> Result<Option<String>, sqlx::Error> {
    let token = crypto::random_token(32);
    let dialect = tx.dialect();
    let query = sqlx::query(rotation_sql(dialect)).bind(now).bind(id);
    let query = access_tokens::bind(bind_new(query, crypto::sha256_hex(&token), now, &new), &access);
    let rotated = match dialect {
        // Three statements, each INSERT only when the statement before it changed a row.
        Dialect::Sqlite => query.execute(&mut **tx).await?.rows_affected() == 3,
        Dialect::Postgres => query.fetch_one(&mut **tx).await?.try_get::<i64, _>("rotated")? == 1,
    };
    Ok(rotated.then_some(token))
}

/// One rotation of a batch written together ([`rotate_all`]): the token `id` rotated at `now`,
/// its successor and the access token issued with it.
pub struct Rotating<'a> {
    pub id: &'a str,
    pub now: UnixTime,
    pub successor: NewRefresh<'a>,
    pub access: NewAccessToken<'a>,
}

/// The most rotations one of SQLite's calls writes (26 parameters each).
const ROTATIONS_PER_CALL: usize = 32;

/// [`rotate_and_issue`] for every rotation of a batch, in one call instead of one each (on
/// SQLite, a call per [`ROTATIONS_PER_CALL`]): the successors, in order, when this call
/// rotated every one of the tokens. None when one of them was rotated or revoked since it was
/// read: the others may have been written, so the caller must roll the transaction back (the
/// group commit then writes each request alone, where [`rotate_and_issue`] tells which).
pub async fn rotate_all(tx: &mut Tx, rotations: &[Rotating<'_>]) -> Result<Option<Vec<String>>, sqlx::Error> {
    let tokens: Vec<String> = rotations.iter().map(|_| crypto::random_token(32)).collect();
    let wanted = |count: usize| u64::try_from(count).unwrap_or(u64::MAX);
    match tx.dialect() {
        Dialect::Sqlite => {
            for (chunk, chunk_tokens) in rotations.chunks(ROTATIONS_PER_CALL).zip(tokens.chunks(ROTATIONS_PER_CALL)) {
                let mut query = sqlx::query(sqlite_rotations(chunk.len())?);
                for (rotation, token) in chunk.iter().zip(chunk_tokens) {
                    query = query.bind(rotation.now).bind(rotation.id);
                    query = bind_new(query, crypto::sha256_hex(token), rotation.now, &rotation.successor);
                    query = access_tokens::bind(query, &rotation.access);
                }
                // Three rows a rotation: its own statements each wrote only if the one before did.
                if query.execute(&mut **tx).await?.rows_affected() != wanted(3 * chunk.len()) {
                    return Ok(None);
                }
            }
        }
        Dialect::Postgres => {
            let rows: Vec<serde_json::Value> = rotations
                .iter()
                .zip(&tokens)
                .map(|(rotation, token)| {
                    let (new, access) = (&rotation.successor, &rotation.access);
                    serde_json::json!({
                        "rotated": rotation.id, "now": rotation.now,
                        "id": crate::store::time_ordered_id(), "token_hash": crypto::sha256_hex(token),
                        "family_id": new.family_id, "client_id": new.client_id, "person_id": new.person_id,
                        "session_id": new.auth.session_id, "offline": i64::from(new.offline), "scope": new.scope,
                        "claims": new.claims, "auth_time": new.auth.auth_time, "acr": new.auth.acr,
                        "amr": new.auth.amr.join(" "), "expires_at": new.expires_at,
                        "jti": access.jti, "a_client_id": access.client_id, "a_person_id": access.person_id,
                        "a_session_id": access.session_id, "a_code_id": access.code_id,
                        "a_family_id": access.family_id, "a_scope": access.scope, "a_claims": access.claims,
                        "a_issued_at": access.issued_at, "a_expires_at": access.expires_at,
                    })
                })
                .collect();
            // Planned each time: the UPDATE joins refresh_tokens, and a plan kept from when
            // the table was small would scan all of it for every batch.
            let rotated: i64 = crate::store::batch_query(Dialect::Postgres, POSTGRES_ROTATIONS)
                .bind(serde_json::Value::Array(rows).to_string())
                .fetch_one(&mut **tx)
                .await?
                .try_get("rotated")?;
            if u64::try_from(rotated).ok() != Some(wanted(rotations.len())) {
                return Ok(None);
            }
        }
    }
    Ok(Some(tokens))
}

/// PostgreSQL's statement of [`rotate_all`]: `$1` the rotations as one JSON array (one text
/// for every batch size); the successors and access tokens are written for the rows the
/// UPDATE rotated only.
const POSTGRES_ROTATIONS: &str = "WITH batch AS (
         SELECT * FROM json_to_recordset(CAST($1 AS json)) AS r(rotated TEXT, now BIGINT, id TEXT,
             token_hash TEXT, family_id TEXT, client_id TEXT, person_id TEXT, session_id TEXT, offline BIGINT,
             scope TEXT, claims TEXT, auth_time BIGINT, acr TEXT, amr TEXT, expires_at BIGINT, jti TEXT,
             a_client_id TEXT, a_person_id TEXT, a_session_id TEXT, a_code_id TEXT, a_family_id TEXT,
             a_scope TEXT, a_claims TEXT, a_issued_at BIGINT, a_expires_at BIGINT)
     ), rotated AS (
         UPDATE refresh_tokens rt SET rotated_at = b.now FROM batch b
         WHERE rt.id = b.rotated AND rt.rotated_at IS NULL AND rt.revoked_at IS NULL
         RETURNING rt.id
     ), successor AS (
         INSERT INTO refresh_tokens (id, token_hash, family_id, client_id, person_id, session_id, offline, scope,
             claims, auth_time, acr, amr, issued_at, expires_at)
         SELECT b.id, b.token_hash, b.family_id, b.client_id, b.person_id, b.session_id, b.offline, b.scope,
             b.claims, b.auth_time, b.acr, b.amr, b.now, b.expires_at
         FROM batch b JOIN rotated r ON r.id = b.rotated
     ), access AS (
         INSERT INTO access_tokens (jti, client_id, person_id, session_id, code_id, family_id, scope, claims,
             issued_at, expires_at)
         SELECT b.jti, b.a_client_id, b.a_person_id, b.a_session_id, b.a_code_id, b.a_family_id, b.a_scope,
             b.a_claims, b.a_issued_at, b.a_expires_at
         FROM batch b JOIN rotated r ON r.id = b.rotated
     )
     SELECT COUNT(*) AS rotated FROM rotated";

/// SQLite's query of [`rotate_all`] for `count` rotations (1 to [`ROTATIONS_PER_CALL`]): the
/// statements of [`sqlite_rotation`] for each, 26 parameters apart. Made once per size.
fn sqlite_rotations(count: usize) -> Result<&'static str, sqlx::Error> {
    static TEXTS: LazyLock<Vec<String>> = LazyLock::new(|| {
        (1..=ROTATIONS_PER_CALL).map(|n| (0..n).map(|k| sqlite_rotation(1 + 26 * k)).collect()).collect()
    });
    count
        .checked_sub(1)
        .and_then(|index| TEXTS.get(index))
        .map(String::as_str)
        .ok_or_else(|| sqlx::Error::Protocol(format!("no query for {count} rotations")))
}

/// SQLite's statements of one rotation, its parameters numbered from `first`: now, the token
/// rotated, the successor's 14 values, the access token's 10. `changes()` tells each
/// statement whether the one before it wrote.
fn sqlite_rotation(first: usize) -> String {
    format!(
        "UPDATE refresh_tokens SET rotated_at = ${now} WHERE id = ${id} AND rotated_at IS NULL AND revoked_at IS NULL;
         INSERT INTO refresh_tokens ({NEW_COLUMNS}) SELECT {refresh} WHERE changes() = 1;
         INSERT INTO access_tokens ({access}) SELECT {values} WHERE changes() = 1;",
        now = first,
        id = first + 1,
        refresh = params(first + 2, 14),
        access = access_tokens::COLUMNS,
        values = params(first + 16, 10),
    )
}

/// The statement(s) of [`rotate_and_issue`]: `$1` now and `$2` the token rotated, then the
/// successor's 14 values, then the access token's 10. SQLite runs several statements in one
/// call (`changes()` tells each whether the one before it wrote); PostgreSQL one statement
/// whose INSERTs read the rotated row, so they write nothing if there is none. PostgreSQL's is
/// kept prepared, unlike [`rotate_all`]'s (its one-row UPDATE looks the token up by primary key
/// in any plan): a batch of one is common, and writing it through [`rotate_all`] cut refresh on
/// PostgreSQL from 2046–2063 to 1489–1586/s (BENCHMARKS.md, twelfth run).
fn rotation_sql(dialect: Dialect) -> &'static str {
    static SQLITE: LazyLock<String> = LazyLock::new(|| sqlite_rotation(1));
    static POSTGRES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH rotated AS (
                 UPDATE refresh_tokens SET rotated_at = $1 WHERE id = $2 AND rotated_at IS NULL AND revoked_at IS NULL RETURNING id
             ), successor AS (
                 INSERT INTO refresh_tokens ({NEW_COLUMNS}) SELECT {refresh} FROM rotated
             ), access AS (
                 INSERT INTO access_tokens ({access}) SELECT {values} FROM rotated
             )
             SELECT COUNT(*) AS rotated FROM rotated",
            refresh = params(3, 14),
            access = access_tokens::COLUMNS,
            values = params(17, 10),
        )
    });
    match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

/// `$first, …` for `count` parameters.
fn params(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The stored token `token` names, if any (whatever its state).
pub async fn find(tx: &mut Tx, token: &str) -> Result<Option<RefreshGrant>, sqlx::Error> {
    find_by_hash(tx, &crypto::sha256_hex(token)).await
}

/// The stored token whose hash is `token_hash`, if any (whatever its state).
pub async fn find_by_hash(tx: &mut Tx, token_hash: &str) -> Result<Option<RefreshGrant>, sqlx::Error> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {} FROM refresh_tokens rt WHERE rt.token_hash = $1", columns("rt")));
    let row = sqlx::query(&SQL).bind(token_hash).fetch_optional(&mut **tx).await?;
    row.as_ref().map(from_row).transpose()
}

/// The columns [`from_row`] reads, of the `refresh_tokens` row aliased `alias` (each named
/// `refresh_…`, so that a query can join them to others). For statement texts made once.
pub fn columns(alias: &str) -> String {
    "id family_id client_id person_id session_id offline scope claims auth_time acr amr expires_at rotated_at revoked_at"
        .split(' ')
        .map(|c| format!("{alias}.{c} AS refresh_{c}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The token in a row of [`columns`].
pub fn from_row(row: &sqlx::any::AnyRow) -> Result<RefreshGrant, sqlx::Error> {
    let offline: i64 = row.try_get("refresh_offline")?;
    let amr: String = row.try_get("refresh_amr")?;
    let rotated_at: Option<i64> = row.try_get("refresh_rotated_at")?;
    let revoked_at: Option<i64> = row.try_get("refresh_revoked_at")?;
    let session_id: String = row.try_get("refresh_session_id")?;
    Ok(RefreshGrant {
        id: row.try_get("refresh_id")?,
        family_id: row.try_get("refresh_family_id")?,
        client_id: row.try_get("refresh_client_id")?,
        person_id: row.try_get("refresh_person_id")?,
        offline: offline != 0,
        scope: row.try_get("refresh_scope")?,
        claims: row.try_get("refresh_claims")?,
        auth: AuthContext {
            session_id: session_id.clone(),
            auth_time: row.try_get("refresh_auth_time")?,
            acr: row.try_get("refresh_acr")?,
            amr: amr.split_whitespace().map(str::to_owned).collect(),
        },
        session_id,
        expires_at: row.try_get("refresh_expires_at")?,
        rotated: rotated_at.is_some(),
        revoked: revoked_at.is_some(),
    })
}

/// A consuming system's standing access for a person (`offline_access`): a refresh-token family
/// that outlives the browser session, shown to the person so that they can end it.
#[derive(Debug, Clone)]
pub struct OfflineGrant {
    pub family_id: String,
    pub client_name: String,
    /// When the person logged in to grant it.
    pub auth_time: UnixTime,
    /// When the system last refreshed it.
    pub last_refreshed: UnixTime,
    pub expires_at: UnixTime,
}

/// The person's live offline grants (their current, unrotated token each), newest first.
pub async fn offline_grants_of(
    pool: &sqlx::AnyPool,
    person_id: &str,
    now: UnixTime,
) -> Result<Vec<OfflineGrant>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.family_id, c.name, r.auth_time, r.issued_at, r.expires_at
         FROM refresh_tokens r JOIN clients c ON c.client_id = r.client_id
         WHERE r.person_id = $1 AND r.offline = 1 AND r.revoked_at IS NULL AND r.rotated_at IS NULL
             AND r.expires_at > $2
         ORDER BY r.issued_at DESC, r.family_id LIMIT 50",
    )
    .bind(person_id)
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(OfflineGrant {
                family_id: row.try_get("family_id")?,
                client_name: row.try_get("name")?,
                auth_time: row.try_get("auth_time")?,
                last_refreshed: row.try_get("issued_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .collect()
}

/// The person a refresh-token family belongs to, if it exists.
pub async fn family_owner(tx: &mut Tx, family_id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT person_id FROM refresh_tokens WHERE family_id = $1 LIMIT 1")
        .bind(family_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| r.try_get("person_id")).transpose()
}
