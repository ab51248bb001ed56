//! Event dispatch: listeners, process managers and projections reading the global log from
//! durable, per-consumer checkpoints.
//!
//! Each consumer reads the log in batches from its own checkpoint. A projection's update and
//! its checkpoint commit in one transaction of the store's database (exactly once); listeners
//! and process managers move their checkpoint after handling (at least once, with the event id
//! as idempotency key: see [`Once`]). A failing consumer is retried
//! with backoff, then parked with its error while the others keep running. Rebuilding an
//! aggregate reads its stream directly and never reaches a consumer.
//!
//! Guide: [consumers](crate::docs::consumers).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::bus::CommandBus;
use crate::command::BoxError;
use crate::service::Services;
use crate::store::{Shared, StoreError};

mod config;
pub(crate) mod consumer;
mod health;
mod partition;
mod retry;
mod run;
mod worker;

pub use config::DispatchConfig;
pub use health::{ConsumerHealth, Health, HealthProblem, LeaseStatus, PartitionHealth};
use partition::Slot;
pub use partition::{MAX_PARTITIONS, Partition, stream_hash};
pub use worker::Worker;

pub use crate::store::{ConsumerEntry, ConsumerState, ConsumerStore, Parked, ProjectionTx, TxWork};
pub use consumer::{
    Commands, Consumer, ConsumerKind, Envelope, EventContext, EventMeta, Once, PersonalRefs,
    Unavailable,
};

/// Dispatch could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The personal data vault failed while a batch's personal values were read; the batch is
    /// tried again on the next round.
    #[error("reading the personal values of a batch: {0}")]
    Personal(#[from] crate::personal::PersonalError),
    /// Functions registered under one consumer name declare different kinds.
    #[error(
        "consumer `{consumer}` is registered both as a projection and as another kind; give them different names"
    )]
    MixedKinds {
        /// The consumer.
        consumer: &'static str,
    },
    /// Two consumers share a name.
    #[error(
        "two consumers are named `{consumer}`; checkpoints are kept by name, so names must be unique"
    )]
    DuplicateConsumer {
        /// The name.
        consumer: String,
    },
    /// A consumer name holds `[` or `]`, which the checkpoints of partitions use.
    #[error("consumer name `{consumer}` holds `[` or `]`, which partition checkpoints use")]
    InvalidName {
        /// The name.
        consumer: String,
    },
    /// No consumer has this name.
    #[error("no consumer is named `{consumer}`")]
    UnknownConsumer {
        /// The name.
        consumer: String,
    },
    /// A projection's reset hook failed; nothing was changed.
    #[error("resetting consumer `{consumer}` failed: {source}")]
    Reset {
        /// The consumer.
        consumer: String,
        /// The hook's error.
        #[source]
        source: BoxError,
    },
    /// A consumer function's parameter cannot be resolved (see [`Dispatcher::check`]).
    #[error("consumer `{consumer}`, function `{handler}`: {source}")]
    Unresolved {
        /// The consumer.
        consumer: String,
        /// The function.
        handler: &'static str,
        /// What is missing.
        #[source]
        source: crate::service::ResolveError,
    },
    /// The functions registered under one consumer name declare different partition counts.
    #[error(
        "consumer `{consumer}` is registered with different partition counts; give every function of it the same `partitions`"
    )]
    MixedPartitions {
        /// The consumer.
        consumer: &'static str,
    },
    /// A partition count outside 1 to [`MAX_PARTITIONS`].
    #[error(
        "consumer `{consumer}` is given {partitions} partitions; it takes 1 to {MAX_PARTITIONS}"
    )]
    InvalidPartitions {
        /// The consumer.
        consumer: String,
        /// The count given.
        partitions: u32,
    },
    /// The store holds checkpoints of `consumer` for another partition count, with events
    /// behind them: changing the count is a rebuild ([`Dispatcher::rebuild`]), which replays
    /// the log into the new partitions. The consumer does not run until then: a catch-up
    /// lists it in [`CatchUp::refused`] and runs the others.
    #[error(
        "consumer `{consumer}` has checkpoints for {stored} partition(s) but is configured with {configured}; rebuild it to change the count"
    )]
    PartitionsChanged {
        /// The consumer.
        consumer: String,
        /// The count found in the store (1: unpartitioned).
        stored: u32,
        /// The count configured.
        configured: u32,
    },
    /// The consumer is not parked, so there is nothing to skip.
    #[error("consumer `{consumer}` is not parked")]
    NotParked {
        /// The name.
        consumer: String,
    },
}

/// Progress of a rebuild or catch-up.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Events read so far (handled or passed over).
    pub done: u64,
    /// Events in the log when it started.
    pub total: u64,
    /// Events per second so far.
    pub rate: f64,
}

/// Builds a [`Dispatcher`].
pub struct DispatcherBuilder {
    bus: CommandBus,
    store: Arc<dyn ConsumerStore>,
    consumers: Vec<Arc<dyn Consumer>>,
    registered: bool,
    only: Option<HashSet<String>>,
    services: Services,
    config: DispatchConfig,
    partitions: HashMap<String, u32>,
}

crate::redact::debug_fields!(DispatcherBuilder { consumers.len(), config });

impl DispatcherBuilder {
    /// Adds a consumer registered by hand.
    pub fn consumer(mut self, consumer: impl Consumer) -> Self {
        self.consumers.push(Arc::new(consumer));
        self
    }

    /// Leaves out the consumers registered by attribute (only hand-registered ones run).
    pub fn without_registered(mut self) -> Self {
        self.registered = false;
        self
    }

    /// Runs only the named consumers (registered or by hand).
    pub fn only<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Registers a service that consumers reach with [`EventContext::service`].
    pub fn service<T: Send + Sync + 'static>(mut self, service: T) -> Self {
        self.services.insert(service);
        self
    }

    /// Registers a service the caller keeps a handle to.
    pub fn service_shared<T: Send + Sync + 'static>(mut self, service: Arc<T>) -> Self {
        self.services.insert_shared(service);
        self
    }

    /// Spreads the consumer `name` over `partitions` partitions (1 to [`MAX_PARTITIONS`]),
    /// overriding what its registration says (`#[projection(consumer = "...", partitions =
    /// 8)]`). See [the guide](crate::docs::consumers#partitioned-consumers).
    pub fn partitions(mut self, name: impl Into<String>, partitions: u32) -> Self {
        self.partitions.insert(name.into(), partitions);
        self
    }

    /// Sets batching, retries and leases.
    pub fn config(mut self, config: DispatchConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the dispatcher.
    pub fn build(self) -> Result<Arc<Dispatcher>, DispatchError> {
        let mut consumers = self.consumers;
        if self.registered {
            for registered in consumer::Registered::collect()? {
                consumers.push(Arc::new(registered));
            }
        }
        if let Some(only) = &self.only {
            consumers.retain(|c| only.contains(c.name()));
        }
        let mut names = HashSet::new();
        for consumer in &consumers {
            if consumer.name().contains(['[', ']']) {
                return Err(DispatchError::InvalidName {
                    consumer: consumer.name().to_owned(),
                });
            }
            if !names.insert(consumer.name().to_owned()) {
                return Err(DispatchError::DuplicateConsumer {
                    consumer: consumer.name().to_owned(),
                });
            }
            let partitions = self
                .partitions
                .get(consumer.name())
                .copied()
                .unwrap_or_else(|| consumer.partitions());
            if !(1..=MAX_PARTITIONS).contains(&partitions) {
                return Err(DispatchError::InvalidPartitions {
                    consumer: consumer.name().to_owned(),
                    partitions,
                });
            }
        }
        Ok(Arc::new(Dispatcher {
            bus: self.bus,
            store: self.store,
            consumers,
            services: self.services,
            config: self.config,
            owner: Uuid::new_v4(),
            wake: Notify::new(),
            running: tokio::sync::Mutex::new(()),
            dirty: AtomicBool::new(false),
            leases: health::Leases::default(),
            partitions: self.partitions,
            layouts: std::sync::Mutex::new(HashMap::new()),
            shares: std::sync::Mutex::new(HashMap::new()),
        }))
    }
}

/// Delivers the global log to consumers.
pub struct Dispatcher {
    pub(crate) bus: CommandBus,
    pub(crate) store: Arc<dyn ConsumerStore>,
    pub(crate) consumers: Vec<Arc<dyn Consumer>>,
    pub(crate) services: Services,
    pub(crate) config: DispatchConfig,
    /// This instance's identity for leases.
    pub(crate) owner: Uuid,
    wake: Notify,
    running: tokio::sync::Mutex<()>,
    dirty: AtomicBool,
    /// The leases this dispatcher took, for [`Dispatcher::health`].
    leases: health::Leases,
    /// Partition counts set on the builder, by consumer.
    partitions: HashMap<String, u32>,
    /// When this dispatcher last checked each consumer's stored partitioning.
    layouts: std::sync::Mutex<HashMap<String, Instant>>,
    /// What this dispatcher knows of each partitioned consumer's instances.
    shares: std::sync::Mutex<HashMap<String, partition::Share>>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field(
                "consumers",
                &self.consumers.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What a catch-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CatchUp {
    /// Events handled, over all consumers.
    pub handled: u64,
    /// Consumers skipped because another instance holds their lease.
    pub not_claimed: Vec<String>,
    /// Consumers that are parked.
    pub parked: Vec<String>,
    /// Consumers that stopped at an event because what they deliver to is
    /// [`Unavailable`]; they try it again on the next round.
    pub unavailable: Vec<String>,
    /// Consumers not run because the store holds checkpoints of another partition count
    /// ([`DispatchError::PartitionsChanged`], logged): they wait for a rebuild.
    pub refused: Vec<String>,
}

impl Dispatcher {
    /// Starts building a dispatcher whose process managers execute commands on `bus`, and whose
    /// checkpoints live in `store` (the store the bus appends to).
    pub fn builder(bus: &CommandBus, store: impl Shared<dyn ConsumerStore>) -> DispatcherBuilder {
        DispatcherBuilder {
            bus: bus.clone(),
            store: store.shared(),
            consumers: Vec::new(),
            registered: true,
            only: None,
            services: Services::default(),
            config: DispatchConfig::default(),
            partitions: HashMap::new(),
        }
    }

    /// Checks at start-up what would otherwise park a consumer at its first event: every
    /// parameter of every consumer function can be resolved (a `Dep<T>` needs `T` registered
    /// with the dispatcher or the bus). Returns every problem found.
    pub fn check(&self) -> Result<(), Vec<DispatchError>> {
        let problems: Vec<DispatchError> = self
            .consumers
            .iter()
            .flat_map(|consumer| {
                consumer
                    .parameters()
                    .into_iter()
                    .filter_map(move |(handler, parameter)| {
                        let (id, service) = parameter.service?;
                        let registered =
                            self.services.contains(id) || self.bus.engine().services.contains(id);
                        (!registered).then(|| DispatchError::Unresolved {
                            consumer: consumer.name().to_owned(),
                            handler,
                            source: crate::service::ResolveError::MissingService {
                                parameter: parameter.type_name,
                                service,
                            },
                        })
                    })
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The names of the consumers.
    pub fn consumer_names(&self) -> Vec<&str> {
        self.consumers.iter().map(|c| c.name()).collect()
    }

    fn consumer(&self, name: &str) -> Result<&Arc<dyn Consumer>, DispatchError> {
        self.consumers
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| DispatchError::UnknownConsumer {
                consumer: name.to_owned(),
            })
    }

    /// Brings every consumer up to the head of the log (inline mode: call it after commands,
    /// or let [`Dispatcher::dispatch_inline`] do so). A consumer that keeps failing is parked;
    /// the others carry on.
    pub async fn catch_up(&self) -> Result<CatchUp, DispatchError> {
        // Runs that would overlap (a process manager's command dispatching inline) fold into
        // the running one, which goes round again.
        let Ok(_guard) = self.running.try_lock() else {
            self.dirty.store(true, Ordering::SeqCst);
            return Ok(CatchUp::default());
        };
        let mut total = CatchUp::default();
        loop {
            self.dirty.store(false, Ordering::SeqCst);
            let mut round = CatchUp::default();
            for consumer in &self.consumers {
                match self.run_consumer(consumer, &mut round).await {
                    // This consumer waits for a rebuild; the others run on.
                    Err(error @ DispatchError::PartitionsChanged { .. }) => {
                        tracing::error!(%error, "consumer not run");
                        round.refused.push(consumer.name().to_owned());
                    }
                    other => other?,
                }
            }
            total.handled += round.handled;
            total.not_claimed = round.not_claimed;
            total.parked = round.parked;
            total.unavailable = round.unavailable;
            total.refused = round.refused;
            if !self.dirty.load(Ordering::SeqCst) {
                return Ok(total);
            }
        }
    }

    /// Where a consumer stands. For a partitioned consumer: the lowest checkpoint of its
    /// partitions, and the parked partition with the lowest position, if any (see
    /// [`Dispatcher::partition_states`] for each one).
    pub async fn state(&self, consumer: &str) -> Result<ConsumerState, DispatchError> {
        Ok(overall(&self.partition_states(consumer).await?))
    }

    /// Where each partition of a consumer stands (one entry, with no partition, for an
    /// unpartitioned consumer).
    pub async fn partition_states(
        &self,
        consumer: &str,
    ) -> Result<Vec<(Option<Partition>, ConsumerState)>, DispatchError> {
        let count = self.partitions_of(&**self.consumer(consumer)?);
        let mut states = Vec::new();
        for slot in Slot::all(consumer, count) {
            states.push((slot.partition, self.store.consumer_state(&slot.key).await?));
        }
        Ok(states)
    }

    /// Skips the event a parked consumer stopped at, recording `reason`, and lets it run on.
    /// For a partitioned consumer, the parked partition with the lowest position; call it
    /// again for the next.
    pub async fn skip_parked(&self, consumer: &str, reason: &str) -> Result<u64, DispatchError> {
        let count = self.partitions_of(&**self.consumer(consumer)?);
        let mut parked = None;
        for slot in Slot::all(consumer, count) {
            if let Some(p) = self.store.consumer_state(&slot.key).await?.parked
                && parked
                    .as_ref()
                    .is_none_or(|(_, q): &(String, u64)| p.position < *q)
            {
                parked = Some((slot.key, p.position));
            }
        }
        let (key, position) = parked.ok_or_else(|| DispatchError::NotParked {
            consumer: consumer.to_owned(),
        })?;
        self.store.skip(&key, position, reason).await?;
        tracing::warn!(consumer = key, position, reason, "skipped a poison event");
        Ok(position)
    }

    /// Lets a parked consumer (every parked partition of it) retry the event it stopped at.
    pub async fn unpark(&self, consumer: &str) -> Result<(), DispatchError> {
        let count = self.partitions_of(&**self.consumer(consumer)?);
        for slot in Slot::all(consumer, count) {
            self.store.unpark(&slot.key).await?;
        }
        Ok(())
    }

    /// Gives up this dispatcher's lease of `consumer`, so that another instance takes it at
    /// once rather than when it expires: what a [`Worker`] does when it shuts down, and what a
    /// short-lived process that caught a consumer up (an `ops rebuild`) does when done.
    pub async fn release(&self, consumer: &str) -> Result<(), DispatchError> {
        let consumer = Arc::clone(self.consumer(consumer)?);
        self.release_all(&*consumer).await
    }

    /// Resets a consumer to the start of the log (a projection's `reset` hook clears its read
    /// model in the same transaction) and replays everything, reporting progress per batch.
    ///
    /// A partitioned consumer is reset in all its partitions at once, and the checkpoints of
    /// any other partition count are deleted in the same transaction: this is how its count is
    /// changed. The partitions run side by side here, except those another instance holds,
    /// which it replays.
    pub async fn rebuild(
        &self,
        consumer: &str,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<Progress, DispatchError> {
        let consumer = Arc::clone(self.consumer(consumer)?);
        let _guard = self.running.lock().await;
        let name = consumer.name().to_owned();
        let count = self.partitions_of(&*consumer);
        let slots = Slot::all(&name, count);
        let (retire, _) = self.layout(&name, count).await?;
        struct Reset<'a>(&'a dyn Consumer);
        #[async_trait::async_trait]
        impl TxWork for Reset<'_> {
            async fn run(&self, tx: &mut ProjectionTx<'_>) -> Result<(), BoxError> {
                self.0.reset(tx).await
            }
        }
        let keys: Vec<String> = slots.iter().map(|s| s.key.clone()).collect();
        if let Err(source) = self.store.reset(&keys, &retire, &Reset(&*consumer)).await? {
            return Err(DispatchError::Reset {
                consumer: name,
                source,
            });
        }
        crate::sync::lock(&self.layouts).insert(name.clone(), Instant::now());
        let started = Instant::now();
        let head = self.store.head_position().await?;
        let mut done_progress = Progress {
            done: 0,
            total: head,
            rate: 0.0,
        };
        let mut round = CatchUp::default();
        let mut report = |position: u64| {
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            done_progress = Progress {
                done: position,
                total: head.max(position),
                rate: position as f64 / elapsed,
            };
            progress(done_progress);
        };
        self.run_slots(&consumer, &slots, &mut round, &mut report)
            .await?;
        Ok(done_progress)
    }
}

/// A consumer's state from its partitions': the lowest checkpoint, and the parked partition
/// with the lowest position.
fn overall(states: &[(Option<Partition>, ConsumerState)]) -> ConsumerState {
    let position = states.iter().map(|(_, s)| s.position).min().unwrap_or(0);
    let parked = states
        .iter()
        .filter_map(|(_, s)| s.parked.clone())
        .min_by_key(|p| p.position);
    ConsumerState { position, parked }
}
