//! The aggregate cache: states of `#[aggregate(cache)]` aggregates kept between commands, so a
//! command need not read the stream. The append's concurrency check validates the cached
//! version; a conflict evicts the entry and the bus retries against fresh state.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::aggregate::Aggregate;
use crate::value::StreamId;

/// How many aggregates a bus keeps by default.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

struct Entry {
    version: u64,
    /// The personal data epoch when the state was read: an erasure since then makes it stale.
    epoch: u64,
    state: Box<dyn Any + Send + Sync>,
}

pub(crate) struct AggregateCache {
    entries: Mutex<HashMap<StreamId, Entry>>,
    capacity: usize,
}

impl AggregateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the cached state of `stream` and its version, if current.
    pub(crate) fn get<A: Aggregate>(&self, stream: &StreamId, epoch: u64) -> Option<(u64, A)> {
        let entries = self.lock();
        let entry = entries.get(stream).filter(|e| e.epoch == epoch)?;
        let state = entry.state.downcast_ref::<A>()?.cached_clone()?;
        Some((entry.version, state))
    }

    pub(crate) fn put(
        &self,
        stream: StreamId,
        version: u64,
        epoch: u64,
        state: Box<dyn Any + Send + Sync>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&stream) {
            // Cheap eviction: drop an arbitrary entry. A miss costs one stream read.
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(
            stream,
            Entry {
                version,
                epoch,
                state,
            },
        );
    }

    pub(crate) fn remove<'a>(&self, streams: impl IntoIterator<Item = &'a StreamId>) {
        let mut entries = self.lock();
        for stream in streams {
            entries.remove(stream);
        }
    }
}
