//! Health for a readiness endpoint: per consumer its checkpoint, lag, parked state and lease,
//! and whether the store answers.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{DispatchError, Dispatcher, Parked, Partition};
use crate::sync::lock;

/// What this dispatcher knows of a consumer's lease, from its last attempt to take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseStatus {
    /// This dispatcher has not tried to take it yet.
    Unknown,
    /// This dispatcher holds it.
    Held,
    /// Another instance held it when this one tried: normal with several processes.
    HeldElsewhere,
    /// This dispatcher held it, and lost it while catching up (it did not renew in time,
    /// so another instance took over).
    Lost,
}

/// The leases this dispatcher took, by consumer.
#[derive(Debug, Default)]
pub(crate) struct Leases(Mutex<HashMap<String, LeaseStatus>>);

impl Leases {
    /// Notes a claim of `consumer`: `claimed` or not, and whether it was a renewal during a
    /// catch-up (a failed renewal is a lost lease).
    pub(crate) fn note(&self, consumer: &str, claimed: bool, renewal: bool) {
        let status = match (claimed, renewal) {
            (true, _) => LeaseStatus::Held,
            (false, true) => LeaseStatus::Lost,
            (false, false) => LeaseStatus::HeldElsewhere,
        };
        lock(&self.0).insert(consumer.to_owned(), status);
    }

    fn get(&self, consumer: &str) -> LeaseStatus {
        lock(&self.0)
            .get(consumer)
            .copied()
            .unwrap_or(LeaseStatus::Unknown)
    }
}

/// One consumer's health.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerHealth {
    /// The consumer's name.
    pub name: String,
    /// Its checkpoint: the position of the last event it is done with.
    pub position: u64,
    /// How many positions it is behind the head of the log.
    pub lag: u64,
    /// Set while it is parked.
    pub parked: Option<Parked>,
    /// Its lease, as this dispatcher last saw it. For a partitioned consumer: lost if this
    /// dispatcher lost any partition's lease, held if it holds any, else as the first
    /// partition's.
    pub lease: LeaseStatus,
    /// Each partition, for a partitioned consumer (empty otherwise); `position` is then the
    /// lowest of their checkpoints and `parked` the parked one with the lowest position.
    pub partitions: Vec<PartitionHealth>,
}

/// One partition of a partitioned consumer, in its [`ConsumerHealth`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionHealth {
    /// The partition.
    pub partition: Partition,
    /// Its checkpoint.
    pub position: u64,
    /// How many positions it is behind the head of the log.
    pub lag: u64,
    /// Set while it is parked.
    pub parked: Option<Parked>,
    /// Its lease, as this dispatcher last saw it.
    pub lease: LeaseStatus,
}

/// Something that makes a dispatcher unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthProblem {
    /// The store did not answer; its error, as text.
    StoreUnreachable {
        /// The store's error.
        error: String,
    },
    /// A consumer is further behind the head than the threshold.
    Lagging {
        /// The consumer.
        consumer: String,
        /// How far behind.
        lag: u64,
    },
    /// A consumer is parked at an event that kept failing.
    Parked {
        /// The consumer.
        consumer: String,
        /// The position of the event.
        position: u64,
    },
    /// This dispatcher lost a consumer's lease while catching up.
    LeaseLost {
        /// The consumer.
        consumer: String,
    },
}

/// A dispatcher's health, from [`Dispatcher::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The position of the last event in the log, if the store answered.
    pub head: Option<u64>,
    /// Each consumer's health (empty if the store did not answer).
    pub consumers: Vec<ConsumerHealth>,
    /// What is wrong; empty when healthy.
    pub problems: Vec<HealthProblem>,
}

impl Health {
    /// Whether nothing is wrong: the store answers, and no consumer lags beyond the threshold,
    /// is parked or lost its lease.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Dispatcher {
    /// The health of this dispatcher's consumers, for a readiness endpoint: unhealthy when the
    /// store does not answer, or a consumer is more than `max_lag` positions behind the head,
    /// is parked, or lost its lease while this dispatcher was catching it up. A consumer whose
    /// lease another instance holds is not a problem (it runs there), but its lag still counts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventsourcery::{CommandBus, Dispatcher, MemoryStore};
    ///
    /// let store = std::sync::Arc::new(MemoryStore::new());
    /// let bus = CommandBus::builder(store.clone()).build()?;
    /// let dispatcher = Dispatcher::builder(&bus, store).only(["none"]).build()?;
    /// let health = dispatcher.health(1_000).await;
    /// // In an HTTP handler: 200 when healthy, 503 otherwise.
    /// let status = if health.is_healthy() { 200 } else { 503 };
    /// assert_eq!(status, 200);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn health(&self, max_lag: u64) -> Health {
        match self.consumers_health().await {
            Ok((head, consumers)) => {
                let mut problems = Vec::new();
                for consumer in &consumers {
                    if let Some(parked) = &consumer.parked {
                        problems.push(HealthProblem::Parked {
                            consumer: consumer.name.clone(),
                            position: parked.position,
                        });
                    }
                    if consumer.lag > max_lag {
                        problems.push(HealthProblem::Lagging {
                            consumer: consumer.name.clone(),
                            lag: consumer.lag,
                        });
                    }
                    if consumer.lease == LeaseStatus::Lost {
                        problems.push(HealthProblem::LeaseLost {
                            consumer: consumer.name.clone(),
                        });
                    }
                }
                Health {
                    head: Some(head),
                    consumers,
                    problems,
                }
            }
            Err(error) => Health {
                head: None,
                consumers: Vec::new(),
                problems: vec![HealthProblem::StoreUnreachable {
                    error: error.to_string(),
                }],
            },
        }
    }

    async fn consumers_health(&self) -> Result<(u64, Vec<ConsumerHealth>), DispatchError> {
        let head = self.store.head_position().await?;
        let mut consumers = Vec::with_capacity(self.consumers.len());
        for consumer in &self.consumers {
            let name = consumer.name();
            // One read of the checkpoints serves the partitions and the consumer as a whole.
            let states = self.partition_states(name).await?;
            let state = super::overall(&states);
            let mut partitions = Vec::new();
            for (partition, state) in states {
                let Some(partition) = partition else { continue };
                let key = partition.checkpoint(name);
                let lag = head.saturating_sub(state.position);
                crate::metrics::consumer(&key, lag, state.parked.is_some());
                partitions.push(PartitionHealth {
                    partition,
                    position: state.position,
                    lag,
                    parked: state.parked,
                    lease: self.leases.get(&key),
                });
            }
            let lag = head.saturating_sub(state.position);
            let lease = if partitions.is_empty() {
                self.leases.get(name)
            } else {
                let leases = partitions.iter().map(|p| p.lease);
                let any = |status| leases.clone().any(|l| l == status);
                if any(LeaseStatus::Lost) {
                    LeaseStatus::Lost
                } else if any(LeaseStatus::Held) {
                    LeaseStatus::Held
                } else {
                    partitions[0].lease
                }
            };
            crate::metrics::consumer(name, lag, state.parked.is_some());
            consumers.push(ConsumerHealth {
                name: name.to_owned(),
                position: state.position,
                lag,
                parked: state.parked,
                lease,
                partitions,
            });
        }
        Ok((head, consumers))
    }
}
