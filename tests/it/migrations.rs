//! `migrations/sqlite` and `migrations/postgres` describe one schema: the same tables, columns,
//! nullability, primary keys, unique constraints and indexes (named indexes by name, partial
//! ones as partial). Column types differ by dialect (INTEGER / BIGINT) and are not compared;
//! nor are the append-only triggers, which each database expresses its own way. And a log
//! written before a migration that moved the audit chain is carried over by it.

use std::collections::{BTreeMap, BTreeSet};

use sekimori::store::Store;
use serde_json::json;
use sqlx::Row;

use crate::common::{fresh_database, Db};

/// An index or unique constraint. Unique constraints have no comparable name (SQLite names
/// them itself); indexes made by `CREATE INDEX` are compared by name too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    table: String,
    columns: Vec<String>,
    unique: bool,
    partial: bool,
    name: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    /// table → column → nullable
    columns: BTreeMap<String, BTreeMap<String, bool>>,
    primary_keys: BTreeMap<String, Vec<String>>,
    indexes: BTreeSet<Index>,
}

async fn sqlite_schema(store: &Store) -> Schema {
    let pool = store.pool();
    let mut schema = Schema::default();
    let tables = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for table in tables {
        let table: String = table.try_get("name").unwrap();
        let mut columns = BTreeMap::new();
        let mut primary: Vec<(i64, String)> = Vec::new();
        for row in sqlx::query("SELECT name, \"notnull\" AS not_null, pk FROM pragma_table_info($1)")
            .bind(&table)
            .fetch_all(pool)
            .await
            .unwrap()
        {
            let name: String = row.try_get("name").unwrap();
            let pk: i64 = row.try_get("pk").unwrap();
            // A primary key column is never null in practice; PostgreSQL says so, SQLite does not.
            let nullable = row.try_get::<i64, _>("not_null").unwrap() == 0 && pk == 0;
            if pk > 0 {
                primary.push((pk, name.clone()));
            }
            columns.insert(name, nullable);
        }
        primary.sort();
        schema.primary_keys.insert(table.clone(), primary.into_iter().map(|(_, c)| c).collect());
        schema.columns.insert(table.clone(), columns);
        for index in sqlx::query("SELECT name, \"unique\" AS is_unique, origin, partial FROM pragma_index_list($1)")
            .bind(&table)
            .fetch_all(pool)
            .await
            .unwrap()
        {
            let origin: String = index.try_get("origin").unwrap();
            if origin == "pk" {
                continue;
            }
            let name: String = index.try_get("name").unwrap();
            let columns = sqlx::query("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String, _>("name").unwrap())
                .collect();
            schema.indexes.insert(Index {
                table: table.clone(),
                columns,
                unique: index.try_get::<i64, _>("is_unique").unwrap() == 1,
                partial: index.try_get::<i64, _>("partial").unwrap() == 1,
                name: (origin == "c").then_some(name),
            });
        }
    }
    schema
}

async fn postgres_schema(store: &Store) -> Schema {
    let pool = store.pool();
    let mut schema = Schema::default();
    let tables = sqlx::query(
        "SELECT table_name::text AS name FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for table in tables {
        let table: String = table.try_get("name").unwrap();
        let columns = sqlx::query(
            "SELECT column_name::text AS name, is_nullable::text AS nullable FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get::<String, _>("name").unwrap(), r.try_get::<String, _>("nullable").unwrap() == "YES"))
        .collect();
        schema.columns.insert(table.clone(), columns);
        let indexes = sqlx::query(
            "SELECT ic.relname::text AS name, i.indisunique AS is_unique, i.indisprimary AS is_primary,
                    (i.indpred IS NOT NULL) AS partial,
                    EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) AS constraint_backed,
                    array_to_string(ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
                                          FROM generate_series(1, i.indnatts) AS k ORDER BY k), ',') AS columns
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = 'public' AND t.relname = $1",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .unwrap();
        for index in indexes {
            let columns: Vec<String> =
                index.try_get::<String, _>("columns").unwrap().split(',').map(str::to_owned).collect();
            if index.try_get::<bool, _>("is_primary").unwrap() {
                schema.primary_keys.insert(table.clone(), columns);
                continue;
            }
            let constraint: bool = index.try_get("constraint_backed").unwrap();
            schema.indexes.insert(Index {
                table: table.clone(),
                columns,
                unique: index.try_get("is_unique").unwrap(),
                partial: index.try_get("partial").unwrap(),
                name: (!constraint).then(|| index.try_get("name").unwrap()),
            });
        }
        schema.primary_keys.entry(table).or_default();
    }
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sekimori_postgres_tests), ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built")]
async fn sqlite_and_postgres_migrations_describe_the_same_schema() {
    let sqlite_url = fresh_database(Db::Sqlite).await;
    let postgres_url = fresh_database(Db::Postgres).await;
    let sqlite = Store::connect(&sqlite_url).await.unwrap();
    sqlite.migrate().await.unwrap();
    let postgres = Store::connect(&postgres_url).await.unwrap();
    postgres.migrate().await.unwrap();
    let (lite, pg) = (sqlite_schema(&sqlite).await, postgres_schema(&postgres).await);
    sqlite.close().await;
    postgres.close().await;
    crate::common::drop_database(&sqlite_url).await;
    crate::common::drop_database(&postgres_url).await;

    assert!(lite.columns.len() > 20, "the schema was read: {:?}", lite.columns.keys());
    assert_eq!(
        lite.columns.keys().collect::<Vec<_>>(),
        pg.columns.keys().collect::<Vec<_>>(),
        "the same tables (SQLite left, PostgreSQL right)"
    );
    for (table, columns) in &lite.columns {
        assert_eq!(Some(columns), pg.columns.get(table), "{table}: columns and nullability (SQLite left)");
    }
    assert_eq!(lite.primary_keys, pg.primary_keys, "primary keys (SQLite left)");
    let only_sqlite: Vec<_> = lite.indexes.difference(&pg.indexes).collect();
    let only_postgres: Vec<_> = pg.indexes.difference(&lite.indexes).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "indexes and unique constraints differ:\nonly in SQLite: {only_sqlite:#?}\nonly in PostgreSQL: {only_postgres:#?}"
    );
}

/// The audit chain as the schema before migration 0017 held it (links in the events' own rows),
/// written here with the chain's formulas, so that the migration is tested on a real log and
/// the formulas stay what the stored links were made with.
mod before_audit_links {
    use hmac::{Hmac, Mac};
    use serde_json::json;

    pub fn hmac(key: &[u8; 32], text: String) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// An event's MAC: its number and every field ("sekimori audit event v2").
    pub fn event_mac(key: &[u8; 32], seq: i64, at: i64, target: &str, detail: &str) -> String {
        let fields = json!(["sekimori audit event v2", seq, at, "system", "test.old", target, "success", detail, null]);
        hmac(key, fields.to_string())
    }

    /// A sealed event's link ("sekimori audit seal v2").
    pub fn link(key: &[u8; 32], position: i64, prev: &str, seq: i64, mac: &str) -> String {
        hmac(key, json!(["sekimori audit seal v2", position, prev, seq, mac]).to_string())
    }
}

/// A log written before migration 0017 (five sealed events, and on PostgreSQL two committed
/// but not yet sealed) is carried over: after the migration it verifies, the unsealed events
/// are on the sealer's work list and are sealed onto the old chain, and events written since
/// follow on.
async fn an_audit_log_from_before_audit_links_is_carried_over(db: Db) {
    use sekimori::audit::{self, Verification};
    let url = fresh_database(db).await;
    let store = Store::connect(&url).await.unwrap();
    // The migrations up to 0016, from a copy of the directory.
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    });
    let scratch = crate::cli::temp_dir();
    let before = scratch.join("migrations");
    std::fs::create_dir_all(&before).unwrap();
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0017" {
            std::fs::copy(&path, before.join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(before.as_path()).await.unwrap().run(store.pool()).await.unwrap();

    let key: [u8; 32] = rand::random();
    let pool = store.pool();
    let mut prev = audit::GENESIS_HASH.to_owned();
    let unsealed = if matches!(db, Db::Postgres) { 2 } else { 0 };
    for seq in 1..=5 + unsealed {
        let (at, target, detail) = (1_790_000_000 + seq, format!("old:{seq}"), json!({ "n": seq }).to_string());
        let mac = before_audit_links::event_mac(&key, seq, at, &target, &detail);
        let sealed = seq <= 5;
        let hash = if sealed { before_audit_links::link(&key, seq, &prev, seq, &mac) } else { String::new() };
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, target, outcome, detail, source_ip, mac, chain_pos, prev_hash, hash)
             VALUES ($1, $2, 'system', 'test.old', $3, 'success', $4, NULL, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(at)
        .bind(&target)
        .bind(&detail)
        .bind(&mac)
        .bind(sealed.then_some(seq))
        .bind(if sealed { prev.as_str() } else { "" })
        .bind(&hash)
        .execute(pool)
        .await
        .unwrap();
        if sealed {
            prev = hash;
        }
    }
    sqlx::query("UPDATE audit_head SET seq = 5, hash = $1 WHERE id = 1").bind(&prev).execute(pool).await.unwrap();
    if matches!(db, Db::Postgres) {
        sqlx::query("SELECT setval('audit_events_seq', 8, false)").execute(pool).await.unwrap();
    }

    store.migrate().await.unwrap();
    store.set_audit_key(key).unwrap();
    let verification = audit::verify(&store).await.unwrap();
    assert_eq!(
        verification,
        Verification::Intact { events: 5 + unsealed, first: 1, last: 5, keyed_from: 1, unsealed },
        "the log carried over"
    );
    let listed: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_unsealed").fetch_one(pool).await.unwrap().try_get("n").unwrap();
    assert_eq!(listed, unsealed, "the unsealed events are on the sealer's work list");
    assert_eq!(audit::seal::seal(&store, 1_790_000_100).await.unwrap(), unsealed as u64);
    let mut tx = store.begin().await.unwrap();
    audit::Event::success(&audit::Actor::System, "test.new", "new", json!({}))
        .record(&mut tx, 1_790_000_100)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    audit::seal::seal(&store, 1_790_000_100).await.unwrap();
    let events = 6 + unsealed;
    assert_eq!(
        audit::verify(&store).await.unwrap(),
        Verification::Intact { events, first: 1, last: events, keyed_from: 1, unsealed: 0 },
        "sealed onto the old chain, and a new event after them"
    );
    // The API shows each event with its links, as before.
    let shown = audit::query::find(&store, &audit::query::Filter { limit: 10, ..Default::default() }).await.unwrap();
    assert!(
        shown.iter().all(|e| e.chain_pos.is_some() && e.hash.as_deref().is_some_and(|h| h.len() == 64)),
        "{shown:?}"
    );
    store.close().await;
    crate::common::drop_database(&url).await;
}

on_both_databases!(an_audit_log_from_before_audit_links_is_carried_over);
