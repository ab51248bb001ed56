//! How a consumer's failures are counted and told: its own failures against `max_attempts`,
//! transaction conflicts apart, and the error text withheld where it may quote personal data.

use super::consumer::Unavailable;
use crate::command::BoxError;
use crate::store::StoreError;

/// How many transaction conflicts (see [`Attempts`]) one event or batch is tried again for,
/// besides its `max_attempts`.
const CONFLICT_RETRIES: u32 = 20;

/// The tries of one event or batch: `max_attempts` failures of its own, and besides them up to
/// [`CONFLICT_RETRIES`] transaction conflicts (a PostgreSQL serialization failure or deadlock
/// between partitions or consumers writing the same rows, in the work or at its commit), which
/// are not the event's fault and so must not park the consumer. A long run of conflicts may
/// outlast the consumer's lease (renewed between batches): the checkpoint check then stops
/// the batch's commit, and the instance that took over carries on.
pub(super) struct Attempts {
    max: u32,
    pub(super) failures: u32,
    pub(super) conflicts: u32,
}

impl Attempts {
    /// `max` is at least 1: every event is tried once.
    pub(super) fn new(max: u32) -> Self {
        Self {
            max: max.max(1),
            failures: 0,
            conflicts: 0,
        }
    }

    /// Counts a failure; the backoff step to wait before trying again, or `None` when the
    /// tries are used up.
    pub(super) fn failed(&mut self, conflict: bool) -> Option<u32> {
        if conflict && let Some(step) = self.conflicted() {
            return Some(step);
        }
        self.failures += 1;
        (self.failures < self.max).then_some(self.failures)
    }

    /// For a store error from the batch's transaction: the backoff step before trying again if
    /// it is a transaction refused at commit for a conflict (rolled back, so tried again as a
    /// conflict in the work is) within the allowance; `None` otherwise, and the error ends the
    /// round.
    pub(super) fn refused_at_commit(&mut self, error: &StoreError) -> Option<u32> {
        if crate::error::is_transaction_conflict(error) {
            self.conflicted()
        } else {
            None
        }
    }

    /// Counts a conflict if the allowance has room; its backoff step.
    fn conflicted(&mut self) -> Option<u32> {
        (self.conflicts < CONFLICT_RETRIES).then(|| {
            self.conflicts += 1;
            self.conflicts.min(4)
        })
    }
}

/// A consumer's error, sorted, and withheld where it may quote personal data (see
/// [`withhold`]); sorted first, since withholding replaces it.
pub(super) struct Failure {
    pub(super) error: BoxError,
    pub(super) unavailable: bool,
    pub(super) conflict: bool,
}

impl Failure {
    pub(super) fn new(error: BoxError, personal: bool) -> Self {
        Self {
            unavailable: error.is::<Unavailable>(),
            conflict: crate::error::is_transaction_conflict(&*error),
            error: withhold(error, personal),
        }
    }
}

/// What a consumer's error becomes before it is logged or stored with a parked consumer: for
/// an event that carries personal data, a fixed text, since the consumer saw the decrypted
/// values and its message may quote them (the parked error is never erased).
fn withhold(error: BoxError, personal: bool) -> BoxError {
    if personal {
        WITHHELD_CONSUMER_ERROR.into()
    } else {
        error
    }
}

/// The text that replaces a consumer's error message for an event with personal data.
const WITHHELD_CONSUMER_ERROR: &str =
    "the consumer failed; message withheld: the event carries personal data";

#[cfg(test)]
mod tests {
    use super::{Attempts, CONFLICT_RETRIES};

    #[test]
    fn conflicts_are_tried_again_without_counting_toward_max_attempts() {
        let mut attempts = Attempts::new(3);
        for conflict in 1..=CONFLICT_RETRIES {
            assert_eq!(attempts.failed(true), Some(conflict.min(4)));
        }
        // Conflicts beyond the allowance count as failures, as any other error does.
        assert_eq!(attempts.failed(true), Some(1));
        assert_eq!(attempts.failed(false), Some(2));
        assert_eq!(attempts.failed(false), None);

        let mut alone = Attempts::new(1);
        assert_eq!(alone.failed(false), None, "max_attempts 1: no retry");
        let mut none = Attempts::new(0);
        assert_eq!(none.failed(false), None, "max_attempts 0 is 1: tried once");

        // A store error that is not a conflict ends the round, and counts nothing.
        let mut store = Attempts::new(3);
        let error = crate::store::StoreError::InvalidAppend("not a conflict".into());
        assert_eq!(store.refused_at_commit(&error), None);
        assert_eq!((store.failures, store.conflicts), (0, 0));
    }
}
