//! `#[derive(Aggregate)]`: dispatch to `Apply`, versions, raise and save, snapshots, bad input.

use std::sync::Arc;

use eventsourcery::event::{EventError, Metadata};
use eventsourcery::store::{Commit, NewEvent, Snapshot, StreamAppend};
use eventsourcery::value::StreamId;
use eventsourcery::{
    Aggregate, AggregateRoot, Apply, DomainEvent, EventStore, Id, MemoryStore, Repository,
    SerializableValue, StoreError,
};
use serde_json::json;
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct CounterId(Uuid);

#[derive(DomainEvent, Debug)]
struct Incremented {
    by: i64,
}

#[derive(DomainEvent, Debug)]
struct Reset;

#[derive(DomainEvent, Debug)]
struct Unrelated;

#[derive(Aggregate, Default, Debug, serde::Serialize, serde::Deserialize)]
#[aggregate(id = CounterId, events(Incremented, Reset), snapshot(every = 5, version = 2))]
struct Counter {
    value: i64,
    resets: u32,
}

impl Apply<Incremented> for Counter {
    fn apply(&mut self, event: &Incremented) {
        self.value += event.by;
    }
}

impl Apply<Reset> for Counter {
    fn apply(&mut self, _: &Reset) {
        self.value = 0;
        self.resets += 1;
    }
}

#[derive(Aggregate, Default)]
#[aggregate(id = CounterId, name = "tally", events(Incremented))]
struct Tally {
    value: i64,
}

impl Apply<Incremented> for Tally {
    fn apply(&mut self, event: &Incremented) {
        self.value += event.by;
    }
}

fn setup() -> (Arc<MemoryStore>, Repository<Counter>) {
    let store = Arc::new(MemoryStore::new());
    let repository = Repository::new(store.clone() as Arc<dyn EventStore>);
    (store, repository)
}

#[test]
fn names_and_stream_ids() {
    assert_eq!(Counter::NAME, "counter");
    assert_eq!(Tally::NAME, "tally");
    let id = CounterId(Uuid::nil());
    let root = AggregateRoot::<Tally>::new(id);
    assert_eq!(
        root.stream_id().as_str(),
        "tally-00000000-0000-0000-0000-000000000000"
    );
    assert!(Counter::handles("incremented") && Counter::handles("reset"));
    assert!(!Counter::handles("unrelated"));
}

#[test]
fn raise_applies_at_once_and_records_pending_events() {
    let mut root = AggregateRoot::<Counter>::new(CounterId::generate());
    assert!(root.is_new());
    root.raise(Incremented { by: 5 });
    root.raise(Reset);
    root.raise(Incremented { by: 2 });
    assert_eq!(root.value, 2);
    assert_eq!(root.resets, 1);
    assert_eq!(root.version(), 0);
    assert_eq!(root.next_version(), 3);
    assert_eq!(
        root.pending_names(),
        vec!["incremented", "reset", "incremented"]
    );
}

#[tokio::test]
async fn save_then_load_dispatches_each_event_to_its_apply() {
    let (store, repository) = setup();
    let id = CounterId::generate();
    let mut root = repository.load(&id).await.unwrap();
    root.raise(Incremented { by: 3 });
    root.raise(Reset);
    root.raise(Incremented { by: 4 });
    repository.save(&mut root).await.unwrap();
    assert_eq!(root.version(), 3);
    assert_eq!(root.pending_len(), 0);

    let loaded = repository.load(&id).await.unwrap();
    assert_eq!((loaded.value, loaded.resets, loaded.version()), (4, 1, 3));
    let events = store.read_stream(loaded.stream_id(), 0).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(events[1].event_name, "reset");
}

#[tokio::test]
async fn saving_a_stale_aggregate_is_a_conflict_and_changes_nothing() {
    let (store, repository) = setup();
    let id = CounterId::generate();
    let mut first = repository.load(&id).await.unwrap();
    let mut second = repository.load(&id).await.unwrap();
    first.raise(Incremented { by: 1 });
    repository.save(&mut first).await.unwrap();
    second.raise(Incremented { by: 100 });
    let error = repository.save(&mut second).await.unwrap_err();
    assert!(
        matches!(
            &error,
            StoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 1);
    assert_eq!(repository.load(&id).await.unwrap().value, 1);
}

#[tokio::test]
async fn snapshots_are_taken_and_used() {
    let (store, repository) = setup();
    let id = CounterId::generate();
    let mut root = repository.load(&id).await.unwrap();
    for _ in 0..7 {
        root.raise(Incremented { by: 1 });
    }
    repository.save(&mut root).await.unwrap();
    // The first load replays 7 events (>= 5) and leaves a snapshot at version 7.
    assert_eq!(repository.load(&id).await.unwrap().value, 7);
    let snapshot = store
        .load_snapshot(root.stream_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((snapshot.stream_version, snapshot.snapshot_version), (7, 2));
    assert_eq!(snapshot.state, json!({ "value": 7, "resets": 0 }));

    // Tamper with the snapshot to prove it is used: loading starts from it.
    store
        .save_snapshot(Snapshot {
            state: json!({ "value": 70, "resets": 0 }),
            ..snapshot.clone()
        })
        .await
        .unwrap();
    let mut root = repository.load(&id).await.unwrap();
    assert_eq!((root.value, root.version()), (70, 7));
    root.raise(Incremented { by: 1 });
    repository.save(&mut root).await.unwrap();
    assert_eq!(repository.load(&id).await.unwrap().value, 71);
}

#[tokio::test]
async fn snapshots_of_another_version_or_shape_are_ignored() {
    let (store, repository) = setup();
    let id = CounterId::generate();
    let mut root = repository.load(&id).await.unwrap();
    root.raise(Incremented { by: 2 });
    repository.save(&mut root).await.unwrap();
    let stream_id = root.stream_id().clone();
    for (snapshot_version, state) in [
        (1, json!({ "value": 99, "resets": 0 })),
        (2, json!({ "old": true })),
    ] {
        store
            .save_snapshot(Snapshot {
                stream_id: stream_id.clone(),
                stream_version: 1,
                snapshot_version,
                state,
            })
            .await
            .unwrap();
        assert_eq!(repository.load(&id).await.unwrap().value, 2);
    }
}

async fn append_raw(
    store: &MemoryStore,
    stream: &StreamId,
    name: &str,
    version: u32,
    payload: serde_json::Value,
) {
    store
        .append(Commit {
            streams: vec![StreamAppend {
                stream_id: stream.clone(),
                expected_version: store.read_stream(stream, 0).await.unwrap().len() as u64,
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_name: name.into(),
                    schema_version: version,
                    payload,
                    metadata: Metadata::default(),
                }],
            }],
            command: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_stored_events_are_typed_errors_naming_stream_and_position() {
    type Case = (
        &'static str,
        u32,
        serde_json::Value,
        fn(&EventError) -> bool,
    );
    let cases: Vec<Case> = vec![
        ("no_such_event", 1, json!({}), |e| {
            matches!(e, EventError::UnknownEvent { .. })
        }),
        ("incremented", 1, json!({ "by": "many" }), |e| {
            matches!(e, EventError::Malformed { .. })
        }),
        ("incremented", 9, json!({ "by": 1 }), |e| {
            matches!(e, EventError::NewerVersion { stored: 9, .. })
        }),
        ("unrelated", 1, json!({}), |e| {
            matches!(e, EventError::NotHandled { .. })
        }),
    ];
    for (name, version, payload, expected) in cases {
        let (store, repository) = setup();
        let id = CounterId::generate();
        let stream = StreamId::for_aggregate(Counter::NAME, &id);
        append_raw(&store, &stream, "incremented", 1, json!({ "by": 1 })).await;
        append_raw(&store, &stream, name, version, payload).await;
        let error = repository.load(&id).await.unwrap_err();
        match &error {
            StoreError::Decode {
                stream: s,
                version: 2,
                position: 2,
                source,
            } => {
                assert_eq!(s, &stream);
                assert!(expected(source), "{name}: {error}");
            }
            other => panic!("{name}: expected a decode error, got {other}"),
        }
        assert!(error.to_string().contains(stream.as_str()), "{error}");
        // Nothing stored changed.
        assert_eq!(store.read_all(0, 10).await.unwrap().len(), 2);
    }
    let _ = Unrelated;
}
