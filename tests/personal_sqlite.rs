//! The personal data suite on SQLite, each test with three files of its own in the temporary
//! directory (events, keys, personal data), plus what only SQL storage can show: no personal
//! value in any table or in the bytes of the files, nothing of an erased subject left, corrupt
//! rows as typed errors, and the migrations of each store kept apart.
#![cfg(feature = "sqlite")]

mod personal;
mod support;

use std::path::PathBuf;
use std::sync::Arc;

use eventsourcery::backend::{SqliteKeyStore, SqlitePersonalStore};
use eventsourcery::personal::PersonalError;
use eventsourcery::store::{KeyStore, PersonalStore};
use eventsourcery::{PersonalKey, SqliteStore};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqlitePool;

use personal::raw::{self, BoxFuture, Database, Raw};
use personal::{Backend, assert_no_plaintext};

/// The three stores of one test, each in a file of its own.
struct Files {
    events: SqliteStore,
    keys: SqliteKeyStore,
    data: SqlitePersonalStore,
    paths: [PathBuf; 3],
}

async fn open(test: &str) -> Files {
    let paths =
        ["events", "keys", "personal"].map(|db| support::sqlite_file(&format!("{test}-{db}")));
    Files {
        events: SqliteStore::open(&paths[0])
            .await
            .expect("open the event store"),
        keys: SqliteKeyStore::open(&paths[1])
            .await
            .expect("open the key store"),
        data: SqlitePersonalStore::open(&paths[2])
            .await
            .expect("open the personal data store"),
        paths,
    }
}

impl Files {
    fn backend(&self) -> Backend {
        Backend::new(
            Arc::new(self.events.clone()),
            Arc::new(self.keys.clone()),
            Arc::new(self.data.clone()),
        )
    }

    fn pool(&self, database: Database) -> &SqlitePool {
        match database {
            Database::Events => self.events.pool(),
            Database::Keys => self.keys.pool(),
            Database::Personal => self.data.pool(),
        }
    }

    /// Closes the pools (checkpointing the WAL into the file) and removes the files.
    fn close(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let pools = Database::ALL.map(|d| self.pool(d).clone());
        let paths = self.paths.clone();
        async move {
            for pool in pools {
                pool.close().await;
            }
            for path in &paths {
                support::remove_sqlite(path);
            }
        }
    }

    /// The bytes of a database's file and its WAL and shared-memory files, as they are now.
    fn file_bytes(&self, database: Database) -> Vec<(String, Vec<u8>)> {
        let path = &self.paths[database as usize];
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut file = path.as_os_str().to_owned();
                file.push(suffix);
                let name = PathBuf::from(&file).display().to_string();
                std::fs::read(&file).ok().map(|bytes| (name, bytes))
            })
            .collect()
    }
}

async fn setup(test: &'static str) -> Option<Backend> {
    let files = open(test).await;
    Some(files.backend().with_cleanup(files.close()))
}

personal_suite!(setup);

/// Every column of every table of `pool`, `sqlite_master` included, each value as its bytes.
async fn dump(pool: &SqlitePool) -> Vec<u8> {
    let mut tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(pool)
            .await
            .unwrap();
    tables.push("sqlite_master".into());
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
            .bind(&table)
            .fetch_all(pool)
            .await
            .unwrap();
        assert!(!columns.is_empty(), "{table} has columns");
        for column in columns {
            // Names from the schema of a test database, quoted.
            let select = format!("SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\"");
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(AssertSqlSafe(select))
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

impl Raw for Files {
    fn dump(&self, database: Database) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(dump(self.pool(database)))
    }

    fn rows_of(&self, table: &'static str, subject: PersonalKey) -> BoxFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move {
            let pool = self.pool(Database::of(table));
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap();
            let all: Vec<String> = columns
                .iter()
                .map(|c| format!("COALESCE(CAST(\"{c}\" AS BLOB), x'')"))
                .collect();
            let select = format!(
                "SELECT {} FROM {table} WHERE subject = ?1",
                all.join(" || x'0a' || ")
            );
            sqlx::query_scalar(AssertSqlSafe(select))
                .bind(subject.to_string())
                .fetch_all(pool)
                .await
                .unwrap()
        })
    }
}

/// The key guarantee, on the tables and on the bytes of the files on disk.
#[tokio::test]
async fn no_personal_value_in_any_table_or_file() {
    let files = open("no_personal_value_in_any_table_or_file").await;
    let backend = files.backend();
    raw::no_personal_value_in_any_table(&backend, &files).await;
    for database in Database::ALL {
        let scanned = files.file_bytes(database);
        assert!(!scanned.is_empty());
        for (name, bytes) in &scanned {
            assert_no_plaintext(name, bytes);
        }
    }
    // The events were in these files (in the WAL, or already checkpointed into the file).
    let events = files.file_bytes(Database::Events);
    assert!(
        events
            .iter()
            .any(|(_, b)| b.windows(20).any(|w| w == b"candidate_registered")),
        "the file scan saw the events"
    );
    drop(backend);
    let close = files.close();
    // Closing checkpoints the WAL into the database file: scan that too.
    for pool in Database::ALL.map(|d| files.pool(d).clone()) {
        pool.close().await;
    }
    for database in Database::ALL {
        for (name, bytes) in files.file_bytes(database) {
            assert_no_plaintext(&name, &bytes);
        }
    }
    close.await;
}

/// Erasure leaves no row of the subject, and none of its key or ciphertext bytes in any file
/// of the key and personal databases, their write-ahead logs included: the files are scanned
/// as the erasure left them, with no checkpoint of the test's own.
#[tokio::test]
async fn erasure_leaves_no_row_and_no_byte_of_the_subject() {
    let files = open("erasure_leaves_no_row_and_no_byte_of_the_subject").await;
    let backend = files.backend();
    let erased = raw::erasure_leaves_no_row_of_the_subject(&backend, &files).await;
    for database in [Database::Keys, Database::Personal] {
        let scanned = files.file_bytes(database);
        assert!(
            scanned.iter().any(|(name, _)| !name.ends_with("-wal")),
            "the file itself"
        );
        for (name, bytes) in scanned {
            let secrets = std::iter::once(&erased.wrapped_key).chain(&erased.ciphertexts);
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
                    "{name} still holds a key or ciphertext of the erased subject"
                );
            }
        }
    }
    assert!(backend.vault.is_erased(erased.subject).await.unwrap());
    files.close().await;
}

/// Writes a row that no store would write, on one connection with CHECK constraints off.
async fn raw_insert(pool: &SqlitePool, statement: &'static str, bind: &[&str]) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut query = sqlx::query(statement);
    for value in bind {
        query = query.bind(*value);
    }
    query.execute(&mut *conn).await.unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = OFF")
        .execute(&mut *conn)
        .await
        .unwrap();
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
    let files = open("corrupt_rows_are_typed_errors_that_show_no_value").await;
    let (a, b, c) = (
        PersonalKey::issue(),
        PersonalKey::issue(),
        PersonalKey::issue(),
    );
    let (a, b, c) = (a.to_string(), b.to_string(), c.to_string());
    raw_insert(
        files.keys.pool(),
        "INSERT INTO eventsourcery_data_keys VALUES (?1, -4242, x'00', 'm', 0)",
        &[&a],
    )
    .await;
    let subject = PersonalKey::from_uuid(a.parse().unwrap());
    assert_corrupt(
        files.keys.keys(&[subject]).await,
        "eventsourcery_data_keys",
        "version",
        "4242",
    );
    raw_insert(
        files.keys.pool(),
        "DELETE FROM eventsourcery_data_keys",
        &[],
    )
    .await;
    raw_insert(
        files.keys.pool(),
        "INSERT INTO eventsourcery_data_keys VALUES ('bad-subject-1234', 1, x'00', 'm', 0)",
        &[],
    )
    .await;
    assert_corrupt(
        files.keys.all_keys().await,
        "eventsourcery_data_keys",
        "subject",
        "bad-subject",
    );
    raw_insert(
        files.keys.pool(),
        "INSERT INTO eventsourcery_erasures VALUES (?1, 0, 'r', 98765432109, 0)",
        &[&b],
    )
    .await;
    let subject = PersonalKey::from_uuid(b.parse().unwrap());
    assert_corrupt(
        files.keys.erasures(&[subject]).await,
        "eventsourcery_erasures",
        "last_key_version",
        "98765432109",
    );
    raw_insert(
        files.data.pool(),
        "INSERT INTO eventsourcery_personal_data VALUES ('ref-7777', ?1, 'e.f', x'01', 0)",
        &[&c],
    )
    .await;
    let subject = PersonalKey::from_uuid(c.parse().unwrap());
    assert_corrupt(
        files.data.by_subject(subject).await,
        "eventsourcery_personal_data",
        "reference",
        "ref-7777",
    );
    raw_insert(
        files.data.pool(),
        "INSERT INTO eventsourcery_blind_index (hash, subject) VALUES (x'0102', 'zz-subject-zz')",
        &[],
    )
    .await;
    assert_corrupt(
        files.data.find(&[1, 2]).await,
        "eventsourcery_blind_index",
        "subject",
        "zz-subject",
    );
    files.close().await;
}

/// The three stores in one file: their tables and migration sequences do not clash.
#[tokio::test]
async fn the_three_stores_can_share_one_file() {
    let path = support::sqlite_file("shared");
    let events = SqliteStore::open(&path).await.unwrap();
    let keys = SqliteKeyStore::open(&path).await.unwrap();
    let data = SqlitePersonalStore::open(&path).await.unwrap();
    for table in [
        "eventsourcery_event_store_migrations",
        "eventsourcery_key_store_migrations",
        "eventsourcery_personal_store_migrations",
    ] {
        let versions: Vec<i64> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT version FROM {table}")))
                .fetch_all(events.pool())
                .await
                .unwrap();
        assert_eq!(versions.first(), Some(&1), "{table}");
    }
    keys.migrate().await.unwrap();
    data.migrate().await.unwrap();
    let backend = Backend::new(
        Arc::new(events.clone()),
        Arc::new(keys.clone()),
        Arc::new(data.clone()),
    );
    personal::erasing_one_subject_keeps_events_loadable(backend).await;
    for pool in [events.pool(), keys.pool(), data.pool()] {
        pool.close().await;
    }
    // Reopened, nothing is migrated again and the data is there.
    let keys = SqliteKeyStore::open(&path).await.unwrap();
    assert_eq!(
        keys.all_keys().await.unwrap().len(),
        3,
        "Ann's new key, Bob's, the index's"
    );
    keys.pool().close().await;
    support::remove_sqlite(&path);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let files = open("a_newer_schema_is_refused").await;
    for (pool, table) in [
        (files.keys.pool(), "eventsourcery_key_store_migrations"),
        (files.data.pool(), "eventsourcery_personal_store_migrations"),
    ] {
        let insert = format!(
            "INSERT INTO {table} (version, description, success, checksum, execution_time)
             VALUES (999, 'from a newer program', TRUE, x'00', 0)"
        );
        sqlx::query(AssertSqlSafe(insert))
            .execute(pool)
            .await
            .unwrap();
    }
    let keys = SqliteKeyStore::open(&files.paths[1]).await.unwrap_err();
    assert!(
        matches!(
            keys,
            PersonalError::SchemaTooNew {
                database: "SQLite key store",
                found: 999,
                supported: 2
            }
        ),
        "{keys}"
    );
    let data = SqlitePersonalStore::open(&files.paths[2])
        .await
        .unwrap_err();
    assert!(
        matches!(
            data,
            PersonalError::SchemaTooNew {
                database: "SQLite personal data store",
                ..
            }
        ),
        "{data}"
    );
    files.close().await;
}

/// The in-memory SQLite stores behave as the files do.
#[tokio::test]
async fn in_memory_stores_work_with_the_vault() {
    let keys = SqliteKeyStore::in_memory().await.unwrap();
    let data = SqlitePersonalStore::in_memory().await.unwrap();
    let backend = Backend::new(
        Arc::new(SqliteStore::in_memory().await.unwrap()),
        Arc::new(keys),
        Arc::new(data),
    );
    personal::export_and_lookup(backend).await;
}

/// A pool given to `from_pool` is migrated, and the store's `Debug` names its file only.
#[tokio::test]
async fn from_pool_migrates_and_debug_shows_the_file() {
    let path = support::sqlite_file("from_pool");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    let keys = SqliteKeyStore::from_pool(pool.clone()).await.unwrap();
    let data = SqlitePersonalStore::from_pool(pool.clone()).await.unwrap();
    assert!(data.get(&[uuid::Uuid::now_v7()]).await.unwrap().is_empty());
    assert!(keys.all_keys().await.unwrap().is_empty());
    let debug = format!("{keys:?} {data:?}");
    assert!(debug.contains("SqliteKeyStore") && debug.contains("SqlitePersonalStore"));
    pool.close().await;
    support::remove_sqlite(&path);
}
