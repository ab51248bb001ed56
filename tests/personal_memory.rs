//! The personal data suite on the in-memory stores.

mod personal;

use std::sync::Arc;

use eventsourcery::{MemoryStore, PersonalVault};

async fn setup(_test: &'static str) -> Option<personal::Backend> {
    Some(personal::Backend::new(
        Arc::new(MemoryStore::new()),
        Arc::new(PersonalVault::in_memory().unwrap()),
    ))
}

personal_suite!(setup);
