//! Single-writer behaviour: appends, reads, conflicts, the command log, snapshots.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eventsourcery::event::Metadata;
use eventsourcery::store::{
    CommandOutcome, CommandRecord, Commit, RecordedEvent, Snapshot, StreamAppend,
};
use eventsourcery::{EventStore, Id, Repository, StoreError};
use serde_json::json;
use uuid::Uuid;

use super::domain::{Account, AccountId, Deposited};
use super::{Harness, commit, event, events, stream};

/// Every event in the store, in position order.
pub(crate) async fn everything(h: &Harness) -> Vec<RecordedEvent> {
    let store = &*h.store;
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RecordedEvent| e.position);
        let page = store.read_all(after, 1000).await.expect("read_all");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Every command log entry.
pub(crate) async fn all_commands(store: &dyn EventStore) -> Vec<CommandRecord> {
    store
        .read_commands(0, usize::MAX)
        .await
        .expect("read_commands")
}

pub(crate) fn command(outcome: CommandOutcome) -> CommandRecord {
    let id = Uuid::now_v7();
    CommandRecord {
        command_id: id,
        name: "conformance_command".into(),
        payload: json!({ "to": "someone", "amount": 3, "nested": { "list": [1, 2.5, null, true] } }),
        metadata: Metadata::for_command(id, Uuid::now_v7(), Uuid::now_v7()),
        outcome,
        recorded_at: SystemTime::now(),
    }
}

/// `read_stream_page` gives a stream in pages of at most `limit`, in version order.
pub(crate) async fn read_stream_pages_in_version_order(h: &Harness) {
    let store = &*h.store;
    let (a, b) = (stream("a"), stream("b"));
    for (s, version, n) in [(&a, 0, 4), (&b, 0, 2), (&a, 4, 3)] {
        store
            .append(commit(s, version, events(n)))
            .await
            .expect("append");
    }
    let versions = |events: Vec<eventsourcery::store::RecordedEvent>| {
        events
            .iter()
            .map(|e| {
                assert_eq!(e.stream_id, a);
                e.stream_version
            })
            .collect::<Vec<_>>()
    };
    let page = |after, limit| store.read_stream_page(&a, after, limit);
    assert_eq!(versions(page(0, 3).await.unwrap()), [1, 2, 3]);
    assert_eq!(versions(page(3, 3).await.unwrap()), [4, 5, 6]);
    assert_eq!(versions(page(6, 3).await.unwrap()), [7]);
    assert_eq!(versions(page(7, 3).await.unwrap()), Vec::<u64>::new());
    assert_eq!(versions(page(0, 0).await.unwrap()), Vec::<u64>::new());
    assert_eq!(
        page(2, usize::MAX).await.unwrap(),
        store.read_stream(&a, 2).await.unwrap()
    );
    // A load's page is the same page, with what a load needs of each event.
    for (after, limit) in [(0, 3), (3, 3), (6, 3), (7, 3), (0, 0), (2, usize::MAX)] {
        let full: Vec<eventsourcery::store::StreamEvent> = page(after, limit)
            .await
            .unwrap()
            .into_iter()
            .map(Into::into)
            .collect();
        assert_eq!(
            store.load_stream_page(&a, after, limit).await.unwrap(),
            full,
            "after {after}, limit {limit}"
        );
    }
}

/// A load decodes payloads of the current schema straight from the store's text, and upcasts
/// older ones, in the order they were stored.
pub(crate) async fn repository_loads_current_and_upcast_payloads(h: &Harness) {
    let id = AccountId::generate();
    let accounts = Repository::<Account>::new(Arc::clone(&h.store));
    let stream = accounts.load(&id).await.unwrap().stream_id().clone();
    let mut old = event("conformance_labelled", json!({ "name": "old" }));
    old.schema_version = 1;
    let mut current = event(
        "conformance_labelled",
        json!({ "label": "new", "unknown": { "ignored": [1, 2] } }),
    );
    current.schema_version = 2;
    let written = vec![
        event("conformance_deposited", json!({ "amount": 5 })),
        current,
        old,
        event("conformance_deposited", json!({ "amount": 4 })),
    ];
    h.store
        .append(commit(&stream, 0, written))
        .await
        .expect("append");
    let loaded = accounts.load(&id).await.expect("load");
    assert_eq!((loaded.balance, loaded.deposits), (9, 2));
    assert_eq!(
        loaded.label, "old",
        "the version-1 payload, upcast, came last"
    );
    assert_eq!(loaded.version(), 4);
}

pub(crate) async fn append_then_read_stream(h: &Harness) {
    let store = &*h.store;
    let a = stream("a");
    let mut written = events(3);
    written[1].metadata = Metadata::for_command(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    written[2].schema_version = 7;
    written[2].payload =
        json!({ "text": "naïve ☃ \"quoted\"", "big": u64::MAX, "neg": i64::MIN, "f": 0.1 });
    let recorded = store
        .append(commit(&a, 0, written.clone()))
        .await
        .expect("append");

    assert_eq!(recorded.len(), 3);
    for (n, (r, w)) in recorded.iter().zip(&written).enumerate() {
        assert_eq!(r.position, n as u64 + 1, "positions start at 1");
        assert_eq!(r.stream_version, n as u64 + 1, "versions start at 1");
        assert_eq!(r.stream_id, a);
        assert_eq!(r.event_id, w.event_id);
        assert_eq!(r.event_name, w.event_name);
        assert_eq!(r.schema_version, w.schema_version);
        assert_eq!(r.payload, w.payload);
        assert_eq!(r.metadata, w.metadata);
        assert_eq!(
            r.recorded_at, recorded[0].recorded_at,
            "one time per commit"
        );
    }
    assert_eq!(
        store.read_stream(&a, 0).await.expect("read"),
        recorded,
        "read back exactly"
    );
    assert_eq!(store.read_stream(&a, 1).await.expect("read"), recorded[1..]);
    let loaded = store.load_stream_page(&a, 0, 10).await.expect("load");
    let expected: Vec<eventsourcery::store::StreamEvent> =
        recorded.iter().cloned().map(Into::into).collect();
    assert_eq!(loaded, expected, "a load's page reads back exactly");
    assert!(store.read_stream(&a, 3).await.expect("read").is_empty());
    assert!(
        store
            .read_stream(&a, u64::MAX)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_stream(&stream("unknown"), 0)
            .await
            .expect("read")
            .is_empty()
    );
}

pub(crate) async fn append_continues_at_the_expected_version(h: &Harness) {
    let store = &*h.store;
    let a = stream("a");
    store
        .append(commit(&a, 0, events(2)))
        .await
        .expect("first append");
    let second = store
        .append(commit(&a, 2, events(1)))
        .await
        .expect("second append");
    assert_eq!(second[0].stream_version, 3);
    assert_eq!(second[0].position, 3);
    let versions: Vec<u64> = store
        .read_stream(&a, 0)
        .await
        .expect("read")
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}

pub(crate) async fn read_all_pages_in_position_order(h: &Harness) {
    let store = &*h.store;
    let (a, b) = (stream("a"), stream("b"));
    let mut expected = Vec::new();
    expected.extend(
        store
            .append(commit(&a, 0, events(2)))
            .await
            .expect("append"),
    );
    expected.extend(
        store
            .append(commit(&b, 0, events(1)))
            .await
            .expect("append"),
    );
    expected.extend(
        store
            .append(commit(&a, 2, events(2)))
            .await
            .expect("append"),
    );

    let positions: Vec<u64> = expected.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    assert_eq!(store.read_all(0, 2).await.expect("page 1"), expected[..2]);
    assert_eq!(store.read_all(2, 2).await.expect("page 2"), expected[2..4]);
    assert_eq!(store.read_all(4, 2).await.expect("page 3"), expected[4..]);
    assert!(store.read_all(5, 2).await.expect("past the end").is_empty());
    assert!(store.read_all(0, 0).await.expect("limit 0").is_empty());
    assert_eq!(
        store.read_all(0, usize::MAX).await.expect("no limit"),
        expected
    );
    assert!(
        store
            .read_all(u64::MAX, 10)
            .await
            .expect("far past the end")
            .is_empty()
    );
}

pub(crate) async fn stale_expected_version_conflicts_and_changes_nothing(h: &Harness) {
    let store = &*h.store;
    let a = stream("a");
    store
        .append(commit(&a, 0, events(2)))
        .await
        .expect("append");
    let before = everything(h).await;
    let commands_before = all_commands(store).await;

    for expected in [0, 1, 3, 9] {
        let mut stale = commit(&a, expected, events(2));
        stale.command = Some(command(CommandOutcome::Succeeded { events: 2 }));
        match store.append(stale).await {
            Err(StoreError::Conflict {
                stream,
                expected: e,
                actual,
            }) => {
                assert_eq!((stream, e, actual), (a.clone(), expected, 2));
            }
            other => panic!("expected a conflict at expected version {expected}, got {other:?}"),
        }
    }
    // A new stream expects version 0.
    let fresh = stream("fresh");
    match store.append(commit(&fresh, 1, events(1))).await {
        Err(StoreError::Conflict {
            expected: 1,
            actual: 0,
            ..
        }) => {}
        other => panic!("expected a conflict on a new stream, got {other:?}"),
    }
    // An append with no events still checks the version.
    assert!(
        store
            .append(commit(&a, 1, Vec::new()))
            .await
            .is_err_and(|e| e.is_conflict())
    );
    assert!(
        store
            .append(commit(&a, 2, Vec::new()))
            .await
            .expect("empty append")
            .is_empty()
    );

    assert_eq!(everything(h).await, before, "a conflict changes no event");
    assert_eq!(
        all_commands(store).await,
        commands_before,
        "a conflict logs no command"
    );
    let next = store
        .append(commit(&a, 2, events(1)))
        .await
        .expect("append after conflicts");
    assert_eq!(
        (next[0].position, next[0].stream_version),
        (3, 3),
        "no position was used up"
    );
}

pub(crate) async fn duplicate_event_id_is_rejected_and_changes_nothing(h: &Harness) {
    let store = &*h.store;
    let (a, b) = (stream("a"), stream("b"));
    let stored = store
        .append(commit(&a, 0, events(1)))
        .await
        .expect("append");
    let before = everything(h).await;

    let mut again = event("numbered", json!({}));
    again.event_id = stored[0].event_id;
    let mut reused = commit(&b, 0, vec![event("numbered", json!({})), again]);
    reused.command = Some(command(CommandOutcome::Succeeded { events: 2 }));
    match store.append(reused).await {
        Err(StoreError::InvalidAppend(message)) => {
            assert!(
                message.contains(&stored[0].event_id.to_string()),
                "names the id: {message}"
            )
        }
        other => panic!("expected a duplicate event id to be rejected, got {other:?}"),
    }
    let twice = event("numbered", json!({}));
    let in_one_commit = commit(&b, 0, vec![twice.clone(), twice]);
    assert!(matches!(
        store.append(in_one_commit).await,
        Err(StoreError::InvalidAppend(_))
    ));

    assert_eq!(everything(h).await, before);
    assert!(all_commands(store).await.is_empty());
    assert!(store.read_stream(&b, 0).await.expect("read").is_empty());
}

pub(crate) async fn multi_stream_commit_is_all_or_nothing(h: &Harness) {
    let store = &*h.store;
    let (a, b, c) = (stream("a"), stream("b"), stream("c"));
    store
        .append(commit(&b, 0, events(1)))
        .await
        .expect("append");
    let before = everything(h).await;

    let both = |b_expected| Commit {
        streams: vec![
            StreamAppend {
                stream_id: a.clone(),
                expected_version: 0,
                events: events(2),
            },
            StreamAppend {
                stream_id: b.clone(),
                expected_version: b_expected,
                events: events(1),
            },
        ],
        command: Some(command(CommandOutcome::Succeeded { events: 3 })),
    };
    match store.append(both(0)).await {
        Err(StoreError::Conflict {
            stream,
            expected: 0,
            actual: 1,
        }) => assert_eq!(stream, b),
        other => panic!("expected a conflict on the second stream, got {other:?}"),
    }
    assert_eq!(
        everything(h).await,
        before,
        "the first stream was not appended either"
    );
    assert!(all_commands(store).await.is_empty());

    let recorded = store.append(both(1)).await.expect("atomic append");
    let summary: Vec<(u64, &str, u64)> = recorded
        .iter()
        .map(|e| (e.position, e.stream_id.as_str(), e.stream_version))
        .collect();
    assert_eq!(
        summary,
        [(2, a.as_str(), 1), (3, a.as_str(), 2), (4, b.as_str(), 2)]
    );
    assert_eq!(all_commands(store).await.len(), 1);

    // A second commit over three streams, one of them new.
    let three = Commit {
        streams: vec![
            StreamAppend {
                stream_id: c.clone(),
                expected_version: 0,
                events: events(1),
            },
            StreamAppend {
                stream_id: a.clone(),
                expected_version: 2,
                events: events(1),
            },
            StreamAppend {
                stream_id: b.clone(),
                expected_version: 2,
                events: events(1),
            },
        ],
        command: None,
    };
    let recorded = store.append(three).await.expect("three streams");
    assert_eq!(
        recorded.iter().map(|e| e.position).collect::<Vec<_>>(),
        [5, 6, 7]
    );
}

pub(crate) async fn command_only_commit_logs_the_command(h: &Harness) {
    let store = &*h.store;
    let failed = command(CommandOutcome::Failed {
        error: "insufficient funds: ☹".into(),
    });
    let recorded = store
        .append(Commit {
            streams: Vec::new(),
            command: Some(failed.clone()),
        })
        .await
        .expect("command-only commit");
    assert!(recorded.is_empty());
    assert!(everything(h).await.is_empty(), "no event");
    assert_eq!(all_commands(store).await, [failed]);
    assert!(
        store
            .append(Commit::default())
            .await
            .expect("empty commit")
            .is_empty()
    );
    assert_eq!(all_commands(store).await.len(), 1);
}

pub(crate) async fn command_log_keeps_every_outcome_in_order(h: &Harness) {
    let store = &*h.store;
    let a = stream("a");
    let mut logged = Vec::new();
    let outcomes = [
        CommandOutcome::Succeeded { events: 1 },
        CommandOutcome::Failed { error: "no".into() },
        CommandOutcome::Conflicted { attempts: 10 },
        CommandOutcome::Succeeded { events: 1 },
    ];
    let mut version = 0;
    for outcome in outcomes {
        let mut record = command(outcome.clone());
        // An old, fixed time, to check times are stored exactly.
        record.recorded_at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let commit = match outcome {
            CommandOutcome::Succeeded { .. } => {
                version += 1;
                let mut c = super::commit(&a, version - 1, events(1));
                c.command = Some(record.clone());
                c
            }
            _ => Commit {
                streams: Vec::new(),
                command: Some(record.clone()),
            },
        };
        store.append(commit).await.expect("append");
        logged.push(record);
    }
    assert_eq!(all_commands(store).await, logged);
    assert_eq!(store.read_commands(1, 2).await.expect("page"), logged[1..3]);
    assert_eq!(
        store.read_commands(3, 10).await.expect("last page"),
        logged[3..]
    );
    assert!(
        store
            .read_commands(4, 10)
            .await
            .expect("past the end")
            .is_empty()
    );
    assert!(store.read_commands(0, 0).await.expect("limit 0").is_empty());
    assert!(
        store
            .read_commands(u64::MAX, 1)
            .await
            .expect("far past the end")
            .is_empty()
    );
}

pub(crate) async fn invalid_appends_are_rejected(h: &Harness) {
    let store = &*h.store;
    let a = stream("a");
    let empty_id = commit(&eventsourcery::value::StreamId::new(""), 0, events(1));
    assert!(matches!(
        store.append(empty_id).await,
        Err(StoreError::InvalidAppend(_))
    ));
    let twice = Commit {
        streams: vec![
            StreamAppend {
                stream_id: a.clone(),
                expected_version: 0,
                events: events(1),
            },
            StreamAppend {
                stream_id: a.clone(),
                expected_version: 1,
                events: events(1),
            },
        ],
        command: None,
    };
    assert!(matches!(
        store.append(twice).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(everything(h).await.is_empty());
}

pub(crate) async fn snapshots_are_replaced_only_by_newer_ones(h: &Harness) {
    let store = &*h.store;
    let a = stream("a");
    assert_eq!(store.load_snapshot(&a).await.expect("load"), None);
    let snapshot = |version, state| Snapshot {
        stream_id: a.clone(),
        stream_version: version,
        snapshot_version: 2,
        state,
    };
    store
        .save_snapshot(snapshot(5, json!({ "balance": 5 })))
        .await
        .expect("save");
    assert_eq!(
        store.load_snapshot(&a).await.expect("load"),
        Some(snapshot(5, json!({ "balance": 5 })))
    );
    store
        .save_snapshot(snapshot(3, json!({ "balance": 3 })))
        .await
        .expect("save older");
    assert_eq!(
        store
            .load_snapshot(&a)
            .await
            .expect("load")
            .map(|s| s.stream_version),
        Some(5),
        "older ignored"
    );
    store
        .save_snapshot(snapshot(5, json!({ "balance": 55 })))
        .await
        .expect("save same");
    store
        .save_snapshot(snapshot(8, json!({ "balance": 8 })))
        .await
        .expect("save newer");
    assert_eq!(
        store.load_snapshot(&a).await.expect("load"),
        Some(snapshot(8, json!({ "balance": 8 })))
    );
    assert_eq!(
        store.load_snapshot(&stream("other")).await.expect("load"),
        None
    );
}

pub(crate) async fn repository_saves_and_loads(h: &Harness) {
    let accounts = Repository::<Account>::new(Arc::clone(&h.store));
    let id = AccountId::generate();
    let mut account = accounts.load(&id).await.expect("load new");
    assert!(account.is_new());
    account.raise(Deposited { amount: 5 });
    account.raise(Deposited { amount: 7 });
    accounts.save(&mut account).await.expect("save");

    let mut loaded = accounts.load(&id).await.expect("load");
    assert_eq!(
        (loaded.balance, loaded.deposits, loaded.version()),
        (12, 2, 2)
    );
    loaded.raise(Deposited { amount: 1 });
    // A stale copy loses.
    account.raise(Deposited { amount: 100 });
    accounts.save(&mut loaded).await.expect("save");
    assert!(
        accounts
            .save(&mut account)
            .await
            .is_err_and(|e| e.is_conflict())
    );
    assert_eq!(accounts.load(&id).await.expect("load").balance, 13);
}
