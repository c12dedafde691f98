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
//! protocol, the executor), whatever its size. So are the tokens this node does not keep (first
//! asked about, or not since the last second), each with everything behind it, and the systems'
//! own tokens, which have no row: their system's state and the revocation list, nothing kept.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
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
    /// The rows of tokens whose state is kept: only whether they are still unrevoked.
    rows: Together<String, ()>,
    /// Tokens whose state is not kept: their rows with everything behind them.
    tokens: Together<String, RowToken>,
    /// Systems' own tokens, by (jti, system): the system's live state and whether the token is
    /// on the revocation list.
    services: Together<(String, String), live::ServiceToken>,
}

impl TokenCache {
    /// Starts the tasks that read tokens for the calls.
    pub fn start(store: &Store) -> Self {
        // An entry lives a second at most; past this many the cache starts afresh: a second's
        // worth of distinct tokens on one node, in a bounded amount of memory (an entry is
        // well under a kilobyte).
        TokenCache {
            kept: Kept::new(50_000),
            rows: Together::start(store, |store, now, jtis| Box::pin(unrevoked_rows(store, now, jtis))),
            tokens: Together::start(store, |store, now, jtis| {
                Box::pin(async move {
                    let jtis: Vec<&str> = jtis.iter().map(String::as_str).collect();
                    live::row_tokens(store.pool(), store.dialect(), now, &jtis).await
                })
            }),
            services: Together::start(store, |store, _now, tokens| {
                Box::pin(async move { live::service_tokens(store.pool(), store.dialect(), &tokens).await })
            }),
        }
    }

    /// Whether the system's own token `jti`, issued to `client_id` in token generation
    /// `generation`, is active at this moment (`live::service_token_active`), read with the
    /// others asked about now.
    pub async fn service_token_active(
        &self,
        now: Stamp,
        jti: &str,
        client_id: &str,
        generation: i64,
    ) -> Result<bool, crate::Error> {
        let key = (jti.to_owned(), client_id.to_owned());
        Ok(self.services.read(key, now.second).await?.is_some_and(|token| token.active(generation)))
    }

    /// The unrevoked, unexpired row of the token `jti` with everything behind it, as of `now`
    /// (whose second is the time the state is judged at): the row read from the database, the
    /// rest kept or read with it.
    pub async fn get(&self, now: Stamp, jti: &str) -> Result<Option<RowToken>, crate::Error> {
        if let Some(token) = self.kept.get(jti, now) {
            return Ok(self.rows.read(jti.to_owned(), now.second).await?.map(|()| token));
        }
        let token = self.tokens.read(jti.to_owned(), now.second).await?;
        if let Some(token) = &token {
            self.kept.keep(jti, token.clone(), now);
        }
        Ok(token)
    }
}

/// The most tokens one reading takes.
const MOST: usize = 128;

/// How many readings of a kind may be under way at once: one reads while the next gathers.
const READERS: usize = 2;

/// One reading: what the tokens `keys` have at the time `now`, by key (absent: nothing, the
/// token is not active), in one query.
type Read<K, A> =
    fn(Store, UnixTime, Vec<K>) -> Pin<Box<dyn Future<Output = Result<HashMap<K, A>, crate::Error>> + Send>>;

/// A call waiting: the token, the time it is judged at, where its answer goes.
struct Ask<K, A> {
    key: K,
    now: UnixTime,
    reply: oneshot::Sender<Result<Option<A>, String>>,
}

/// The calls waiting, taken by one reader at a time.
type Asked<K, A> = Arc<Mutex<mpsc::Receiver<Ask<K, A>>>>;

/// Reads for concurrent calls together: one query for all the calls waiting at that moment
/// (per second they are judged at), as group commit writes. Each call is answered by a query
/// that began after the call asked, so it sees every revocation committed before it asked:
/// reading together loses nothing of "at once".
#[derive(Debug)]
struct Together<K, A> {
    queue: mpsc::Sender<Ask<K, A>>,
}

impl<K, A> Together<K, A>
where
    K: Clone + Eq + std::hash::Hash + Send + 'static,
    A: Clone + Send + 'static,
{
    fn start(store: &Store, read: Read<K, A>) -> Self {
        let (queue, asked) = mpsc::channel(4 * MOST);
        let asked = Arc::new(Mutex::new(asked));
        for _ in 0..READERS {
            tokio::spawn(reader(store.clone(), asked.clone(), read));
        }
        Together { queue }
    }

    /// What the token `key` has at `now`; None when it is not active.
    async fn read(&self, key: K, now: UnixTime) -> Result<Option<A>, crate::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Ask { key, now, reply }).await.map_err(|_| sqlx::Error::PoolClosed)?;
        let answer = answer.await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.map_err(|message| sqlx::Error::Protocol(format!("reading tokens failed: {message}")).into())
    }
}

/// One reader: takes the calls waiting (the other reader waits its turn to take), reads their
/// tokens in one query per second they are judged at (nearly always one), answers each.
async fn reader<K, A>(store: Store, asked: Asked<K, A>, read: Read<K, A>)
where
    K: Clone + Eq + std::hash::Hash + Send + 'static,
    A: Clone + Send + 'static,
{
    let mut waiting = Vec::with_capacity(MOST);
    loop {
        if asked.lock().await.recv_many(&mut waiting, MOST).await == 0 {
            return;
        }
        // A caller that has gone (its client hung up) needs no answer.
        waiting.retain(|ask: &Ask<K, A>| !ask.reply.is_closed());
        while let Some(now) = waiting.first().map(|ask| ask.now) {
            let (these, later): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|ask| ask.now == now);
            waiting = later;
            let keys = these.iter().map(|ask| ask.key.clone()).collect();
            match read(store.clone(), now, keys).await {
                Ok(found) => {
                    // A token may be asked about by several calls of the batch.
                    for ask in these {
                        let _ = ask.reply.send(Ok(found.get(&ask.key).cloned()));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for ask in these {
                        let _ = ask.reply.send(Err(message.clone()));
                    }
                }
            }
        }
    }
}

/// Which of the tokens `jtis` have a row neither revoked nor expired at `now`; one query.
async fn unrevoked_rows(store: Store, now: UnixTime, jtis: Vec<String>) -> Result<HashMap<String, ()>, crate::Error> {
    fn text(dialect: Dialect) -> String {
        format!(
            "SELECT jti FROM access_tokens WHERE {} AND revoked_at IS NULL AND expires_at > $2",
            in_json_array(dialect, "jti", "$1", JsonArrayOf::Text)
        )
    }
    static SQLITE: LazyLock<String> = LazyLock::new(|| text(Dialect::Sqlite));
    static POSTGRES: LazyLock<String> = LazyLock::new(|| text(Dialect::Postgres));
    let dialect = store.dialect();
    let sql = match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    };
    // Prepared once per connection: its plan is made again whenever `access_tokens` is analyzed
    // (`jobs::spawn_statistics` does so while the table is young), so a sequential scan chosen
    // while it was small does not stay.
    let rows = sqlx::query(sql).bind(serde_json::json!(jtis).to_string()).bind(now).fetch_all(store.pool()).await?;
    rows.iter().map(|row| Ok((row.try_get("jti")?, ()))).collect()
}
