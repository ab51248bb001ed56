//! Bad data in a SQL store: rows written behind the store's back with raw SQL give typed
//! errors that say where they are, never a panic, and reading them changes nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use eventsourcery::event::EventError;
use eventsourcery::value::StreamId;
use eventsourcery::{Id, Repository, StoreError};

use super::Harness;
use super::domain::{Account, AccountId, Deposited};

/// A boxed future, for the object-safe [`Raw`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An events row as raw SQL writes it: every column as given, nothing checked.
#[derive(Debug, Clone)]
pub(crate) struct RawEvent {
    pub(crate) event_id: String,
    pub(crate) stream_id: String,
    pub(crate) stream_version: i64,
    pub(crate) event_name: String,
    pub(crate) schema_version: i64,
    pub(crate) payload: String,
    pub(crate) metadata: String,
}

/// Raw SQL access to a backend's database, behind the store's back.
pub(crate) trait Raw: Send + Sync {
    /// Inserts `row` at the next global position.
    fn insert_event(&self, row: RawEvent) -> BoxFuture<'_, ()>;
    /// Every events row as text, in position order, to check that nothing changed.
    fn dump(&self) -> BoxFuture<'_, Vec<String>>;
    /// Drops the events table.
    fn drop_events_table(&self) -> BoxFuture<'_, ()>;
    /// Records a schema migration newer than this program's.
    fn add_future_migration(&self) -> BoxFuture<'_, ()>;
    /// Opens the store again on the same database.
    fn reopen(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// One `#[tokio::test]` per bad-data case, each with a fresh store and its raw access.
#[allow(unused_macros)] // not by the in-memory store's tests
macro_rules! suite {
    ($setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some((harness, raw)) = $setup(stringify!($case)).await {
                    $crate::conformance::bad_data::$case(&harness, &*raw).await;
                    harness.finish().await;
                }
            }
        )*
    };
}

#[allow(unused_imports)]
pub(crate) use suite;

/// An account with two deposits, then `bad` written by raw SQL as its third event.
async fn account_with_bad_third_event(
    h: &Harness,
    raw: &dyn Raw,
    bad: impl FnOnce(&mut RawEvent),
) -> (Repository<Account>, AccountId, StreamId) {
    let accounts = Repository::<Account>::new(Arc::clone(&h.store));
    let id = AccountId::generate();
    let mut account = accounts.load(&id).await.expect("load");
    account.raise(Deposited { amount: 1 });
    account.raise(Deposited { amount: 2 });
    accounts.save(&mut account).await.expect("save");
    let stream = account.stream_id().clone();
    let mut row = RawEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        stream_id: stream.to_string(),
        stream_version: 3,
        event_name: "conformance_deposited".into(),
        schema_version: 1,
        payload: r#"{"amount": 3}"#.into(),
        metadata: "{}".into(),
    };
    bad(&mut row);
    raw.insert_event(row).await;
    (accounts, id, stream)
}

/// Loads the account, expecting a decode error at version 3, position 3; checks nothing
/// changed.
async fn expect_decode_error(
    h: &Harness,
    raw: &dyn Raw,
    bad: impl FnOnce(&mut RawEvent),
    check: impl FnOnce(&EventError) -> bool,
) {
    let (accounts, id, stream) = account_with_bad_third_event(h, raw, bad).await;
    let before = raw.dump().await;
    match accounts.load(&id).await {
        Err(error @ StoreError::Decode { .. }) => {
            println!("[{}] {error}", h.backend);
            let StoreError::Decode {
                stream: s,
                version,
                position,
                source,
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(
                (s, *version, *position),
                (&stream, 3, 3),
                "names where: {error}"
            );
            assert!(check(source), "unexpected cause: {error}");
            assert!(
                error.to_string().contains(stream.as_str()),
                "the message names the stream"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(raw.dump().await, before, "loading changed nothing");
    assert_eq!(
        h.store.read_all(0, 10).await.expect("read_all").len(),
        3,
        "the store still reads"
    );
}

/// Loads the account and reads the log, expecting a corrupt-row error naming the stream
/// and position 3; checks nothing changed. A column that a load does not read (the metadata,
/// the event id) fails the read of the log only: the load still gives the whole state.
async fn expect_corrupt_row(
    h: &Harness,
    raw: &dyn Raw,
    bad: impl FnOnce(&mut RawEvent),
    column: &str,
) {
    let (accounts, id, stream) = account_with_bad_third_event(h, raw, bad).await;
    let before = raw.dump().await;
    let loaded = accounts.load(&id).await;
    let read = h.store.read_all(0, 10).await.map(|_| ());
    let mut results = vec![read];
    match ["metadata", "event_id"].contains(&column) {
        true => assert_eq!(loaded.expect("the load reads no `{column}`").balance, 6),
        false => results.push(loaded.map(|_| ())),
    }
    for result in results {
        match result {
            Err(StoreError::Corrupt {
                table,
                location,
                reason,
            }) => {
                println!(
                    "[{}] corrupt row in `{table}` at {location}: {reason}",
                    h.backend
                );
                assert_eq!(table, "eventsourcery_events");
                assert!(
                    location.contains(stream.as_str()) && location.contains("position 3"),
                    "{location}"
                );
                assert!(
                    reason.contains(column),
                    "names the column `{column}`: {reason}"
                );
            }
            other => panic!("expected a corrupt row error, got {other:?}"),
        }
    }
    assert_eq!(raw.dump().await, before, "reading changed nothing");
    assert_eq!(
        h.store
            .read_all(0, 2)
            .await
            .expect("rows before it still read")
            .len(),
        2
    );
}

pub(crate) async fn unknown_event_name_is_a_decode_error(h: &Harness, raw: &dyn Raw) {
    expect_decode_error(
        h,
        raw,
        |row| row.event_name = "no_such_event".into(),
        |e| matches!(e, EventError::UnknownEvent { name } if name == "no_such_event"),
    )
    .await;
}

pub(crate) async fn payload_of_the_wrong_shape_is_a_decode_error(h: &Harness, raw: &dyn Raw) {
    expect_decode_error(
        h,
        raw,
        |row| row.payload = r#"{"amount": "lots"}"#.into(),
        |e| matches!(e, EventError::Malformed { field, .. } if field == "amount"),
    )
    .await;
}

pub(crate) async fn newer_event_schema_version_is_a_decode_error(h: &Harness, raw: &dyn Raw) {
    expect_decode_error(
        h,
        raw,
        |row| row.schema_version = 9,
        |e| {
            matches!(
                e,
                EventError::NewerVersion {
                    stored: 9,
                    supported: 1,
                    ..
                }
            )
        },
    )
    .await;
}

pub(crate) async fn corrupt_metadata_is_a_corrupt_row(h: &Harness, raw: &dyn Raw) {
    expect_corrupt_row(
        h,
        raw,
        |row| row.metadata = r#"{"causation_id": 42}"#.into(),
        "metadata",
    )
    .await;
}

pub(crate) async fn out_of_range_schema_version_is_a_corrupt_row(h: &Harness, raw: &dyn Raw) {
    expect_corrupt_row(h, raw, |row| row.schema_version = -1, "schema_version").await;
}

/// SQLite only: PostgreSQL's `jsonb` column refuses malformed JSON.
pub(crate) async fn malformed_json_payload_is_a_corrupt_row(h: &Harness, raw: &dyn Raw) {
    expect_corrupt_row(
        h,
        raw,
        |row| row.payload = r#"{"amount": "#.into(),
        "payload",
    )
    .await;
}

/// SQLite only: PostgreSQL's `uuid` column refuses a malformed id.
pub(crate) async fn malformed_event_id_is_a_corrupt_row(h: &Harness, raw: &dyn Raw) {
    expect_corrupt_row(h, raw, |row| row.event_id = "not-a-uuid".into(), "event_id").await;
}

pub(crate) async fn missing_events_table_is_a_database_error(h: &Harness, raw: &dyn Raw) {
    let accounts = Repository::<Account>::new(Arc::clone(&h.store));
    let id = AccountId::generate();
    raw.drop_events_table().await;
    match accounts.load(&id).await {
        Err(
            error @ StoreError::Database {
                operation: "read_stream",
                ..
            },
        ) => println!("[{}] {error}", h.backend),
        other => panic!("expected a database error, got {other:?}"),
    }
    let mut account = accounts
        .load(&id)
        .await
        .unwrap_or_else(|_| eventsourcery::AggregateRoot::new(id.clone()));
    account.raise(Deposited { amount: 1 });
    assert!(matches!(
        accounts.save(&mut account).await,
        Err(StoreError::Database {
            operation: "append",
            ..
        })
    ));
    assert!(matches!(
        h.store.read_all(0, 1).await,
        Err(StoreError::Database {
            operation: "read_all",
            ..
        })
    ));
}

pub(crate) async fn newer_database_schema_is_refused(h: &Harness, raw: &dyn Raw) {
    let accounts = Repository::<Account>::new(Arc::clone(&h.store));
    let mut account = accounts.load(&AccountId::generate()).await.expect("load");
    account.raise(Deposited { amount: 1 });
    accounts.save(&mut account).await.expect("save");
    raw.add_future_migration().await;
    let before = raw.dump().await;
    match raw.reopen().await {
        Err(
            error @ StoreError::SchemaTooNew {
                found: 999,
                supported,
                ..
            },
        ) => {
            assert!((1..999).contains(&supported), "{error}");
            println!("[{}] {error}", h.backend);
        }
        other => panic!("expected the schema to be too new, got {other:?}"),
    }
    assert_eq!(raw.dump().await, before, "refusing changed nothing");
}
