//! The event store conformance suite and the bad-data cases against the PostgreSQL store.
//!
//! Compiled with `--features postgres` (or `--all-features`), and run only when
//! `EVENTSOURCERY_POSTGRES_URL` names a server (`postgres://postgres@127.0.0.1:5432/test`):
//! otherwise every test passes after printing that it was skipped. Each test creates its own
//! database on that server (`es_test_<uuid>`), dropped when the test passes, so tests run in
//! parallel without seeing each other (see `tests/support`, which also records each test that
//! really ran for CI).

#[cfg(feature = "postgres")]
mod conformance;
#[cfg(feature = "postgres")]
mod support;

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_store_tests_need_the_postgres_feature() {
    println!("skipped: the PostgreSQL store tests are compiled only with `--features postgres`");
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use eventsourcery::{EventStore, PostgresStore, StoreError};
    use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
    use uuid::Uuid;

    use super::conformance::bad_data::{BoxFuture, Raw, RawEvent};
    use super::conformance::{self, Harness};

    use super::support::postgres::TestDatabase;

    /// Closes the store's pool, then drops the database and records that the test ran.
    async fn finish(database: TestDatabase, pool: PgPool) {
        pool.close().await;
        database.finish().await;
    }

    async fn open(test: &'static str) -> Option<(Harness, PostgresStore, TestDatabase)> {
        let database = TestDatabase::create(test).await?;
        let store = PostgresStore::from_pool(database.pool().await)
            .await
            .expect("open PostgreSQL store");
        let harness = Harness::new("postgres", Arc::new(store.clone()));
        Some((harness, store, database))
    }

    async fn setup(test: &'static str) -> Option<Harness> {
        let (harness, store, database) = open(test).await?;
        let pool = store.pool().clone();
        Some(harness.with_cleanup(finish(database, pool)))
    }

    conformance::suite!(setup);

    /// Raw SQL on the test database.
    struct PgRaw {
        store: PostgresStore,
        options: PgConnectOptions,
    }

    impl Raw for PgRaw {
        fn insert_event(&self, row: RawEvent) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO eventsourcery_events (position, event_id, stream_id, stream_version,
                         event_name, schema_version, payload, metadata, recorded_at_ns)
                     VALUES (nextval('eventsourcery_position_seq'), $1::uuid, $2, $3, $4, $5,
                             $6::jsonb, $7::jsonb, 0)",
                )
                .bind(row.event_id)
                .bind(row.stream_id)
                .bind(row.stream_version)
                .bind(row.event_name)
                .bind(row.schema_version)
                .bind(row.payload)
                .bind(row.metadata)
                .execute(self.store.pool())
                .await
                .expect("raw insert");
            })
        }

        fn dump(&self) -> BoxFuture<'_, Vec<String>> {
            Box::pin(async move {
                sqlx::query_scalar(
                    "SELECT row_to_json(e)::text FROM eventsourcery_events e ORDER BY position",
                )
                .fetch_all(self.store.pool())
                .await
                .expect("dump")
            })
        }

        fn drop_events_table(&self) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                sqlx::query("DROP TABLE eventsourcery_events")
                    .execute(self.store.pool())
                    .await
                    .expect("drop table");
            })
        }

        fn add_future_migration(&self) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO eventsourcery_event_store_migrations
                         (version, description, success, checksum, execution_time)
                     VALUES (999, 'from a newer program', TRUE, '\\x00'::bytea, 0)",
                )
                .execute(self.store.pool())
                .await
                .expect("raw insert");
            })
        }

        fn reopen(&self) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async move {
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(self.options.clone())
                    .await
                    .expect("connect");
                let opened = PostgresStore::from_pool(pool.clone()).await.map(drop);
                pool.close().await;
                opened
            })
        }
    }

    async fn setup_raw(test: &'static str) -> Option<(Harness, Box<dyn Raw>)> {
        let (harness, store, database) = open(test).await?;
        let raw = PgRaw {
            store: store.clone(),
            options: database.options.clone(),
        };
        let pool = store.pool().clone();
        Some((harness.with_cleanup(finish(database, pool)), Box::new(raw)))
    }

    conformance::bad_data::suite!(
        setup_raw;
        unknown_event_name_is_a_decode_error,
        payload_of_the_wrong_shape_is_a_decode_error,
        newer_event_schema_version_is_a_decode_error,
        corrupt_metadata_is_a_corrupt_row,
        out_of_range_schema_version_is_a_corrupt_row,
        missing_events_table_is_a_database_error,
        newer_database_schema_is_refused,
    );

    /// Several processes starting at once all migrate, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn stores_opened_at_once_migrate_once() {
        let Some(database) = TestDatabase::create("stores_opened_at_once_migrate_once").await
        else {
            return;
        };
        let mut opening = Vec::new();
        for _ in 0..4 {
            let options = database.options.clone();
            opening.push(tokio::spawn(async move {
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .expect("connect");
                PostgresStore::from_pool(pool)
                    .await
                    .expect("open and migrate")
            }));
        }
        let mut stores = Vec::new();
        for handle in opening {
            stores.push(handle.await.expect("task"));
        }
        // Each migration ran once (the version is the table's key) and succeeded.
        let (applied, succeeded): (i64, bool) = sqlx::query_as(
            "SELECT COUNT(*), BOOL_AND(success) FROM eventsourcery_event_store_migrations",
        )
        .fetch_one(stores[0].pool())
        .await
        .expect("count migrations");
        assert!(
            applied >= 1 && succeeded,
            "{applied} migrations, all succeeded: {succeeded}"
        );
        // Two "processes" see each other's appends and conflicts.
        let a = conformance::stream("a");
        stores[0]
            .append(conformance::commit(&a, 0, conformance::events(1)))
            .await
            .expect("append");
        assert_eq!(stores[1].read_stream(&a, 0).await.expect("read").len(), 1);
        assert!(
            stores[2]
                .append(conformance::commit(&a, 0, conformance::events(1)))
                .await
                .is_err_and(|e| e.is_conflict())
        );
        for store in &stores[1..] {
            store.pool().close().await;
        }
        let pool = stores[0].pool().clone();
        finish(database, pool).await;
    }

    /// The append statement settles on its prepared generic plan instead of being planned
    /// again for every append (planning it costs as much as running it), whatever the number of
    /// commits per statement; on a pool built from `PostgresStore::pool_options`.
    #[tokio::test]
    async fn appends_settle_on_the_generic_plan() {
        let Some(database) = TestDatabase::create("appends_settle_on_the_generic_plan").await
        else {
            return;
        };
        // One connection, so the statement's plan statistics are that connection's.
        let pool = PostgresStore::pool_options()
            .max_connections(1)
            .connect_with(database.options.clone())
            .await
            .expect("connect");
        let store = PostgresStore::from_pool(pool).await.expect("open");
        // The plan counts in pg_prepared_statements are new in PostgreSQL 14.
        let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
            .fetch_one(store.pool())
            .await
            .expect("server version");
        if version < 140_000 {
            println!("skipped: PostgreSQL {version} does not count plans");
            let pool = store.pool().clone();
            return finish(database, pool).await;
        }
        for i in 0..12 {
            let a = conformance::stream(&format!("a{i}"));
            store
                .append(conformance::commit(&a, 0, conformance::events(1 + i % 3)))
                .await
                .expect("append");
        }
        let (generic, custom): (i64, i64) = sqlx::query_as(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements
             WHERE statement LIKE 'WITH current AS%'",
        )
        .fetch_one(store.pool())
        .await
        .expect("the append statement is prepared");
        assert!(
            generic >= 7 && custom <= 5,
            "{generic} generic plans, {custom} custom plans"
        );
        let pool = store.pool().clone();
        finish(database, pool).await;
    }

    /// The documented way to keep the tables in a schema of their own: `search_path` in the
    /// connect options.
    #[tokio::test]
    async fn tables_can_live_in_their_own_schema() {
        let Some(database) = TestDatabase::create("tables_can_live_in_their_own_schema").await
        else {
            return;
        };
        let setup = database.pool().await;
        sqlx::query("CREATE SCHEMA event_store")
            .execute(&setup)
            .await
            .expect("create schema");
        setup.close().await;
        let options = database
            .options
            .clone()
            .options([("search_path", "event_store")]);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("connect");
        let store = PostgresStore::from_pool(pool).await.expect("open");
        let a = conformance::stream("a");
        store
            .append(conformance::commit(&a, 0, conformance::events(2)))
            .await
            .expect("append");
        let schema: String = sqlx::query_scalar(
            "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'eventsourcery_events'",
        )
        .fetch_one(store.pool())
        .await
        .expect("find the table");
        assert_eq!(schema, "event_store");
        let pool = store.pool().clone();
        finish(database, pool).await;
    }

    /// A database written by a program from before parallel appends (schema version 2, with
    /// positions from a locked counter row) keeps its events and positions after migrating.
    #[tokio::test]
    async fn a_counter_schema_database_upgrades_in_place() {
        use sqlx::SqlSafeStr;
        use sqlx::migrate::{Migration, MigrationType, Migrator};

        let Some(database) =
            TestDatabase::create("a_counter_schema_database_upgrades_in_place").await
        else {
            return;
        };
        let pool = database.pool().await;
        // What the older program ran: the first two migrations, recorded in our table.
        let old = [
            (
                1,
                include_str!("../eventsourcery/migrations/postgres/0001_event_store.sql"),
            ),
            (
                2,
                include_str!("../eventsourcery/migrations/postgres/0002_consumers.sql"),
            ),
        ];
        let descriptions = ["event store", "consumers"];
        let mut migrator = Migrator::with_migrations(
            old.iter()
                .zip(descriptions)
                .map(|(&(version, sql), description)| {
                    Migration::new(
                        version,
                        description.into(),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect(),
        );
        migrator.dangerous_set_table_name("eventsourcery_event_store_migrations");
        migrator
            .run(&pool)
            .await
            .expect("the older program's migrations");
        // Two events appended the older program's way.
        for version in 1..=2_i64 {
            sqlx::query(
                "WITH head AS (
                     UPDATE eventsourcery_log_head SET last_position = last_position + 1
                     RETURNING last_position
                 )
                 INSERT INTO eventsourcery_events (position, event_id, stream_id, stream_version,
                     event_name, schema_version, payload, metadata, recorded_at_ns)
                 SELECT head.last_position, $1, 'old-1', $2, 'numbered', 1, '{}', '{}', 0
                 FROM head",
            )
            .bind(Uuid::now_v7())
            .bind(version)
            .execute(&pool)
            .await
            .expect("old append");
        }

        let store = PostgresStore::from_pool(pool)
            .await
            .expect("open and migrate");
        let old_events = store.read_all(0, 10).await.expect("read_all");
        let positions: Vec<u64> = old_events.iter().map(|e| e.position).collect();
        assert_eq!(positions, [1, 2], "old events are read at once");
        let stream = eventsourcery::value::StreamId::new("old-1");
        let next = store
            .append(conformance::commit(&stream, 2, conformance::events(1)))
            .await
            .expect("append after the upgrade");
        assert_eq!((next[0].position, next[0].stream_version), (3, 3));
        assert_eq!(store.read_all(2, 10).await.expect("read_all").len(), 1);
        let pool = store.pool().clone();
        finish(database, pool).await;
    }
}
