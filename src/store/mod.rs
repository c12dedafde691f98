//! The store: one pool, SQLite (embedded default) or PostgreSQL (multi-node), chosen by
//! `database_url`. Queries are portable SQL run through `sqlx::any` with `$N` placeholders,
//! integer Unix timestamps and text ids, so the same code serves both databases. The few
//! dialect differences live here and nowhere else.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub mod changes;
mod group;
pub mod wal;

pub use group::{Batch, GroupCommit, Written};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Transaction};

/// The secret the audit chain's links are keyed with (derived from the master key, never
/// stored in the database).
pub type AuditKey = [u8; 32];

/// A query with some of its parameters bound, as a function that binds a row's columns takes
/// and returns it.
pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// A new id for a row of a table written on every token (refresh tokens, access tokens) that
/// sorts by the time it was made: a UUIDv7 (the millisecond, then random bits). The table's
/// primary-key index then grows at its end, and a batch of rows dirties one leaf page of it
/// instead of one random page per row (each page written to the WAL whole).
pub fn time_ordered_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A database transaction; every state change and its audit event share one. It carries the
/// audit chain's key of the store it was begun on, so that recording an event needs nothing
/// but the transaction. It dereferences to the connection, as sqlx's transaction does.
pub struct Tx {
    inner: Transaction<'static, Any>,
    audit_key: Option<AuditKey>,
    dialect: Dialect,
    /// The sequence numbers of the audit events recorded in this transaction, handed to the
    /// sealer when it commits.
    recorded: Vec<i64>,
    committed: Arc<CommittedEvents>,
    /// The changes this transaction announced (`changes::announce`), each once: its commit
    /// then counts one in `changes`, which is what this node's caches watch.
    announced: changes::Announced,
    changes: Arc<changes::Counter>,
    /// What is done once this transaction has committed, and never if it rolls back (e.g.
    /// counting a revocation in the metrics: one rolled back, or undone and written again, is
    /// counted as often as it took effect).
    after_commit: Vec<AfterCommit>,
    /// SQLite's writer: the sync the commit waits for before it returns.
    wal_sync: Option<Arc<wal::WalSync>>,
}

/// Audit events this process committed, which its sealer has not yet seen sealed; and the
/// signal that wakes the sealer. The store only carries them from a commit to the sealer
/// (`audit::seal`), which decides what they mean.
#[derive(Debug, Default)]
pub struct CommittedEvents {
    seqs: Mutex<Vec<i64>>,
    wake: tokio::sync::Notify,
}

impl CommittedEvents {
    /// Takes the sequence numbers committed since the last call.
    pub fn take(&self) -> Vec<i64> {
        // A poisoned lock only means a panic elsewhere while pushing; the numbers are intact.
        std::mem::take(&mut *self.seqs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether every event committed so far has been taken by the sealer.
    pub fn is_empty(&self) -> bool {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Waits until a transaction that recorded events commits (or returns at once if one did
    /// since the last wait).
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Hands the sealer events committed outside a [`Tx`] (a statement committed on its own).
    pub fn push(&self, seqs: &[i64]) {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(seqs);
        self.wake.notify_one();
    }
}

/// A commit's way to disk: on SQLite's writer, the sync of the WAL it waits for
/// (`wal::WalSync`); nothing to wait for on PostgreSQL, whose COMMIT returns once on disk.
#[must_use = "a commit is durable only once its sync is waited for"]
pub struct Durable(Option<(Arc<wal::WalSync>, u64)>);

impl Durable {
    /// Whether the commit is on disk already (nothing to wait for).
    pub fn is_done(&self) -> bool {
        self.0.is_none()
    }

    /// Returns once the commit is on disk.
    pub async fn wait(self) -> Result<(), sqlx::Error> {
        match self.0 {
            Some((sync, needed)) => sync.wait(needed).await,
            None => Ok(()),
        }
    }
}

impl Tx {
    /// Commits, and returns once the commit is on disk.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.commit_then_sync().await?.wait().await
    }

    /// Commits, and returns what makes the commit durable, to be waited for before anyone is
    /// told of it: group commit goes on with its next batch while the disk works.
    pub async fn commit_then_sync(self) -> Result<Durable, sqlx::Error> {
        self.inner.commit().await?;
        // Taken at once: the sync it names begins after this commit.
        let durable = Durable(self.wal_sync.map(|sync| {
            let needed = sync.ticket();
            (sync, needed)
        }));
        if !self.recorded.is_empty() {
            self.committed.push(&self.recorded);
        }
        if !self.announced.is_empty() {
            self.changes.count();
        }
        for done in self.after_commit {
            done();
        }
        // What follows a commit here (the sealer's notice, this node's caches) does not wait
        // for the disk; the caller answers only once it has.
        Ok(durable)
    }

    /// Which database the transaction runs on.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Does `done` once this transaction commits (never if it rolls back).
    pub fn after_commit(&mut self, done: AfterCommit) {
        self.after_commit.push(done);
    }

    /// Notes that this transaction recorded the audit event `seq`.
    pub fn note_event(&mut self, seq: i64) {
        self.recorded.push(seq);
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }

    /// Marks a point inside the transaction to go back to ([`Tx::back_to`]): a SAVEPOINT, and
    /// what this transaction has noted so far. Marks nest: each is kept or gone back to before
    /// the one made before it.
    pub async fn mark(&mut self) -> Result<Mark, sqlx::Error> {
        sqlx::query("SAVEPOINT sekimori_mark").execute(&mut *self.inner).await?;
        Ok(Mark { recorded: self.recorded.len(), after_commit: self.after_commit.len(), announced: self.announced })
    }

    /// Undoes everything since `mark` (and releases the row locks it took), as if it had not
    /// been attempted: nor are its audit events, announcements and after-commit work noted.
    pub async fn back_to(&mut self, mark: Mark) -> Result<(), sqlx::Error> {
        sqlx::query("ROLLBACK TO SAVEPOINT sekimori_mark").execute(&mut *self.inner).await?;
        sqlx::query("RELEASE SAVEPOINT sekimori_mark").execute(&mut *self.inner).await?;
        self.recorded.truncate(mark.recorded);
        self.after_commit.truncate(mark.after_commit);
        self.announced = mark.announced;
        Ok(())
    }

    /// Keeps everything since `mark`: it is part of the transaction again, committed with it.
    pub async fn keep(&mut self, _mark: Mark) -> Result<(), sqlx::Error> {
        sqlx::query("RELEASE SAVEPOINT sekimori_mark").execute(&mut *self.inner).await.map(drop)
    }

    /// The audit chain's key; None when the store was opened without the master key.
    pub fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_key.as_ref()
    }
}

impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

/// Work done after a commit ([`Tx::after_commit`]).
pub type AfterCommit = Box<dyn FnOnce() + Send + Sync>;

/// A point inside a transaction ([`Tx::mark`]).
#[derive(Debug)]
#[must_use = "a mark is kept or gone back to"]
pub struct Mark {
    recorded: usize,
    after_commit: usize,
    announced: changes::Announced,
}

/// Whether `error` is PostgreSQL abandoning a statement to break a deadlock (40P01) or a
/// serialization failure (40001): two transactions took the same rows in opposite orders, and
/// the database chose this one to give way. Nothing of it was written; done again once the
/// other has finished, it goes through. (SQLite has one writer at a time, so never.)
pub fn is_transient(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// How many times work the database abandoned to break a deadlock is done again.
pub const DEADLOCK_RETRIES: u32 = 8;

/// Waits before doing again the `retries`-th time what the database abandoned: 10 ms, doubling
/// (to 320 ms), so that the transactions it was waiting with finish first — done at once, it
/// would take the same rows ahead of them and meet them again.
pub async fn give_way(retries: u32) {
    tokio::time::sleep(Duration::from_millis(10 << retries.min(5))).await;
}

/// What a caller hears when its request gave way ([`is_transient`]): every boundary answers
/// 503 with `Retry-After`.
pub const GAVE_WAY: &str =
    "another request changed the same records at the same moment and this one gave way; nothing was changed; send it again";

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database_url scheme (use sqlite: or postgres:)")]
    UnsupportedUrl,
    #[error("an in-memory SQLite database is not supported (each connection would see its own): use a file, e.g. sqlite:sekimori.db")]
    InMemorySqlite,
    #[error("the SQLite database {path} cannot be created: its directory {directory} does not exist")]
    NoSqliteDirectory { path: String, directory: String },
    #[error("cannot connect to PostgreSQL at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Where write transactions begin. For SQLite, one connection of its own, taken in turn:
    /// SQLite has one writer at a time anyway, and queueing for it here is first come, first
    /// served, where SQLite's busy handler makes waiting writers poll with growing sleeps
    /// (slow, unfair under load, failing after the busy timeout). Readers use `pool` beside it
    /// (WAL). For PostgreSQL, the same pool as `pool`.
    writer: AnyPool,
    /// SQLite: what makes the writer's commits durable (`wal::WalSync`).
    wal_sync: Option<Arc<wal::WalSync>>,
    dialect: Dialect,
    /// Set once, when the master key is loaded; shared by the clones of this store only (each
    /// `connect` makes its own), so stores opened with different keys never mix them.
    audit_key: Arc<OnceLock<AuditKey>>,
    committed: Arc<CommittedEvents>,
    /// Changes announced through this store or heard from other nodes (`changes`).
    changes: Arc<changes::Counter>,
}

/// The store already holds another audit key.
#[derive(Debug, thiserror::Error)]
#[error("this store was opened with another master key (its audit chain key differs)")]
pub struct AuditKeyConflict;

/// A SQLite file is created on first start, but not its directory: a missing one is named.
/// The file a `sqlite:` URL names.
fn sqlite_path(database_url: &str) -> &str {
    let path = database_url.trim_start_matches("sqlite:").trim_start_matches("//");
    path.split('?').next().unwrap_or(path)
}

fn check_sqlite_directory(database_url: &str) -> Result<(), StoreError> {
    let path = sqlite_path(database_url);
    let directory = match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => return Ok(()),
    };
    if directory.is_dir() {
        Ok(())
    } else {
        Err(StoreError::NoSqliteDirectory { path: path.to_owned(), directory: directory.display().to_string() })
    }
}

/// How long a pooled connection may sit idle before it is pinged when handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the pool. For SQLite the file is created if missing and put in WAL mode.
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if database_url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        if dialect == Dialect::Sqlite && (database_url.contains(":memory:") || database_url.contains("mode=memory")) {
            return Err(StoreError::InMemorySqlite);
        }
        let url = match dialect {
            Dialect::Sqlite if !database_url.contains("mode=") => {
                let sep = if database_url.contains('?') { '&' } else { '?' };
                format!("{database_url}{sep}mode=rwc")
            }
            _ => database_url.to_owned(),
        };
        if dialect == Dialect::Sqlite {
            check_sqlite_directory(database_url)?;
        }
        let options = AnyConnectOptions::from_str(&url)?;
        if dialect == Dialect::Postgres {
            // One plain connection first: an unreachable server is named, with its cause, in
            // seconds (the pool would only say that it timed out).
            let unreachable = |cause: String| StoreError::Unreachable { url: redacted_url(database_url), cause };
            match tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect_with(&options)).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => return Err(unreachable(e.to_string())),
                Err(_) => return Err(unreachable("no answer within 5 seconds".into())),
            }
        }
        let connections = match dialect {
            Dialect::Sqlite => 8,
            Dialect::Postgres => 16,
        };
        // On SQLite, a write on the readers' pool (a purge, say) syncs at its commit; the writer's
        // commits are synced beside it, by `wal::WalSync`, before `Tx::commit` returns.
        let pool = Self::open_pool(dialect, &options, connections, "FULL").await?;
        let (writer, wal_sync) = match dialect {
            Dialect::Sqlite => (
                Self::open_pool(dialect, &options, 1, "NORMAL").await?,
                Some(Arc::new(wal::WalSync::new(std::path::Path::new(sqlite_path(database_url))))),
            ),
            Dialect::Postgres => (pool.clone(), None),
        };
        Ok(Self {
            pool,
            writer,
            wal_sync,
            dialect,
            audit_key: Arc::new(OnceLock::new()),
            committed: Arc::new(CommittedEvents::default()),
            changes: Arc::new(changes::Counter::default()),
        })
    }

    /// A pool of `connections`; on SQLite each with `PRAGMA synchronous = {synchronous}`.
    async fn open_pool(
        dialect: Dialect,
        options: &AnyConnectOptions,
        connections: u32,
        synchronous: &'static str,
    ) -> Result<AnyPool, StoreError> {
        Ok(AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out, by default: a round trip to PostgreSQL
            // (or a hop to SQLite's worker thread) before every query. Only a connection that sat
            // idle long enough for the server to have gone (a restart, a failover) is pinged; one
            // in use moments ago is not, and if it breaks, its query fails and it is discarded.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run beside the one writer; the busy timeout makes
                        // writers from other pools and processes (the CLI) wait instead of
                        // failing; SQLite checks foreign keys only when asked.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        // Every commit is on disk before it returns, as PostgreSQL's is: a lost
                        // card reported stopped, a revocation, a token's audit event must not
                        // come back undone after a power failure, and a signed checkpoint
                        // written outside must never be ahead of the database (which `audit
                        // verify` would report as a truncated chain). FULL syncs at each
                        // commit; the writer's NORMAL leaves the sync to `wal::WalSync`, which
                        // `Tx::commit` waits for. (NORMAL alone synced only at WAL checkpoints,
                        // some 50 ms of commits at risk.)
                        conn.execute(format!("PRAGMA synchronous = {synchronous}").as_str()).await?;
                        // The WAL is copied back by `wal::spawn_checkpointer`, not by commits.
                        conn.execute(format!("PRAGMA wal_autocheckpoint = {}", wal::WRITER_BACKSTOP).as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pools, named, for monitoring: `main`, and on SQLite the one-connection `writer`
    /// beside it (on PostgreSQL they are one pool).
    pub fn pools(&self) -> Vec<(&'static str, &AnyPool)> {
        match self.dialect {
            Dialect::Sqlite => vec![("main", &self.pool), ("writer", &self.writer)],
            Dialect::Postgres => vec![("main", &self.pool)],
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Gives the store the audit chain's key; a second call with the same key does nothing.
    pub fn set_audit_key(&self, key: AuditKey) -> Result<(), AuditKeyConflict> {
        let held = self.audit_key.get_or_init(|| key);
        if crate::crypto::ct_eq(held, &key) {
            Ok(())
        } else {
            Err(AuditKeyConflict)
        }
    }

    pub fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_key.get()
    }

    /// Begins a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so
    /// that a transaction which reads before it writes cannot fail on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        // Once SQLite's commits cannot be made durable, nothing more is written: a commit whose
        // caller hears an error must not take effect all the same.
        if let Some(reason) = self.durability_lost() {
            return Err(wal::not_durable(&reason));
        }
        let inner = match self.dialect {
            Dialect::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.writer.begin().await?,
        };
        // On SQLite the writer's commit is made durable beside it (`wal::WalSync`).
        Ok(Tx { wal_sync: self.wal_sync.clone(), ..self.tx(inner) })
    }

    /// How many times the SQLite writer's commits have been synced to disk (`wal::WalSync`);
    /// None on PostgreSQL.
    pub fn wal_syncs(&self) -> Option<u64> {
        self.wal_sync.as_ref().map(|sync| sync.syncs())
    }

    /// Why commits can no longer be made durable (a failed sync of SQLite's WAL), if so.
    pub fn durability_lost(&self) -> Option<String> {
        self.wal_sync.as_ref().and_then(|sync| sync.failed())
    }

    fn tx(&self, inner: Transaction<'static, Any>) -> Tx {
        Tx {
            inner,
            audit_key: self.audit_key().copied(),
            dialect: self.dialect,
            recorded: Vec::new(),
            committed: self.committed.clone(),
            announced: changes::Announced::default(),
            after_commit: Vec::new(),
            changes: self.changes.clone(),
            wal_sync: None,
        }
    }

    /// The changes this node knows of: announced through this store (counted when their
    /// transaction commits) or heard from other nodes. A cache keeps what it read only while
    /// this count stays the one it saw before reading.
    pub fn changes(&self) -> &changes::Counter {
        &self.changes
    }

    /// The audit events committed through this store (and its clones) not yet taken by the
    /// sealer.
    pub fn committed_events(&self) -> &CommittedEvents {
        &self.committed
    }

    /// Begins a transaction for reading (on SQLite, on the readers' pool: it takes no write
    /// lock).
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        Ok(self.tx(self.pool.begin().await?))
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// A database URL without its password, for logs and messages.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// True when `err` is a violation of the named unique/check/foreign-key constraint.
/// SQLite reports columns rather than constraint names, so callers pass both.
pub fn is_constraint(err: &sqlx::Error, pg_name: &str, sqlite_columns: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            if let Some(name) = db.constraint() {
                return name == pg_name;
            }
            let msg = db.message();
            msg.contains(sqlite_columns) || msg.contains(pg_name)
        }
        _ => false,
    }
}

/// Turns the violation of a known constraint into the caller's own error; any other error
/// passes through as a database error. Each case: (PostgreSQL constraint name, the columns
/// SQLite names instead, the error to answer with).
pub trait OnConstraint<T> {
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        cases: impl IntoIterator<Item = (&'static str, &'static str, E)>,
    ) -> Result<T, E>;
}

impl<T> OnConstraint<T> for Result<T, sqlx::Error> {
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        cases: impl IntoIterator<Item = (&'static str, &'static str, E)>,
    ) -> Result<T, E> {
        self.map_err(|e| {
            cases
                .into_iter()
                .find(|(pg, sqlite, _)| is_constraint(&e, pg, sqlite))
                .map(|(_, _, mapped)| mapped)
                .unwrap_or_else(|| E::from(e))
        })
    }
}

/// True for any unique-constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A value bound to a [`Select`].
#[derive(Debug, Clone)]
enum Bound {
    Text(String),
    Int(i64),
}

/// A query assembled from fixed SQL fragments and bound values, for filters whose shape
/// depends on what the caller asked. Fragments are `&'static str`, so input can only ever be
/// bound, never spliced into the SQL. (sqlx's `QueryBuilder` writes `?` placeholders for
/// `Any`, which PostgreSQL refuses; this writes the `$N` both databases take.)
#[derive(Debug, Clone, Default)]
pub struct Select {
    sql: String,
    binds: Vec<Bound>,
}

impl Select {
    pub fn new(sql: &'static str) -> Self {
        Select { sql: sql.to_owned(), binds: Vec::new() }
    }

    /// Appends SQL text (a constant of the caller).
    pub fn push(&mut self, sql: &'static str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind_text(&mut self, value: impl Into<String>) -> &mut Self {
        self.binds.push(Bound::Text(value.into()));
        self.placeholder()
    }

    pub fn bind_int(&mut self, value: i64) -> &mut Self {
        self.binds.push(Bound::Int(value));
        self.placeholder()
    }

    fn placeholder(&mut self) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.sql, "${}", self.binds.len());
        self
    }

    /// The query, ready to run.
    pub fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
        self.binds.iter().fold(sqlx::query(&self.sql), |query, value| match value {
            Bound::Text(text) => query.bind(text.as_str()),
            Bound::Int(int) => query.bind(*int),
        })
    }
}

/// What a JSON array bound as one parameter holds (see [`in_json_array`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonArrayOf {
    Text,
    Integers,
}

/// `column` is one of the values of the JSON array bound as `param`: a list of any length in
/// one statement text, so that one prepared statement serves every batch size. On PostgreSQL
/// it is `= ANY (ARRAY(…))`: `IN (SELECT jsonb_array_elements_text(…))` was planned as a
/// sequential scan with a hash semi-join (2.9 ms against 0.67 ms for 16 refresh tokens).
pub fn in_json_array(dialect: Dialect, column: &str, param: &str, of: JsonArrayOf) -> String {
    match (dialect, of) {
        (Dialect::Sqlite, _) => format!("{column} IN (SELECT value FROM json_each({param}))"),
        (Dialect::Postgres, JsonArrayOf::Text) => {
            format!("{column} = ANY (ARRAY(SELECT jsonb_array_elements_text(CAST({param} AS jsonb))))")
        }
        (Dialect::Postgres, JsonArrayOf::Integers) => {
            format!("{column} = ANY (ARRAY(SELECT CAST(jsonb_array_elements_text(CAST({param} AS jsonb)) AS BIGINT)))")
        }
    }
}

/// A statement planned each time it runs on PostgreSQL (an unnamed statement), not once for the
/// connection: a plan made while a table was small is a sequential scan, and the connection kept
/// it until the table was next analyzed — after 16,000 tokens were issued, each userinfo call's
/// row was looked for among all of them (2,000 answers a second instead of 15,000; BENCHMARKS.md,
/// eleventh run). For statements that run once per batch (the sealer's, a batch's rotations, an
/// HR file's), where planning is cheap beside what they do. Not for the kept tokens' row check,
/// which runs for most calls and is prepared: the token tables are analyzed as they grow
/// (`jobs::spawn_statistics`), which makes its plan again. Nor for the joins that read
/// tokens with their person (`oidc::live`), which run for every call not kept: their kept plans
/// can go stale the same way (BENCHMARKS.md, eleventh run, refresh), but planning them each time
/// cost more than that (refresh −25 %, introspection of tokens not kept −50 %).
pub fn batch_query(dialect: Dialect, sql: &str) -> AnyQuery<'_> {
    sqlx::query(sql).persistent(dialect == Dialect::Sqlite)
}

/// `text` as a LIKE pattern matching itself only: `%`, `_` and the escape `\` lose their
/// meaning. Use with `LIKE $n ESCAPE '\'`, which SQLite and PostgreSQL read alike.
pub fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
        assert_eq!(escape_like("山田"), "山田");
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut select = Select::new("SELECT 1 WHERE a = ");
        select.bind_text("x").push(" AND b = ").bind_int(2);
        assert_eq!(select.sql, "SELECT 1 WHERE a = $1 AND b = $2");
    }
}
