//! The aggregate cache: states of `#[aggregate(cache)]` aggregates kept between commands, so a
//! command need not read the stream. The append's concurrency check validates the cached
//! version; a conflict evicts the entry and the bus retries against fresh state.
//!
//! A state that holds decrypted personal values carries the key store's erasure epoch, read
//! before its values were decrypted (or written). A hit on such an entry is served only if the
//! epoch has not moved since: an erasure made by any process sharing the key store makes every
//! such entry stale, so a cached state never shows an erased subject's values.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::aggregate::Aggregate;
use crate::value::StreamId;

/// How many aggregates a bus keeps by default.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

struct Entry {
    version: u64,
    /// For a state holding personal values: the erasure epoch read before they were decrypted.
    personal: Option<u64>,
    state: Box<dyn Any + Send + Sync>,
}

/// A cached state: its version, the erasure epoch it must still be at if it holds personal
/// values, and a copy of it.
pub(crate) struct Cached<A> {
    pub(crate) version: u64,
    pub(crate) personal: Option<u64>,
    pub(crate) state: A,
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

    /// A copy of the cached state of `stream`. If it holds personal values, the caller checks
    /// its epoch before using it.
    pub(crate) fn get<A: Aggregate>(&self, stream: &StreamId) -> Option<Cached<A>> {
        let entries = self.lock();
        let entry = entries.get(stream)?;
        let state = entry.state.downcast_ref::<A>()?.cached_clone()?;
        Some(Cached {
            version: entry.version,
            personal: entry.personal,
            state,
        })
    }

    pub(crate) fn put(
        &self,
        stream: StreamId,
        version: u64,
        personal: Option<u64>,
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
                personal,
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
