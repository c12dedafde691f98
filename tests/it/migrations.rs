//! `migrations/sqlite` and `migrations/postgres` describe one schema: the same tables, columns,
//! nullability, primary keys, unique constraints and indexes (named indexes by name, partial
//! ones as partial). Column types differ by dialect (INTEGER / BIGINT) and are not compared;
//! nor are the append-only triggers, which each database expresses its own way.

use std::collections::{BTreeMap, BTreeSet};

use sekimori::store::Store;
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
