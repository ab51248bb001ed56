//! The personal data suite on PostgreSQL, each test with three databases of its own (events,
//! keys, personal data), plus what only SQL storage can show: no personal value in any column
//! of any table, nothing of an erased subject left, corrupt rows as typed errors, and the
//! migrations of each store kept apart.
//!
//! Runs when `EVENTSOURCERY_POSTGRES_URL` is set; otherwise each test prints that it was
//! skipped. Each test that ran appends `personal_postgres::<test>` to the file named by
//! `EVENTSOURCERY_POSTGRES_MARKER` (CI counts them).
#![cfg(feature = "postgres")]

mod personal;
mod support;

use std::sync::Arc;

use eventsourcery::backend::{PostgresKeyStore, PostgresPersonalStore};
use eventsourcery::personal::PersonalError;
use eventsourcery::store::KeyStore;
use eventsourcery::{PersonalKey, PostgresStore};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use personal::Backend;
use personal::raw::{self, BoxFuture, Database, Raw};
use support::postgres::TestDatabase;

/// The three stores of one test, each in a database of its own.
struct Databases {
    events: PostgresStore,
    keys: PostgresKeyStore,
    data: PostgresPersonalStore,
    databases: Vec<TestDatabase>,
}

async fn open(test: &'static str) -> Option<Databases> {
    let mut databases = Vec::new();
    for _ in 0..3 {
        databases.push(TestDatabase::create(test).await?);
    }
    Some(Databases {
        events: PostgresStore::from_pool(databases[0].pool().await)
            .await
            .expect("open the event store"),
        keys: PostgresKeyStore::from_pool(databases[1].pool().await)
            .await
            .expect("open the key store"),
        data: PostgresPersonalStore::from_pool(databases[2].pool().await)
            .await
            .expect("open the personal data store"),
        databases,
    })
}

impl Databases {
    fn backend(&self) -> Backend {
        Backend::new(
            Arc::new(self.events.clone()),
            Arc::new(self.keys.clone()),
            Arc::new(self.data.clone()),
        )
    }

    fn pool(&self, database: Database) -> &PgPool {
        match database {
            Database::Events => self.events.pool(),
            Database::Keys => self.keys.pool(),
            Database::Personal => self.data.pool(),
        }
    }

    /// Closes the pools, records that the test ran, and drops the databases.
    async fn finish(self) {
        for database in Database::ALL {
            self.pool(database).close().await;
        }
        for database in self.databases {
            database.finish().await;
        }
    }
}

async fn setup(test: &'static str) -> Option<Backend> {
    let databases = open(test).await?;
    let backend = databases.backend();
    Some(backend.with_cleanup(databases.finish()))
}

personal_suite!(setup);

/// Every column of every table outside the system schemas, each value cast to text (`bytea`
/// in hex), and `bytea` values also raw and in the escape format.
async fn dump(pool: &PgPool) -> Vec<u8> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text, column_name::text, data_type::text
         FROM information_schema.columns
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
         ORDER BY table_schema, table_name, ordinal_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!columns.is_empty());
    let mut out = Vec::new();
    for (schema, table, column, data_type) in columns {
        let from = format!("FROM \"{schema}\".\"{table}\"");
        let text = format!("SELECT \"{column}\"::text {from}");
        let values: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(text))
            .fetch_all(pool)
            .await
            .unwrap();
        for value in values.into_iter().flatten() {
            out.extend(value.into_bytes());
            out.push(b'\n');
        }
        if data_type == "bytea" {
            let escape = format!("SELECT encode(\"{column}\", 'escape') {from}");
            let values: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(escape))
                .fetch_all(pool)
                .await
                .unwrap();
            for value in values.into_iter().flatten() {
                out.extend(value.into_bytes());
                out.push(b'\n');
            }
            let raw = format!("SELECT \"{column}\" {from}");
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(AssertSqlSafe(raw))
                .fetch_all(pool)
                .await
                .unwrap();
            for value in values.into_iter().flatten() {
                out.extend(value);
                out.push(b'\n');
            }
        }
    }
    out
}

impl Raw for Databases {
    fn dump(&self, database: Database) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(dump(self.pool(database)))
    }

    fn rows_of(&self, table: &'static str, subject: PersonalKey) -> BoxFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move {
            let select = format!("SELECT row_to_json(t)::text FROM {table} t WHERE subject = $1");
            let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(select))
                .bind(subject.as_uuid())
                .fetch_all(self.pool(Database::of(table)))
                .await
                .unwrap();
            rows.into_iter().map(String::into_bytes).collect()
        })
    }
}

#[tokio::test]
async fn no_personal_value_in_any_column_of_the_three_databases() {
    let Some(databases) = open("no_personal_value_in_any_column_of_the_three_databases").await
    else {
        return;
    };
    let backend = databases.backend();
    raw::no_personal_value_in_any_table(&backend, &databases).await;
    drop(backend);
    databases.finish().await;
}

#[tokio::test]
async fn erasure_leaves_no_row_of_the_subject() {
    let Some(databases) = open("erasure_leaves_no_row_of_the_subject").await else {
        return;
    };
    let backend = databases.backend();
    let erased = raw::erasure_leaves_no_row_of_the_subject(&backend, &databases).await;
    assert!(backend.vault.is_erased(erased.subject).await.unwrap());
    drop(backend);
    databases.finish().await;
}

/// The bytes of the files of `tables` in the database of `pool`, after a checkpoint; `None`
/// if the server's data directory cannot be read from here (a server on another machine).
async fn relation_files(pool: &PgPool, tables: &[&str]) -> Option<Vec<u8>> {
    sqlx::query("CHECKPOINT").execute(pool).await.unwrap();
    let data: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    for table in tables {
        let path: String = sqlx::query_scalar("SELECT pg_relation_filepath($1::regclass)")
            .bind(*table)
            .fetch_one(pool)
            .await
            .unwrap();
        let file = std::path::Path::new(&data).join(path);
        // The main fork and its extra segments (`.1`, ...) if any.
        let name = file.file_name()?.to_string_lossy().into_owned();
        for entry in std::fs::read_dir(file.parent()?).ok()?.flatten() {
            let entry_name = entry.file_name().to_string_lossy().into_owned();
            if entry_name == name || entry_name.starts_with(&format!("{name}.")) {
                bytes.extend(std::fs::read(entry.path()).ok()?);
            }
        }
    }
    Some(bytes)
}

/// PostgreSQL keeps a deleted tuple in its heap page after a `DELETE` (the README says so next
/// to the erasure guarantee); `compact` rewrites the tables, after which no file of them holds
/// the erased subject's wrapped key or ciphertexts.
#[tokio::test]
async fn compacting_after_an_erasure_leaves_no_byte_in_the_table_files() {
    let Some(databases) =
        open("compacting_after_an_erasure_leaves_no_byte_in_the_table_files").await
    else {
        return;
    };
    let backend = databases.backend();
    let erased = raw::erasure_leaves_no_row_of_the_subject(&backend, &databases).await;
    let files = [
        (
            databases.keys.pool(),
            &["eventsourcery_data_keys", "eventsourcery_erasures"][..],
        ),
        (
            databases.data.pool(),
            &["eventsourcery_personal_data", "eventsourcery_blind_index"][..],
        ),
    ];
    let secrets: Vec<&Vec<u8>> = std::iter::once(&erased.wrapped_key)
        .chain(&erased.ciphertexts)
        .collect();
    for (pool, tables) in files {
        // A transaction of the cluster older than the erasure (another test's, a running
        // CREATE DATABASE) can keep the dead tuples one more round: compaction keeps what a
        // running transaction may still see, as the docs of `compact` say. So compact until
        // no such transaction is left, a few times at most.
        let mut clean = false;
        for _ in 0..20 {
            databases.keys.compact().await.unwrap();
            databases.data.compact().await.unwrap();
            let Some(bytes) = relation_files(pool, tables).await else {
                println!("the server's data directory is not readable here: file scan skipped");
                clean = true;
                break;
            };
            clean = !secrets
                .iter()
                .any(|secret| bytes.windows(secret.len()).any(|w| w == secret.as_slice()));
            if clean {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(
            clean,
            "a table file of {tables:?} still holds the erased subject's key or ciphertext"
        );
    }
    // The other subject's data is still there, and still reads.
    assert!(!backend.keys().all_keys().await.unwrap().is_empty());
    drop(backend);
    databases.finish().await;
}

/// A claim that starts while the subject's erasure is being recorded waits for it, then sees
/// it: no key is stored for the erased subject (the race the subject lock closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_racing_an_erasure_waits_for_it_and_stores_no_key() {
    let Some(databases) = open("a_claim_racing_an_erasure_waits_for_it_and_stores_no_key").await
    else {
        return;
    };
    let subject = PersonalKey::issue();
    // An erasure under way: it holds the subject's lock, its record not yet committed.
    let mut erasure = databases.keys.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(eventsourcery_subject_lock($1))")
        .bind(subject.as_uuid())
        .execute(&mut *erasure)
        .await
        .unwrap();
    let keys = databases.keys.clone();
    let claim = tokio::spawn(async move {
        keys.claim_keys(vec![eventsourcery::store::WrappedKey {
            subject,
            version: 1,
            wrapped: vec![7; 60],
            master_key_id: "master".into(),
        }])
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "the claim waits for the erasure");
    sqlx::query(
        "INSERT INTO eventsourcery_erasures
             (subject, erased_at_ns, reason, last_key_version, re_enrolled)
         VALUES ($1, 0, 'test', 0, FALSE)",
    )
    .bind(subject.as_uuid())
    .execute(&mut *erasure)
    .await
    .unwrap();
    erasure.commit().await.unwrap();
    assert_eq!(claim.await.unwrap().unwrap(), [false]);
    assert!(databases.keys.keys(&[subject]).await.unwrap().is_empty());
    databases.finish().await;
}

fn assert_corrupt<T: std::fmt::Debug>(
    result: Result<T, PersonalError>,
    table: &str,
    column: &str,
    value: &str,
) {
    let error = result.unwrap_err();
    match &error {
        PersonalError::Corrupt { table: t, reason } => {
            assert_eq!(*t, table);
            assert!(reason.contains(column), "{reason}");
        }
        other => panic!("expected a corrupt row in {table}, got {other}"),
    }
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(value), "the error shows the value: {shown}");
}

#[tokio::test]
async fn corrupt_rows_are_typed_errors_that_show_no_value() {
    let Some(databases) = open("corrupt_rows_are_typed_errors_that_show_no_value").await else {
        return;
    };
    let keys = &databases.keys;
    let (a, b) = (PersonalKey::issue(), PersonalKey::issue());
    sqlx::query("INSERT INTO eventsourcery_data_keys VALUES ($1, 98765432109, '\\x00', 'm', 0)")
        .bind(a.as_uuid())
        .execute(keys.pool())
        .await
        .unwrap();
    assert_corrupt(
        keys.keys(&[a]).await,
        "eventsourcery_data_keys",
        "version",
        "98765432109",
    );
    assert_corrupt(
        keys.all_keys().await,
        "eventsourcery_data_keys",
        "version",
        "98765432109",
    );
    sqlx::query(
        "ALTER TABLE eventsourcery_erasures
         DROP CONSTRAINT eventsourcery_erasures_last_key_version_check",
    )
    .execute(keys.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO eventsourcery_erasures VALUES ($1, 0, 'r', -4242, FALSE)")
        .bind(b.as_uuid())
        .execute(keys.pool())
        .await
        .unwrap();
    assert_corrupt(
        keys.erasures(&[b]).await,
        "eventsourcery_erasures",
        "last_key_version",
        "4242",
    );
    databases.finish().await;
}

/// The three stores in one database, opened at once: their tables and migration sequences
/// do not clash, and each is migrated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_three_stores_can_share_one_database() {
    let Some(database) = TestDatabase::create("the_three_stores_can_share_one_database").await
    else {
        return;
    };
    let pool = database.pool().await;
    let (events, keys, data) = tokio::join!(
        PostgresStore::from_pool(pool.clone()),
        PostgresKeyStore::from_pool(pool.clone()),
        PostgresPersonalStore::from_pool(pool.clone()),
    );
    let (events, keys, data) = (events.unwrap(), keys.unwrap(), data.unwrap());
    for table in [
        "eventsourcery_event_store_migrations",
        "eventsourcery_key_store_migrations",
        "eventsourcery_personal_store_migrations",
    ] {
        let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT version FROM {table} ORDER BY version"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        // Each migration applied once (the event store has more than one).
        assert_eq!(versions.first(), Some(&1), "{table}");
        let mut unique = versions.clone();
        unique.dedup();
        assert_eq!(unique, versions, "{table}");
    }
    keys.migrate().await.unwrap();
    data.migrate().await.unwrap();
    let backend = Backend::new(Arc::new(events), Arc::new(keys.clone()), Arc::new(data));
    personal::erasing_one_subject_keeps_events_loadable(backend).await;
    assert_eq!(keys.all_keys().await.unwrap().len(), 3);
    pool.close().await;
    database.finish().await;
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(databases) = open("a_newer_schema_is_refused").await else {
        return;
    };
    for (pool, table) in [
        (databases.keys.pool(), "eventsourcery_key_store_migrations"),
        (
            databases.data.pool(),
            "eventsourcery_personal_store_migrations",
        ),
    ] {
        let insert = format!(
            "INSERT INTO {table} (version, description, success, checksum, execution_time)
             VALUES (999, 'from a newer program', TRUE, '\\x00'::bytea, 0)"
        );
        sqlx::query(AssertSqlSafe(insert))
            .execute(pool)
            .await
            .unwrap();
    }
    let keys = PostgresKeyStore::from_pool(databases.keys.pool().clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            keys,
            PersonalError::SchemaTooNew {
                database: "PostgreSQL key store",
                found: 999,
                supported: 4
            }
        ),
        "{keys}"
    );
    let data = PostgresPersonalStore::from_pool(databases.data.pool().clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            data,
            PersonalError::SchemaTooNew {
                database: "PostgreSQL personal data store",
                ..
            }
        ),
        "{data}"
    );
    databases.finish().await;
}

/// `connect` takes a URL; `Debug` shows the host and database, never credentials.
#[tokio::test]
async fn connect_by_url_and_debug_shows_no_credentials() {
    let Some(database) =
        TestDatabase::create("connect_by_url_and_debug_shows_no_credentials").await
    else {
        return;
    };
    let url = database.url();
    let keys = PostgresKeyStore::connect(&url).await.unwrap();
    let data = PostgresPersonalStore::connect(&url).await.unwrap();
    assert!(keys.all_keys().await.unwrap().is_empty());
    let debug = format!("{keys:?} {data:?}");
    assert!(debug.contains(&database.name), "{debug}");
    assert!(
        !debug.contains("postgres://") && !debug.contains('@'),
        "{debug}"
    );
    keys.pool().close().await;
    data.pool().close().await;
    database.finish().await;
}
