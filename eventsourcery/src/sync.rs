//! Locking that a panic elsewhere cannot poison for good.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`. The data behind this crate's mutexes are plain collections and values,
/// which a panic in another holder cannot leave half changed, so a poisoned lock is taken as
/// it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
