//! Consumer state of the in-memory store: checkpoints, parked consumers, leases and the
//! events each consumer has processed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use super::MemoryStore;
use crate::error::BoxError;
use crate::store::{
    ConsumerEntry, ConsumerState, ConsumerStore, Parked, ProjectionTx, StoreError, TxWork,
};

#[derive(Debug, Default)]
pub(crate) struct MemoryConsumers {
    states: HashMap<String, ConsumerState>,
    skipped: Vec<(String, u64, String)>,
    leases: HashMap<String, (Uuid, Instant)>,
    processed: HashSet<(String, Uuid)>,
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
            return Err(StoreError::checkpoint_moved(consumer, from, state.position));
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
            return Err(StoreError::checkpoint_moved(consumer, from, current));
        }
        if let Err(error) = work.run(&mut ProjectionTx::none()).await {
            return Ok(Err(error));
        }
        inner
            .states
            .entry(consumer.to_owned())
            .or_default()
            .position = to;
        Ok(Ok(()))
    }

    async fn reset(
        &self,
        consumers: &[String],
        retire: &[String],
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), BoxError>, StoreError> {
        let mut inner = self.consumers().lock().await;
        if let Err(error) = work.run(&mut ProjectionTx::none()).await {
            return Ok(Err(error));
        }
        for consumer in consumers {
            let state = inner.states.entry(consumer.clone()).or_default();
            state.position = 0;
            state.parked = None;
        }
        for consumer in retire {
            let state = inner.states.entry(consumer.clone()).or_default();
            state.position = 0;
            state.parked = Some(Parked::new(0, crate::store::RETIRED, SystemTime::now()));
        }
        Ok(Ok(()))
    }

    async fn park(&self, consumer: &str, position: u64, error: &str) -> Result<(), StoreError> {
        let mut inner = self.consumers().lock().await;
        let state = inner.states.entry(consumer.to_owned()).or_default();
        let expected = position.saturating_sub(1);
        if state.position != expected {
            return Err(StoreError::checkpoint_moved(
                consumer,
                expected,
                state.position,
            ));
        }
        state.parked = Some(Parked::new(position, error, SystemTime::now()));
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

    async fn consumers(&self, prefix: &str) -> Result<Vec<ConsumerEntry>, StoreError> {
        let inner = self.consumers().lock().await;
        let now = Instant::now();
        let names: std::collections::BTreeSet<&String> = inner
            .states
            .keys()
            .chain(inner.leases.keys())
            .filter(|name| name.starts_with(prefix))
            .collect();
        Ok(names
            .into_iter()
            .map(|name| {
                let position = inner.states.get(name).map_or(0, |s| s.position);
                let holder = inner
                    .leases
                    .get(name)
                    .filter(|(_, expires)| *expires > now)
                    .map(|(holder, _)| *holder);
                ConsumerEntry::new(name.clone(), position, holder)
            })
            .collect())
    }

    async fn forget(&self, consumer: &str) -> Result<(), StoreError> {
        let mut inner = self.consumers().lock().await;
        inner.states.remove(consumer);
        inner.leases.remove(consumer);
        Ok(())
    }

    async fn forget_expired(&self, consumer: &str) -> Result<bool, StoreError> {
        let mut inner = self.consumers().lock().await;
        let held = inner
            .leases
            .get(consumer)
            .is_some_and(|(_, expires)| *expires >= Instant::now());
        if held {
            return Ok(false);
        }
        let state = inner.states.remove(consumer).is_some();
        let lease = inner.leases.remove(consumer).is_some();
        Ok(state || lease)
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
