//! Continuous monitoring (R20): `/metrics` on the admin listener, in the Prometheus text format
//! (OpenMetrics), for a caller holding the `metrics:read` right.
//!
//! Two kinds of figures:
//! - **counters** of what this process did (logins by outcome, tokens by grant type,
//!   revocations by what was revoked). They are process-wide statics, so that the one place
//!   that decides something counts it without being handed the `App` (the revocation module
//!   is called from jobs and the directory, in their transactions). One process is one scrape
//!   target: when several `App`s share a process (the tests), they share these counters.
//! - **gauges** read at scrape time from the `App` that answers: the back-channel and mail
//!   outboxes, HR changes overdue or failed, database pool use and the audit log's last
//!   sequence number. Each backlog is one `COUNT(*)` on an indexed column; they are what
//!   an operator alerts on (a backlog that only grows means a delivery that no longer works).
//!
//! Each `App` holds its own [`Registry`] (no global recorder): the counters are registered in
//! it by handle, the gauges are its own.
//!
//! Two figures of this node's place in a cluster (`cluster`), set when they change:
//! `sekimori_jobs_leader` (1 on the node running the jobs that run once, 0 elsewhere) and
//! `sekimori_cluster_notices_total`, the change notices this node heard from the others.

use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::Row;

use crate::store::Store;

/// One label: (name, value), both known at compile time.
type Label = [(&'static str, &'static str); 1];

/// The process-wide counters (see the module's notes).
struct Counters {
    logins: Family<[(&'static str, &'static str); 2], Counter>,
    tokens: Family<Label, Counter>,
    revocations: Family<Label, Counter>,
}

static COUNTERS: LazyLock<Counters> =
    LazyLock::new(|| Counters { logins: Family::default(), tokens: Family::default(), revocations: Family::default() });

/// A login step decided: `method` is `password` or `card`; `outcome` one of `success`,
/// `card_next`, `refused`, `throttled`, `password_change`, `replacement_card`.
pub fn login(method: &'static str, outcome: &'static str) {
    COUNTERS.logins.get_or_create(&[("method", method), ("outcome", outcome)]).inc();
}

/// Tokens issued at the token endpoint, by grant type.
pub fn token_issued(grant_type: &'static str) {
    COUNTERS.tokens.get_or_create(&[("grant_type", grant_type)]).inc();
}

/// A revocation carried out, by what was revoked. Counted when its transaction commits
/// (`store::Tx::commit`): one rolled back is not counted.
pub fn revocation(target: &'static str) {
    COUNTERS.revocations.get_or_create(&[("target", target)]).inc();
}

/// One `App`'s view: the counters by handle and its own scrape-time gauges.
pub struct Metrics {
    registry: Registry,
    backlog: Family<Label, Gauge>,
    pool_connections: Family<[(&'static str, &'static str); 2], Gauge>,
    audit_last_seq: Gauge,
    audit_unsealed: Gauge,
    audit_seal_lag: Gauge,
    wal_syncs: Counter,
    jobs_leader: Gauge,
    cluster_notices: Family<Label, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sekimori");
        // Counter names get `_total` from the encoder.
        registry.register("logins", "Login steps decided, by method and outcome", COUNTERS.logins.clone());
        registry.register("tokens_issued", "Token responses issued, by grant type", COUNTERS.tokens.clone());
        registry.register("revocations", "Revocations carried out, by target kind", COUNTERS.revocations.clone());
        let backlog = Family::<Label, Gauge>::default();
        registry.register(
            "backlog",
            "Work waiting: logout_notices (back-channel), mail (outbox), hr_changes_overdue, hr_changes_failed",
            backlog.clone(),
        );
        let pool_connections = Family::<[(&'static str, &'static str); 2], Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections, by pool and state (open, idle)",
            pool_connections.clone(),
        );
        let audit_last_seq = Gauge::default();
        registry.register("audit_last_seq", "Chain position of the last sealed audit event", audit_last_seq.clone());
        let audit_unsealed = Gauge::default();
        registry.register(
            "audit_unsealed_events",
            "Committed audit events not yet sealed into the chain",
            audit_unsealed.clone(),
        );
        let audit_seal_lag = Gauge::default();
        registry.register(
            "audit_seal_lag_seconds",
            "Age of the oldest committed audit event not yet sealed (0 when none)",
            audit_seal_lag.clone(),
        );
        let wal_syncs = Counter::default();
        registry.register(
            "db_wal_syncs",
            "Syncs of SQLite's write-ahead log to disk, each making the commits before it durable (0 on PostgreSQL)",
            wal_syncs.clone(),
        );
        let jobs_leader = Gauge::default();
        registry.register(
            "jobs_leader",
            "1 while this node runs the jobs that run once in a cluster (sweeper, HR changes, access), else 0",
            jobs_leader.clone(),
        );
        let cluster_notices = Family::<Label, Counter>::default();
        registry.register(
            "cluster_notices",
            "Change notices heard from the nodes of the cluster, by change (keys, revocation)",
            cluster_notices.clone(),
        );
        Self {
            registry,
            backlog,
            pool_connections,
            audit_last_seq,
            audit_unsealed,
            audit_seal_lag,
            wal_syncs,
            jobs_leader,
            cluster_notices,
        }
    }

    /// Whether this node runs the singleton jobs now.
    pub fn set_jobs_leader(&self, leader: bool) {
        self.jobs_leader.set(i64::from(leader));
    }

    /// A change notice heard from the cluster.
    pub fn cluster_notice(&self, change: &'static str) {
        self.cluster_notices.get_or_create(&[("change", change)]).inc();
    }

    /// Reads the gauges from the database and encodes everything.
    pub async fn render(&self, store: &Store, now: i64) -> Result<String, sqlx::Error> {
        // Each a COUNT on an index: the partial indexes of pending notices and pending mail,
        // and person_changes (status, effective_at).
        let pool = store.pool();
        let count = |row: sqlx::any::AnyRow| row.try_get::<i64, _>("n");
        let backlog = [
            (
                "logout_notices",
                count(
                    sqlx::query(
                        "SELECT COUNT(*) AS n FROM logout_notices WHERE delivered_at IS NULL AND abandoned_at IS NULL",
                    )
                    .fetch_one(pool)
                    .await?,
                )?,
            ),
            (
                "mail",
                count(
                    sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE mail_status = 'pending'")
                        .fetch_one(pool)
                        .await?,
                )?,
            ),
            (
                "hr_changes_overdue",
                count(
                    sqlx::query(
                        "SELECT COUNT(*) AS n FROM person_changes WHERE status = 'pending' AND effective_at <= $1",
                    )
                    .bind(now)
                    .fetch_one(pool)
                    .await?,
                )?,
            ),
            (
                "hr_changes_failed",
                count(
                    sqlx::query("SELECT COUNT(*) AS n FROM person_changes WHERE status = 'failed'")
                        .fetch_one(pool)
                        .await?,
                )?,
            ),
        ];
        for (queue, n) in backlog {
            self.backlog.get_or_create(&[("queue", queue)]).set(n);
        }
        let seq = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM audit_head").fetch_one(store.pool()).await?;
        self.audit_last_seq.set(seq.try_get::<i64, _>("n")?);
        let (unsealed, lag) = crate::audit::seal::lag(store, now).await?;
        self.audit_unsealed.set(unsealed);
        self.audit_seal_lag.set(lag);
        // The store counts; the counter catches up with it at each scrape.
        let synced = store.wal_syncs().unwrap_or(0);
        if let Some(more) = synced.checked_sub(self.wal_syncs.get()).filter(|more| *more > 0) {
            self.wal_syncs.inc_by(more);
        }
        for (name, pool) in store.pools() {
            let open = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
            self.pool_connections.get_or_create(&[("pool", name), ("state", "open")]).set(open);
            self.pool_connections.get_or_create(&[("pool", name), ("state", "idle")]).set(idle);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        Ok(text)
    }
}

/// The content type of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
