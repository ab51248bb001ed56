//! The event store conformance suite against the in-memory store.

use std::sync::Arc;

use eventsourcery::MemoryStore;

mod conformance;

use conformance::Harness;

async fn setup(_test: &'static str) -> Option<Harness> {
    Some(Harness::new("memory", Arc::new(MemoryStore::new())))
}

conformance::suite!(setup);
