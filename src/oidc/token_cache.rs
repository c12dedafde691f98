//! What this node keeps of the state behind a person's access token, so that introspection
//! and userinfo do not join seven tables on every call.
//!
//! The token's own row is still read on every call, and it is what makes a revocation hold at
//! once on every node: **every** revocation that ends a token — the token itself, its grant,
//! its session, its person (a suspension, a leave, a lost card, a password compromise, an
//! emergency stop), a role grant on its system, its system disabled or stopped — marks the
//! token's row in the transaction that revokes (`revocation`), so a token whose row is marked
//! is refused by the next call on any node, whatever this node keeps.
//!
//! What is kept is the rest (`live::RowToken`: the system, the person and whether they may log
//! in, the session, the roles), under [`Kept`]'s rule: an entry is used only in the second it
//! was read in, and only while no change was announced since. So what does not end a token but
//! changes what is said about it — a role granted, a name corrected — shows on the node that
//! made it at once (it is counted there, `Change::People`) and on the others within a second;
//! and time-bound state (a session's or a person's end, a role's dates) is judged in the
//! second it was read, as the database's own query judges it.
//!
//! The rows asked about at the same moment are read together, in one query, as group commit
//! writes (`store::group`): on PostgreSQL a query's cost is mostly its own (a round trip, the
//! protocol, the executor), whatever its size.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use sqlx::Row;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::clock::UnixTime;
use crate::store::changes::{Kept, Stamp};
use crate::store::{in_json_array, Dialect, JsonArrayOf, Store};

use super::live::{self, RowToken};

#[derive(Debug)]
pub struct TokenCache {
    kept: Kept<RowToken>,
    rows: RowChecks,
}

impl TokenCache {
    /// Starts the tasks that read tokens' rows for the calls that found their state kept.
    pub fn start(store: &Store) -> Self {
        // An entry lives a second at most; past this many the cache starts afresh: a second's
        // worth of distinct tokens on one node, in a bounded amount of memory (an entry is
        // well under a kilobyte).
        TokenCache { kept: Kept::new(50_000), rows: RowChecks::start(store) }
    }

    /// The unrevoked, unexpired row of the token `jti` with everything behind it, as of `now`
    /// (whose second is the time the state is judged at): the row read from the database, the
    /// rest kept or read with it.
    pub async fn get(&self, store: &Store, now: Stamp, jti: &str) -> Result<Option<RowToken>, crate::Error> {
        if let Some(token) = self.kept.get(jti, now) {
            return Ok(self.rows.unrevoked(jti, now.second).await?.then_some(token));
        }
        let token = live::row_token(store.pool(), now.second, jti).await?;
        if let Some(token) = &token {
            self.kept.keep(jti, token.clone(), now);
        }
        Ok(token)
    }
}

/// The most rows one reading takes.
const MOST: usize = 128;

/// How many readings may be under way at once: one reads while the next batch gathers.
const READERS: usize = 2;

/// The answer to one call: the token's expiry if its row is not revoked.
type Reply = oneshot::Sender<Result<Option<UnixTime>, sqlx::Error>>;
/// The calls waiting, taken by one reader at a time.
type Asked = Arc<Mutex<mpsc::Receiver<(String, Reply)>>>;

/// Reads tokens' rows for concurrent calls together, one query for all the calls waiting at
/// that moment, as group commit writes. Each call is answered by a query that began after the
/// call asked, so it sees every revocation committed before it asked: reading together loses
/// nothing of "at once".
#[derive(Debug)]
struct RowChecks {
    queue: mpsc::Sender<(String, Reply)>,
}

impl RowChecks {
    fn start(store: &Store) -> Self {
        let (queue, asked) = mpsc::channel(4 * MOST);
        let asked = Arc::new(Mutex::new(asked));
        for _ in 0..READERS {
            tokio::spawn(read_rows(store.clone(), asked.clone()));
        }
        RowChecks { queue }
    }

    /// Whether the row of the token `jti` is neither revoked nor expired at `now`.
    async fn unrevoked(&self, jti: &str, now: UnixTime) -> Result<bool, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((jti.to_owned(), reply)).await.map_err(|_| sqlx::Error::PoolClosed)?;
        let expires_at = answer.await.map_err(|_| sqlx::Error::PoolClosed)??;
        Ok(expires_at.is_some_and(|expires_at| expires_at > now))
    }
}

/// One reader: takes the calls waiting (the other reader waits its turn to take), reads their
/// rows in one query, answers each.
async fn read_rows(store: Store, asked: Asked) {
    let mut waiting = Vec::with_capacity(MOST);
    loop {
        if asked.lock().await.recv_many(&mut waiting, MOST).await == 0 {
            return;
        }
        // A caller that has gone (its client hung up) needs no answer.
        waiting.retain(|(_, reply)| !reply.is_closed());
        if waiting.is_empty() {
            continue;
        }
        let jtis: Vec<&str> = waiting.iter().map(|(jti, _)| jti.as_str()).collect();
        match unrevoked_rows(&store, &jtis).await {
            Ok(found) => {
                for (jti, reply) in waiting.drain(..) {
                    let _ = reply.send(Ok(found.get(&jti).copied()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for (_, reply) in waiting.drain(..) {
                    let _ = reply.send(Err(sqlx::Error::Protocol(format!("reading tokens failed: {message}"))));
                }
            }
        }
    }
}

/// The expiry of each of the tokens `jtis` whose row is not revoked; one query.
async fn unrevoked_rows(store: &Store, jtis: &[&str]) -> Result<HashMap<String, UnixTime>, sqlx::Error> {
    fn text(dialect: Dialect) -> String {
        format!(
            "SELECT jti, expires_at FROM access_tokens WHERE {} AND revoked_at IS NULL",
            in_json_array(dialect, "jti", "$1", JsonArrayOf::Text)
        )
    }
    static SQLITE: LazyLock<String> = LazyLock::new(|| text(Dialect::Sqlite));
    static POSTGRES: LazyLock<String> = LazyLock::new(|| text(Dialect::Postgres));
    let sql = match store.dialect() {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    };
    let rows = sqlx::query(sql).bind(serde_json::json!(jtis).to_string()).fetch_all(store.pool()).await?;
    rows.iter().map(|row| Ok((row.try_get("jti")?, row.try_get("expires_at")?))).collect()
}
