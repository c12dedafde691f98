//! Sekimori's only build step: the PostgreSQL variants of the integration tests are compiled
//! as ignored (so `cargo test` lists them as such) unless `SEKIMORI_TEST_POSTGRES_URL` names a
//! server when the tests are built.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sekimori_postgres_tests)");
    println!("cargo::rerun-if-env-changed=SEKIMORI_TEST_POSTGRES_URL");
    // The migrations are embedded in the binary (sqlx::migrate!): a new or changed one rebuilds it.
    println!("cargo::rerun-if-changed=migrations");
    if std::env::var("SEKIMORI_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=sekimori_postgres_tests");
    }
}
