//! Two tenants on one PostgreSQL database: a schema each for all three stores (see
//! `tenants/mod.rs`), and the default schema left to the stores without a tenant.
//!
//! Runs when `EVENTSOURCERY_POSTGRES_URL` is set; otherwise each test prints that it was
//! skipped. Each test that ran appends `tenants_postgres::<test>` to the file named by
//! `EVENTSOURCERY_POSTGRES_MARKER` (CI counts them).
#![cfg(feature = "postgres")]

mod support;
mod tenants;

use eventsourcery::config::{MasterKeySource, Settings};
use support::postgres::TestDatabase;

#[tokio::test]
async fn two_tenants_see_nothing_of_each_other() {
    let Some(database) = TestDatabase::create("two_tenants_see_nothing_of_each_other").await else {
        return;
    };
    let url = database.url();
    let mut settings = Settings::defaults(std::env::temp_dir());
    settings.events_url = url.clone();
    settings.keys_url = url.clone();
    settings.personal_url = url;
    settings.master_key = MasterKeySource::Hex(
        "4f1c2b3a59687766554433221100ffeeddccbbaa99887766554433221100ffee".into(),
    );
    let (acme, globex) = tenants::two_tenants_see_nothing_of_each_other(&settings).await;

    // Every table of the three stores exists once per tenant schema, and the same set in
    // `public` (from the stores opened without a tenant).
    let pool = database.pool().await;
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT table_schema::text, count(*) FROM information_schema.tables \
         WHERE table_name LIKE 'eventsourcery%' GROUP BY table_schema ORDER BY table_schema",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let schemas: Vec<&str> = tables.iter().map(|(schema, _)| schema.as_str()).collect();
    assert_eq!(schemas, ["acme", "globex", "public"], "{tables:?}");
    assert!(tables.windows(2).all(|w| w[0].1 == w[1].1), "{tables:?}");
    assert!(tables[0].1 >= 3, "{tables:?}");

    pool.close().await;
    for stores in [acme, globex] {
        if let Some(store) = stores.backend.postgres() {
            store.pool().close().await;
        }
    }
    database.finish().await;
}
