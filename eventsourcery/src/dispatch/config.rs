//! How consumers are retried, batched, leased and run side by side.

use std::time::Duration;

/// How consumers are retried and batched.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// Events read per batch.
    pub batch_size: usize,
    /// Attempts at one event (or batch) before the consumer is parked (0 counts as 1). A
    /// transaction the database refused for meeting another (PostgreSQL `40001`, `40P01`) is
    /// tried again up to 20 more times without counting.
    pub max_attempts: u32,
    /// The first retry delay; it doubles per attempt.
    pub backoff: Duration,
    /// The longest retry delay.
    pub max_backoff: Duration,
    /// How long a claimed consumer stays claimed without renewal.
    pub lease: Duration,
    /// How often a worker looks for new events when nothing wakes it.
    pub poll_interval: Duration,
    /// How many partitions of one consumer a dispatcher runs at the same time.
    pub partition_concurrency: usize,
}

/// Builder methods of [`DispatchConfig`] that set a duration as given, each named after its
/// field.
macro_rules! durations {
    ($($(#[$doc:meta])+ $field:ident;)+) => {
        $(
            $(#[$doc])+
            #[must_use]
            pub fn $field(mut self, $field: Duration) -> Self {
                self.$field = $field;
                self
            }
        )+
    };
}

/// Each option, set one at a time on the defaults:
///
/// ```
/// # use std::time::Duration;
/// use eventsourcery::dispatch::DispatchConfig;
///
/// let config = DispatchConfig::default()
///     .max_attempts(2)
///     .backoff(Duration::from_millis(10));
/// assert_eq!(config.max_attempts, 2);
/// ```
impl DispatchConfig {
    /// Events read per batch (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Attempts at one event (or batch) before the consumer is parked (at least 1); see
    /// the field of the same name for transaction conflicts, which do not count.
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    durations! {
        /// The first retry delay; it doubles per attempt.
        backoff;
        /// The longest retry delay.
        max_backoff;
        /// How long a claimed consumer stays claimed without renewal.
        lease;
        /// How often a worker looks for new events when nothing wakes it.
        poll_interval;
    }

    /// How many partitions of one consumer a dispatcher runs at the same time (at least 1):
    /// each holds a batch of events and, for a projection, a transaction and a connection.
    #[must_use]
    pub fn partition_concurrency(mut self, partitions: usize) -> Self {
        self.partition_concurrency = partitions.max(1);
        self
    }
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_attempts: 5,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            partition_concurrency: 4,
        }
    }
}
