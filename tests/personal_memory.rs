//! The personal data suite on the in-memory stores.

mod personal;

use std::sync::Arc;

use eventsourcery::MemoryStore;
use eventsourcery::backend::{MemoryKeyStore, MemoryPersonalStore};

async fn setup(_test: &'static str) -> Option<personal::Backend> {
    Some(personal::Backend::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryKeyStore::new()),
        Arc::new(MemoryPersonalStore::new()),
    ))
}

personal_suite!(setup);
