//! The personal data suite on the in-memory stores.

mod personal;

use std::sync::Arc;

use eventsourcery::{MemoryStore, PersonalVault};

async fn backend() -> Option<personal::Backend> {
    Some(personal::Backend {
        store: Arc::new(MemoryStore::new()),
        vault: Arc::new(PersonalVault::in_memory().unwrap()),
    })
}

personal_suite!(backend().await);
