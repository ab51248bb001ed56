//! The in-memory event store, for tests and prototypes.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use uuid::Uuid;

mod consumers;
mod personal;

pub use personal::{MemoryKeyStore, MemoryPersonalStore};

use crate::store::{
    CommandRecord, Commit, EventStore, RecordedEvent, Snapshot, StoreError, StreamEvent,
    validate_commit,
};
use crate::value::StreamId;

/// An event store in process memory: fast, and gone when the process ends.
///
/// It behaves exactly like the SQL stores (the same conformance suite runs against all three).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    consumers: tokio::sync::Mutex<consumers::MemoryConsumers>,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<RecordedEvent>,
    streams: HashMap<StreamId, Vec<usize>>,
    event_ids: HashSet<Uuid>,
    commands: Vec<CommandRecord>,
    snapshots: HashMap<StreamId, Snapshot>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn consumers(&self) -> &tokio::sync::Mutex<consumers::MemoryConsumers> {
        &self.consumers
    }

    /// Up to `limit` events of `stream` after `after_version`, each as `map` gives it.
    fn stream_page<T>(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
        map: impl Fn(&RecordedEvent) -> T,
    ) -> Vec<T> {
        let inner = self.lock();
        inner.streams.get(stream).map_or_else(Vec::new, |indices| {
            indices
                .iter()
                .skip(usize::try_from(after_version).unwrap_or(usize::MAX))
                .take(limit)
                .map(|&i| map(&inner.events[i]))
                .collect()
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written: every mutation below
        // happens after all checks, so the data behind a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, commit: Commit) -> Result<Vec<RecordedEvent>, StoreError> {
        validate_commit(&commit)?;
        let mut inner = self.lock();
        let mut new_ids = HashSet::new();
        for append in &commit.streams {
            let actual = inner.streams.get(&append.stream_id).map_or(0, Vec::len) as u64;
            if actual != append.expected_version {
                return Err(StoreError::Conflict {
                    stream: append.stream_id.clone(),
                    expected: append.expected_version,
                    actual,
                });
            }
            for event in &append.events {
                if inner.event_ids.contains(&event.event_id) || !new_ids.insert(event.event_id) {
                    return Err(StoreError::InvalidAppend(format!(
                        "event id {} is already stored",
                        event.event_id
                    )));
                }
            }
        }
        let now = SystemTime::now();
        let mut recorded = Vec::new();
        for append in commit.streams {
            for (offset, event) in append.events.into_iter().enumerate() {
                let index = inner.events.len();
                let event = RecordedEvent {
                    position: index as u64 + 1,
                    event_id: event.event_id,
                    stream_id: append.stream_id.clone(),
                    stream_version: append.expected_version + offset as u64 + 1,
                    event_name: event.event_name,
                    schema_version: event.schema_version,
                    payload: event.payload,
                    metadata: event.metadata,
                    recorded_at: now,
                };
                inner.event_ids.insert(event.event_id);
                inner.events.push(event.clone());
                inner
                    .streams
                    .entry(append.stream_id.clone())
                    .or_default()
                    .push(index);
                recorded.push(event);
            }
        }
        if let Some(command) = commit.command {
            inner.commands.push(command);
        }
        Ok(recorded)
    }

    async fn read_stream_page(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.stream_page(stream, after_version, limit, RecordedEvent::clone))
    }

    async fn load_stream_page(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        Ok(self.stream_page(stream, after_version, limit, |event| {
            StreamEvent::new(
                event.position,
                event.stream_version,
                event.event_name.clone(),
                event.schema_version,
                event.payload.clone(),
            )
        }))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.lock().events.len() as u64)
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(page(&self.lock().events, after_position, limit))
    }

    async fn read_commands(
        &self,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        Ok(page(&self.lock().commands, offset, limit))
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let newer = inner
            .snapshots
            .get(&snapshot.stream_id)
            .is_none_or(|old| old.stream_version <= snapshot.stream_version);
        if newer {
            inner.snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }
}

/// At most `limit` of `items`, after the first `skip`.
fn page<T: Clone>(items: &[T], skip: u64, limit: usize) -> Vec<T> {
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    items.iter().skip(skip).take(limit).cloned().collect()
}
