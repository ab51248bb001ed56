//! Durable consumer state in the event store's database: checkpoints, parked consumers,
//! skipped events, leases and processed-event marks.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use super::consumer::ProjectionTx;
use crate::command::BoxError;
use crate::store::{EventStore, MemoryStore, StoreError};

/// Where a consumer stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConsumerState {
    /// The position of the last event it is done with (0 before the first).
    pub position: u64,
    /// Set while it is parked after repeated failures.
    pub parked: Option<Parked>,
}

/// Why a consumer stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Parked {
    /// The position of the event that kept failing.
    pub position: u64,
    /// The last error's message.
    pub error: String,
    /// When it was parked.
    pub parked_at: SystemTime,
}

impl Parked {
    /// A parked state.
    pub fn new(position: u64, error: impl Into<String>, parked_at: SystemTime) -> Self {
        Self {
            position,
            error: error.into(),
            parked_at,
        }
    }
}

/// Work done in the same transaction as a checkpoint move.
#[async_trait::async_trait]
pub trait TxWork: Send + Sync {
    /// Runs the work; an error rolls the whole transaction back.
    async fn run(&self, tx: &mut ProjectionTx<'_>) -> Result<(), BoxError>;
}

/// The consumer state an event store keeps beside its events, so that a projection's update and
/// its checkpoint share one transaction.
#[async_trait::async_trait]
pub trait ConsumerStore: EventStore {
    /// Where `consumer` stands.
    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState, StoreError>;

    /// Moves the checkpoint from `from` to `to`. Fails with [`StoreError::CheckpointMoved`],
    /// changing nothing, if it is not at `from` (another instance moved it).
    async fn advance(&self, consumer: &str, from: u64, to: u64) -> Result<(), StoreError>;

    /// Runs `work` and moves the checkpoint from `from` to `to` in one transaction. The outer
    /// error is the store's; the inner one is the work's, after which nothing was changed.
    async fn advance_with(
        &self,
        consumer: &str,
        from: u64,
        to: u64,
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), BoxError>, StoreError>;

    /// Parks the consumer at the event at `position`, recording the error.
    async fn park(&self, consumer: &str, position: u64, error: &str) -> Result<(), StoreError>;

    /// Lets a parked consumer run again, retrying the event it stopped at.
    async fn unpark(&self, consumer: &str) -> Result<(), StoreError>;

    /// Records that the event at `position` was skipped, moves the checkpoint past it, and
    /// unparks the consumer, in one transaction.
    async fn skip(&self, consumer: &str, position: u64, reason: &str) -> Result<(), StoreError>;

    /// The positions skipped by `consumer`, with their reasons.
    async fn skipped(&self, consumer: &str) -> Result<Vec<(u64, String)>, StoreError>;

    /// Takes or renews the lease on `consumer` for `owner`; false if another owner holds an
    /// unexpired lease. One active instance per consumer across processes.
    async fn claim(&self, consumer: &str, owner: Uuid, lease: Duration)
    -> Result<bool, StoreError>;

    /// Gives the lease up, if `owner` holds it.
    async fn release(&self, consumer: &str, owner: Uuid) -> Result<(), StoreError>;

    /// Marks `event_id` as processed by `consumer`; false if it already was (the idempotency
    /// record of at-least-once listeners).
    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError>;

    /// Whether `event_id` was marked as processed by `consumer`.
    async fn is_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError>;

    /// Waits until events may have been appended by another process, or `timeout` passes.
    /// The default just waits (polling); PostgreSQL wakes on LISTEN/NOTIFY.
    async fn wait_for_append(&self, timeout: Duration) -> Result<(), StoreError> {
        tokio::time::sleep(timeout).await;
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct MemoryConsumers {
    states: HashMap<String, ConsumerState>,
    skipped: Vec<(String, u64, String)>,
    leases: HashMap<String, (Uuid, Instant)>,
    processed: HashSet<(String, Uuid)>,
}

fn moved(consumer: &str, expected: u64, actual: u64) -> StoreError {
    StoreError::CheckpointMoved {
        consumer: consumer.to_owned(),
        expected,
        actual,
    }
}

#[async_trait::async_trait]
impl ConsumerStore for MemoryStore {
    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState, StoreError> {
        Ok(self
            .consumers()
            .lock()
            .await
            .states
            .get(consumer)
            .cloned()
            .unwrap_or_default())
    }

    async fn advance(&self, consumer: &str, from: u64, to: u64) -> Result<(), StoreError> {
        let mut inner = self.consumers().lock().await;
        let state = inner.states.entry(consumer.to_owned()).or_default();
        if state.position != from {
            return Err(moved(consumer, from, state.position));
        }
        state.position = to;
        Ok(())
    }

    async fn advance_with(
        &self,
        consumer: &str,
        from: u64,
        to: u64,
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), BoxError>, StoreError> {
        // The lock is held across the work: one batch at a time, as in a database transaction.
        // Memory has no rollback: a projection on the memory store keeps its own state.
        let mut inner = self.consumers().lock().await;
        let current = inner.states.get(consumer).map_or(0, |s| s.position);
        if current != from {
            return Err(moved(consumer, from, current));
        }
        if let Err(error) = work.run(&mut ProjectionTx::None).await {
            return Ok(Err(error));
        }
        inner
            .states
            .entry(consumer.to_owned())
            .or_default()
            .position = to;
        Ok(Ok(()))
    }

    async fn park(&self, consumer: &str, position: u64, error: &str) -> Result<(), StoreError> {
        let mut inner = self.consumers().lock().await;
        inner.states.entry(consumer.to_owned()).or_default().parked =
            Some(Parked::new(position, error, SystemTime::now()));
        Ok(())
    }

    async fn unpark(&self, consumer: &str) -> Result<(), StoreError> {
        if let Some(state) = self.consumers().lock().await.states.get_mut(consumer) {
            state.parked = None;
        }
        Ok(())
    }

    async fn skip(&self, consumer: &str, position: u64, reason: &str) -> Result<(), StoreError> {
        let mut inner = self.consumers().lock().await;
        inner
            .skipped
            .push((consumer.to_owned(), position, reason.to_owned()));
        let state = inner.states.entry(consumer.to_owned()).or_default();
        state.position = state.position.max(position);
        state.parked = None;
        Ok(())
    }

    async fn skipped(&self, consumer: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let inner = self.consumers().lock().await;
        Ok(inner
            .skipped
            .iter()
            .filter(|(c, _, _)| c == consumer)
            .map(|(_, p, r)| (*p, r.clone()))
            .collect())
    }

    async fn claim(
        &self,
        consumer: &str,
        owner: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut inner = self.consumers().lock().await;
        let now = Instant::now();
        match inner.leases.get(consumer) {
            Some((holder, expires)) if *holder != owner && *expires > now => Ok(false),
            _ => {
                inner
                    .leases
                    .insert(consumer.to_owned(), (owner, now + lease));
                Ok(true)
            }
        }
    }

    async fn release(&self, consumer: &str, owner: Uuid) -> Result<(), StoreError> {
        let mut inner = self.consumers().lock().await;
        if inner
            .leases
            .get(consumer)
            .is_some_and(|(holder, _)| *holder == owner)
        {
            inner.leases.remove(consumer);
        }
        Ok(())
    }

    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        Ok(self
            .consumers()
            .lock()
            .await
            .processed
            .insert((consumer.to_owned(), event_id)))
    }

    async fn is_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        let inner = self.consumers().lock().await;
        Ok(inner.processed.contains(&(consumer.to_owned(), event_id)))
    }
}
