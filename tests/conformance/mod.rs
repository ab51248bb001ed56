//! The event store conformance suite: every behaviour of `EventStore`, run unchanged against
//! the in-memory, SQLite and PostgreSQL stores by `tests/store_*.rs`.
//!
//! A backend's test file defines `async fn setup(test: &'static str) -> Option<Harness>`
//! (`None` skips the test, e.g. when no PostgreSQL server is configured) and calls
//! `conformance::suite!(setup);`, which expands to one `#[tokio::test]` per case.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub(crate) mod bad_data;
mod basics;
mod concurrency;
pub(crate) mod domain;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use eventsourcery::EventStore;
use eventsourcery::event::Metadata;
use eventsourcery::store::{Commit, NewEvent, StreamAppend};
use eventsourcery::value::StreamId;
use serde_json::json;
use uuid::Uuid;

pub(crate) use basics::*;
pub(crate) use concurrency::*;

/// Work to do when a test is over (closing pools, dropping a database).
pub(crate) type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A store under test.
pub(crate) struct Harness {
    /// Which backend, for messages.
    pub(crate) backend: &'static str,
    /// The store, fresh and empty.
    pub(crate) store: Arc<dyn EventStore>,
    cleanup: Option<Cleanup>,
}

impl Harness {
    /// A store that needs no cleanup.
    pub(crate) fn new(backend: &'static str, store: Arc<dyn EventStore>) -> Self {
        Self {
            backend,
            store,
            cleanup: None,
        }
    }

    /// Runs `cleanup` when the test passes.
    pub(crate) fn with_cleanup(
        mut self,
        cleanup: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.cleanup = Some(Box::pin(cleanup));
        self
    }

    /// Ends the test.
    pub(crate) async fn finish(self) {
        if let Some(cleanup) = self.cleanup {
            cleanup.await;
        }
    }
}

/// One `#[tokio::test]` per conformance case, each with a fresh store from `$setup`.
macro_rules! suite {
    ($setup:path) => {
        $crate::conformance::suite!(
            $setup;
            append_then_read_stream,
            read_stream_pages_in_version_order,
            append_continues_at_the_expected_version,
            read_all_pages_in_position_order,
            stale_expected_version_conflicts_and_changes_nothing,
            duplicate_event_id_is_rejected_and_changes_nothing,
            multi_stream_commit_is_all_or_nothing,
            command_only_commit_logs_the_command,
            command_log_keeps_every_outcome_in_order,
            invalid_appends_are_rejected,
            snapshots_are_replaced_only_by_newer_ones,
            repository_saves_and_loads,
            repository_loads_current_and_upcast_payloads,
            concurrent_writers_on_one_stream,
            concurrent_writers_on_many_streams,
            reader_sees_every_event_once_in_order_while_writers_commit,
            command_bus_retries_conflicts_until_every_command_lands,
            commits_sent_at_once_each_get_their_own_result,
        );
    };
    ($setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(harness) = $setup(stringify!($case)).await {
                    $crate::conformance::$case(&harness).await;
                    harness.finish().await;
                }
            }
        )*
    };
}

pub(crate) use suite;

/// A new event with a unique id.
pub(crate) fn event(name: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_name: name.to_owned(),
        schema_version: 1,
        payload,
        metadata: Metadata::default(),
    }
}

/// `count` numbered events.
pub(crate) fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| event("numbered", json!({ "n": n })))
        .collect()
}

/// A commit of `events` to one stream at `expected_version`.
pub(crate) fn commit(stream: &StreamId, expected_version: u64, events: Vec<NewEvent>) -> Commit {
    Commit {
        streams: vec![StreamAppend {
            stream_id: stream.clone(),
            expected_version,
            events,
        }],
        command: None,
    }
}

/// A stream id no other test uses.
pub(crate) fn stream(prefix: &str) -> StreamId {
    StreamId::new(format!("{prefix}-{}", Uuid::now_v7()))
}

/// A pseudo-random number below `bound`, without a dependency on `rand`.
pub(crate) fn below(bound: usize) -> usize {
    (Uuid::new_v4().as_u128() % bound as u128) as usize
}
