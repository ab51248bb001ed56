//! The event store conformance suite and the bad-data cases against the SQLite store, each
//! test on a fresh database file in the temporary directory.
#![cfg(feature = "sqlite")]

use std::path::PathBuf;
use std::sync::Arc;

use eventsourcery::{EventStore, SqliteStore, StoreError};

mod conformance;
mod support;

use conformance::Harness;
use conformance::bad_data::{BoxFuture, Raw, RawEvent};

async fn open(test: &'static str) -> (SqliteStore, PathBuf) {
    let path = support::sqlite_file(test);
    let store = SqliteStore::open(&path).await.expect("open SQLite store");
    (store, path)
}

fn harness(store: &SqliteStore, path: PathBuf) -> Harness {
    let pool = store.pool().clone();
    Harness::new("sqlite", Arc::new(store.clone())).with_cleanup(async move {
        pool.close().await;
        support::remove_sqlite(&path);
    })
}

async fn setup(test: &'static str) -> Option<Harness> {
    let (store, path) = open(test).await;
    Some(harness(&store, path))
}

conformance::suite!(setup);

/// Raw SQL on the store's file.
struct SqliteRaw {
    store: SqliteStore,
    path: PathBuf,
}

impl Raw for SqliteRaw {
    fn insert_event(&self, row: RawEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO eventsourcery_events (position, event_id, stream_id, stream_version,
                     event_name, schema_version, payload, metadata, recorded_at_ns)
                 SELECT COALESCE(MAX(position), 0) + 1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, 0
                 FROM eventsourcery_events",
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
                "SELECT json_array(position, event_id, stream_id, stream_version, event_name,
                                   schema_version, payload, metadata, recorded_at_ns)
                 FROM eventsourcery_events ORDER BY position",
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
                 VALUES (999, 'from a newer program', TRUE, x'00', 0)",
            )
            .execute(self.store.pool())
            .await
            .expect("raw insert");
        })
    }

    fn reopen(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { SqliteStore::open(&self.path).await.map(drop) })
    }
}

async fn setup_raw(test: &'static str) -> Option<(Harness, Box<dyn Raw>)> {
    let (store, path) = open(test).await;
    let raw = SqliteRaw {
        store: store.clone(),
        path: path.clone(),
    };
    Some((harness(&store, path), Box::new(raw)))
}

conformance::bad_data::suite!(
    setup_raw;
    unknown_event_name_is_a_decode_error,
    payload_of_the_wrong_shape_is_a_decode_error,
    newer_event_schema_version_is_a_decode_error,
    corrupt_metadata_is_a_corrupt_row,
    out_of_range_schema_version_is_a_corrupt_row,
    malformed_json_payload_is_a_corrupt_row,
    malformed_event_id_is_a_corrupt_row,
    missing_events_table_is_a_database_error,
    newer_database_schema_is_refused,
);

#[tokio::test]
async fn in_memory_store_is_one_database_shared_by_clones() {
    let store = SqliteStore::in_memory().await.expect("in-memory store");
    let clone = store.clone();
    let a = conformance::stream("a");
    store
        .append(conformance::commit(&a, 0, conformance::events(2)))
        .await
        .expect("append");
    assert_eq!(clone.read_stream(&a, 0).await.expect("read").len(), 2);
    // The other connection-hungry path: a transaction and a read at once.
    let (appended, read) = tokio::join!(
        clone.append(conformance::commit(&a, 2, conformance::events(1))),
        store.read_all(0, 10),
    );
    appended.expect("append");
    assert!(read.expect("read").len() >= 2);
}

#[tokio::test]
async fn a_file_keeps_its_events_and_is_migrated_once() {
    let (store, path) = open("reopen").await;
    let a = conformance::stream("a");
    store
        .append(conformance::commit(&a, 0, conformance::events(2)))
        .await
        .expect("append");
    store.migrate().await.expect("migrating again is a no-op");
    store.pool().close().await;
    let reopened = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(reopened.read_stream(&a, 0).await.expect("read").len(), 2);
    let more = reopened
        .append(conformance::commit(&a, 2, conformance::events(1)))
        .await
        .expect("append");
    assert_eq!(more[0].position, 3);
    reopened.pool().close().await;
    support::remove_sqlite(&path);
}
