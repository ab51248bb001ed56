//! The command bus: finds a command's handler, resolves its parameters, commits its events and
//! log entry atomically, and retries it against fresh state after a concurrency conflict.
//!
//! A [`CommandBus`] is built with a [`CommandBusBuilder`] (the event store, the vault, services,
//! retries, the aggregate cache) and collects every `#[eventsourcery::handler]` of the program;
//! [`CommandBus::check`] finds at start-up what the first command would fail on. It knows
//! nothing of dispatch: a dispatcher hears of commits through a hook the bus offers. Guide:
//! [commands and handlers](crate::docs::commands_and_handlers).

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::Instrument;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::cache::DEFAULT_CAPACITY;
use crate::codec::EncodeContext;
use crate::command::{
    BoxError, Command, CommandError, CommandReceipt, CommandRegistration, HandlerFailure,
    HandlerRegistration,
};
use crate::engine::{CommitHook, Engine, UnitOfWork};
use crate::erasure::{EraseError, SubjectErased};
use crate::event::DomainEvent;
use crate::event::{EventRegistry, Metadata, RegistryError};
use crate::personal::PersonalError;
use crate::personal::PersonalKey;
use crate::repository::Repository;
use crate::service::{CommandContext, ResolveError, Services};
use crate::store::{
    CommandOutcome, CommandRecord, Commit, EventStore, NewEvent, Shared, StoreError, StreamAppend,
};
use crate::value::StreamId;
use crate::vault::PersonalVault;

mod options;
pub use options::ExecuteOptions;

/// How many times a command is attempted before a conflict is reported, by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Builds a [`CommandBus`].
pub struct CommandBusBuilder {
    store: Arc<dyn EventStore>,
    cache_capacity: usize,
    vault: Option<Arc<PersonalVault>>,
    services: Services,
    max_attempts: u32,
    without_handler: HashSet<TypeId>,
}

crate::redact::debug_fields!(CommandBusBuilder {
    services,
    max_attempts
});

impl CommandBusBuilder {
    /// Registers a service that handlers take as `Dep<T>`.
    pub fn service<T: Send + Sync + 'static>(mut self, service: T) -> Self {
        self.services.insert(service);
        self
    }

    /// Routes personal fields of events and commands through `vault`: a vault, or an
    /// `Arc<PersonalVault>` shared with other parts of the program (erasure requests, exports).
    /// Without one, saving or loading an event with personal fields fails with
    /// [`PersonalError::NoVault`].
    pub fn personal_data(mut self, vault: impl Shared<PersonalVault>) -> Self {
        self.vault = Some(vault.shared());
        self
    }

    /// Registers a service the caller keeps a handle to.
    pub fn service_shared<T: Send + Sync + 'static>(mut self, service: Arc<T>) -> Self {
        self.services.insert_shared(service);
        self
    }

    /// Declares that this bus has no handler for `C` on purpose (another program handles it),
    /// so that [`CommandBus::check`] does not report it.
    pub fn without_handler<C: Command>(mut self) -> Self {
        self.without_handler.insert(TypeId::of::<C>());
        self
    }

    /// The services registered so far.
    pub fn services_mut(&mut self) -> &mut Services {
        &mut self.services
    }

    /// How many `#[aggregate(cache)]` aggregates to keep between commands (default 10,000;
    /// 0 turns the cache off).
    pub fn cache_capacity(mut self, aggregates: usize) -> Self {
        self.cache_capacity = aggregates;
        self
    }

    /// How many times a command is attempted before a conflict is reported (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Builds the bus, collecting every `#[eventsourcery::handler]` of the program.
    ///
    /// Fails if two event types claim one name or two handlers handle one command.
    pub fn build(self) -> Result<CommandBus, RegistryError> {
        EventRegistry::global().check()?;
        let mut handlers: HashMap<TypeId, &'static HandlerRegistration> = HashMap::new();
        for registration in inventory::iter::<HandlerRegistration> {
            if let Some(first) = handlers.insert((registration.command)(), registration) {
                return Err(RegistryError::DuplicateHandler {
                    command: registration.command_name,
                    first: first.handler,
                    second: registration.handler,
                });
            }
        }
        Ok(CommandBus {
            engine: Arc::new(Engine::new(
                self.store,
                self.services,
                self.vault,
                self.cache_capacity,
            )),
            handlers: Arc::new(handlers),
            max_attempts: self.max_attempts,
            without_handler: Arc::new(self.without_handler),
        })
    }
}

/// Executes commands: one handler per command type, atomic commits, bounded retries.
///
/// Cheap to clone; clones share the store and services.
#[derive(Clone)]
pub struct CommandBus {
    engine: Arc<Engine>,
    handlers: Arc<HashMap<TypeId, &'static HandlerRegistration>>,
    max_attempts: u32,
    without_handler: Arc<HashSet<TypeId>>,
}

impl fmt::Debug for CommandBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandBus")
            .field("handlers", &self.handlers.len())
            .field("services", &self.engine.services)
            .finish_non_exhaustive()
    }
}

impl CommandBus {
    /// Starts building a bus over `store`: a store, or an `Arc` of one shared with other parts
    /// of the program.
    pub fn builder(store: impl Shared<dyn EventStore>) -> CommandBusBuilder {
        CommandBusBuilder {
            store: store.shared(),
            cache_capacity: DEFAULT_CAPACITY,
            vault: None,
            services: Services::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            without_handler: HashSet::new(),
        }
    }

    /// The event store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.engine.store
    }

    /// The personal data vault, if configured.
    pub fn personal_data(&self) -> Option<&Arc<PersonalVault>> {
        self.engine.vault.as_ref()
    }

    /// A repository outside any command, for reading aggregates.
    pub fn repository<A: Aggregate>(&self) -> Repository<A> {
        Repository::standalone(Arc::clone(&self.engine))
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Tells `dispatcher` about every commit: inline (catch up before `execute` returns) or
    /// Tells `hook` about every commit (a dispatcher, in inline or worker mode).
    pub(crate) fn set_after_commit(&self, hook: Arc<dyn CommitHook>) {
        self.engine.set_after_commit(hook);
    }

    async fn committed(&self) {
        self.engine.committed().await;
    }

    /// Checks at start-up what would otherwise fail at the first command: every handler's
    /// parameters can be resolved ([`CommandError::Unresolved`]), and every command type of
    /// the program (each `#[derive(Command)]`) has a handler ([`CommandError::NoHandler`]),
    /// unless the builder was told it has none on purpose
    /// ([`without_handler`](CommandBusBuilder::without_handler)). Returns every problem found.
    pub fn check(&self) -> Result<(), Vec<CommandError>> {
        let mut problems = Vec::new();
        let mut commands: Vec<&CommandRegistration> = inventory::iter::<CommandRegistration>
            .into_iter()
            .filter(|c| {
                let id = (c.command)();
                !self.handlers.contains_key(&id) && !self.without_handler.contains(&id)
            })
            .collect();
        commands.sort_by_key(|c| c.name);
        problems.extend(
            commands
                .into_iter()
                .map(|c| CommandError::NoHandler { command: c.name }),
        );
        for registration in self.handlers.values() {
            for parameter in (registration.parameters)() {
                if let Some((id, service)) = parameter.service
                    && !self.engine.services.contains(id)
                {
                    problems.push(CommandError::Unresolved {
                        command: registration.command_name,
                        handler: registration.handler,
                        source: ResolveError::MissingService {
                            parameter: parameter.type_name,
                            service,
                        },
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Erases a data subject ([`PersonalVault::erase`]) and appends the PII-free fact of it,
    /// [`SubjectErased`], to the global log, once per erasure, so that listeners and
    /// projections that copied the subject's personal data forget it too (see
    /// [`crate::erasure`]).
    ///
    /// Idempotent: called again after a failure part-way, it finishes the erasure and appends
    /// the fact if it is not there yet; concurrent calls append it once.
    pub async fn erase(&self, subject: PersonalKey, reason: &str) -> Result<(), EraseError> {
        let vault = self.engine.vault.as_ref().ok_or(EraseError::NoVault)?;
        vault.erase(subject, reason).await?;
        let erasure = vault
            .key_store()
            .erasures(&[subject])
            .await?
            .into_iter()
            .next()
            .ok_or(PersonalError::SubjectErased { subject })?;
        let fact = SubjectErased {
            subject,
            erased_at: erasure.erased_at,
            reason: erasure.reason,
        };
        let stream = crate::erasure::stream_of(subject);
        let store = &self.engine.store;
        loop {
            let facts = store.read_stream(&stream, 0).await?;
            let recorded = facts.iter().any(|event| {
                event
                    .payload
                    .get("erased_at_ns")
                    .and_then(serde_json::Value::as_u64)
                    == Some(crate::erasure::nanos(fact.erased_at))
            });
            if recorded {
                return Ok(());
            }
            let payload = fact
                .encode(&mut EncodeContext::new())
                .map_err(|e| EraseError::Store(e.into()))?;
            let commit = Commit {
                streams: vec![StreamAppend {
                    stream_id: stream.clone(),
                    expected_version: facts.len() as u64,
                    events: vec![NewEvent {
                        event_id: Uuid::now_v7(),
                        event_name: fact.event_name().to_owned(),
                        schema_version: fact.event_version(),
                        payload,
                        metadata: Metadata::default(),
                    }],
                }],
                command: None,
            };
            match store.append(commit).await {
                Ok(_) => {
                    self.committed().await;
                    return Ok(());
                }
                // Another call appended first: read again.
                Err(error) if error.is_conflict() => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Executes `command` with a fresh correlation.
    pub async fn execute<C: Command>(&self, command: C) -> Result<CommandReceipt, CommandError> {
        self.execute_with(command, ExecuteOptions::default()).await
    }

    /// Executes `command` with the given correlation and causation.
    pub async fn execute_with<C: Command>(
        &self,
        command: C,
        options: ExecuteOptions,
    ) -> Result<CommandReceipt, CommandError> {
        let command_id = Uuid::now_v7();
        let correlation_id = options.correlation_id.unwrap_or(command_id);
        let causation_id = options.causation_id.unwrap_or(command_id);
        options
            .request
            .validate()
            .map_err(|source| CommandError::InvalidMetadata {
                command: C::NAME,
                source,
            })?;
        let span =
            crate::telemetry::command_span(C::NAME, command_id, correlation_id, &options.request);
        let metadata = Metadata::for_command(command_id, correlation_id, causation_id)
            .with_request(options.request);
        let started = std::time::Instant::now();
        let result = self
            .run(command, command_id, correlation_id, metadata)
            .instrument(span.clone())
            .await;
        let (outcome, attempts) = match &result {
            Ok(receipt) => {
                crate::metrics::appended(receipt.events.len());
                ("ok", receipt.attempts)
            }
            Err(CommandError::Conflict { attempts, .. }) => ("conflict", *attempts),
            Err(error) => (error.kind().as_str(), 1),
        };
        span.record("eventsourcery.command.attempts", attempts);
        if result.is_err() {
            crate::telemetry::failed(&span, outcome);
        }
        for _ in 1..attempts {
            crate::metrics::retry(C::NAME);
        }
        crate::metrics::command(C::NAME, outcome, started.elapsed());
        result
    }

    /// Runs `command`, whose `metadata` holds `command_id` and `correlation_id`.
    async fn run<C: Command>(
        &self,
        command: C,
        command_id: Uuid,
        correlation_id: Uuid,
        metadata: Metadata,
    ) -> Result<CommandReceipt, CommandError> {
        let engine = &self.engine;
        let registration = *self
            .handlers
            .get(&TypeId::of::<C>())
            .ok_or(CommandError::NoHandler { command: C::NAME })?;
        let mut log_cx = EncodeContext::new();
        let payload = command
            .encode(&mut log_cx)
            .map_err(|source| CommandError::Invalid {
                command: C::NAME,
                source,
            })?;
        let carries_personal_data = log_cx.has_personal_data();
        // The command's personal values are stored once, with the first attempt's events (one
        // vault round trip per command), and always before a log entry refers to them.
        let mut log_personal = Some(log_cx);
        let record = |outcome| CommandRecord {
            command_id,
            name: C::NAME.to_owned(),
            payload: payload.clone(),
            metadata: metadata.clone(),
            outcome,
            recorded_at: SystemTime::now(),
        };

        for attempt in 1..=self.max_attempts {
            let uow = Arc::new(UnitOfWork::new(
                command_id,
                correlation_id,
                metadata.clone(),
            ));
            let cx = CommandContext {
                engine: Arc::clone(engine),
                uow: Arc::clone(&uow),
            };
            let result = (registration.call)(cx, Box::new(command.clone())).await;
            let staged = uow.take();
            match result {
                Err(HandlerFailure::Resolve(source)) => {
                    return Err(CommandError::Unresolved {
                        command: C::NAME,
                        handler: registration.handler,
                        source,
                    });
                }
                Err(HandlerFailure::Failed(source)) => {
                    if !staged.from_cache.is_empty() && attempt < self.max_attempts {
                        // The handler may have decided on a stale cached state: decide again on
                        // fresh state before reporting the rejection.
                        engine.cache.remove(&staged.from_cache);
                        continue;
                    }
                    // A repository call of the handler failed, or the handler returned a store
                    // error of its own: the machinery, not the domain, whatever the handler
                    // made of it.
                    let rejection = match staged.failure {
                        Some(failure) => Err(failure),
                        None => store_error(source).map_or_else(Ok, Err),
                    };
                    let source = match rejection {
                        Ok(source) => source,
                        Err(failure) if failure.is_conflict() => {
                            if attempt < self.max_attempts {
                                backoff(attempt).await;
                            }
                            continue;
                        }
                        Err(failure) => return Err(CommandError::from_store(C::NAME, failure)),
                    };
                    // The log keeps a handler's message only if no personal value could be in it:
                    // a handler that writes "ann@example.com is already registered" must not
                    // put the address in the command table, where no erasure reaches.
                    let touched_personal_data = carries_personal_data
                        || staged.read_personal
                        || staged.encode.has_personal_data();
                    let error = match touched_personal_data {
                        true => crate::command::WITHHELD.to_owned(),
                        false => source.to_string(),
                    };
                    let outcome = CommandOutcome::Failed { error };
                    self.log_only(record(outcome), log_personal.take()).await;
                    return Err(CommandError::Rejected {
                        command: C::NAME,
                        source,
                    });
                }
                Ok(()) => {
                    // The events' values (not the log entry's) are deleted again if the
                    // append loses a race: a retry writes its own.
                    let attempt_values = staged.encode.references();
                    let mut cache_updates = staged.cache_updates;
                    // A state to cache that will hold the values about to be written needs an
                    // erasure epoch read before they are written: the one its load read (and, for
                    // a cached state, checked) if it held personal values already, else one
                    // read now. An erasure after that epoch makes the state stale.
                    if staged.encode.has_personal_data()
                        && cache_updates.iter().any(|u| u.personal.is_none())
                    {
                        let epoch = engine
                            .erasure_epoch()
                            .await
                            .map_err(|e| CommandError::from_personal(C::NAME, e))?;
                        for update in &mut cache_updates {
                            update.personal.get_or_insert(epoch);
                        }
                    }
                    let mut personal = staged.encode;
                    if let Some(log) = log_personal.take() {
                        personal.merge(log);
                    }
                    engine
                        .store_personal(personal)
                        .await
                        .map_err(|e| CommandError::from_personal(C::NAME, e))?;
                    let count = staged.streams.iter().map(|s| s.events.len() as u64).sum();
                    let touched: Vec<StreamId> =
                        staged.streams.iter().map(|s| s.stream_id.clone()).collect();
                    let commit = Commit {
                        streams: staged.streams,
                        command: Some(record(CommandOutcome::Succeeded { events: count })),
                    };
                    match engine.store.append(commit).await {
                        Ok(events) => {
                            tracing::debug!(attempt, events = events.len(), "command committed");
                            for update in cache_updates {
                                engine.cache.put(
                                    update.stream,
                                    update.version,
                                    update.personal,
                                    update.state,
                                );
                            }
                            if !events.is_empty() {
                                self.committed().await;
                            }
                            return Ok(CommandReceipt {
                                command_id,
                                correlation_id,
                                events,
                                attempts: attempt,
                            });
                        }
                        Err(error) if error.is_conflict() => {
                            tracing::debug!(attempt, %error, "retrying after conflict");
                            engine.discard_personal(&attempt_values).await;
                            engine
                                .cache
                                .remove(touched.iter().chain(&staged.from_cache));
                            if attempt < self.max_attempts {
                                backoff(attempt).await;
                            }
                        }
                        Err(error) => return Err(CommandError::from_store(C::NAME, error)),
                    }
                }
            }
        }
        let attempts = self.max_attempts;
        self.log_only(
            record(CommandOutcome::Conflicted { attempts }),
            log_personal.take(),
        )
        .await;
        Err(CommandError::Conflict {
            command: C::NAME,
            attempts,
        })
    }

    /// Logs a command that appended nothing, after storing its personal values if they are not
    /// stored yet. A failure to log is traced, not returned: the caller gets the command's own
    /// error.
    async fn log_only(&self, record: CommandRecord, personal: Option<EncodeContext>) {
        if let Some(personal) = personal
            && let Err(error) = self.engine.store_personal(personal).await
        {
            // The entry would refer to personal data that is not stored: leave it out.
            tracing::warn!(command_id = %record.command_id, %error, "could not log a failed command");
            return;
        }
        let commit = Commit {
            streams: Vec::new(),
            command: Some(record),
        };
        if let Err(error) = self.engine.store.append(commit).await {
            tracing::warn!(%error, "could not log a failed command");
        }
    }
}

/// The store error a handler returned as its own error (a `StoreError`, or
/// `eventsourcery::Error::Store`), or the error back if it is another.
fn store_error(source: BoxError) -> Result<StoreError, BoxError> {
    let source = match source.downcast::<StoreError>() {
        Ok(store) => return Ok(*store),
        Err(source) => source,
    };
    match source.downcast::<crate::command::Error>() {
        Ok(error) => match *error {
            crate::command::Error::Store(store) => Ok(store),
            other => Err(Box::new(other)),
        },
        Err(source) => Err(source),
    }
}

/// Waits a little before a retry: exponential with full jitter, capped at 50 ms.
async fn backoff(attempt: u32) {
    let cap_us = (500u64 << attempt.min(7)).min(50_000);
    let jitter = u64::from(Uuid::new_v4().as_u128() as u16) * cap_us / u64::from(u16::MAX);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}
