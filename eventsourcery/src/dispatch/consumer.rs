//! Consumers of the global log: listeners, process managers and projections.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::bus::{CommandBus, ExecuteOptions};
use crate::codec::DecodeContext;
use crate::codec::Resolved;
use crate::command::{BoxError, BoxFuture, Command, CommandError, CommandReceipt};
use crate::event::{DomainEvent, EventError, RequestMetadata};
use crate::repository::Repository;
use crate::service::{Dep, FromContext, Parameter, ResolveError, Services};
use crate::store::{ProjectionTx, RecordedEvent, StoreError};

use crate::store::ConsumerStore;
use crate::value::StreamId;

/// What kind of consumer, which decides its delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerKind {
    /// Side effects outside the store: at-least-once, with the event id as idempotency key.
    Listener,
    /// Reacts to events by executing commands: at-least-once; the commands carry the event's
    /// correlation id and the event id as causation id.
    ProcessManager,
    /// A read model in the store's own database: its update and its checkpoint commit in one
    /// transaction, so each event is applied exactly once. A projection only writes its read
    /// model: it must not execute commands (on SQLite that would wait for the write lock its
    /// own transaction holds); react with a process manager instead.
    Projection,
}

/// A recorded event on its way to consumers, with its personal data resolved.
///
/// Built by the dispatcher's batch preparation (`dispatch::run`), which fills every field.
pub struct Envelope {
    pub(crate) event: RecordedEvent,
    /// The payload upcast to the current schema version, references still unresolved.
    pub(crate) payload: Value,
    /// The payload as stored, kept only when upcasting changed it (otherwise `payload` is it).
    pub(crate) stored: Option<Value>,
    /// The personal values of the batch, decrypted or erased.
    pub(crate) resolved: Arc<Resolved>,
    /// Whether the stored event refers to personal values.
    pub(crate) personal: bool,
    /// The field each reference of the batch was stored in (before upcasting).
    pub(crate) bound: Arc<std::collections::HashMap<Uuid, String>>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("position", &self.event.position)
            .field("event_name", &self.event.event_name)
            .field("stream_id", &self.event.stream_id)
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// Whether the event refers to personal values (decrypted for the consumer, so its error
    /// messages are not kept).
    pub(crate) fn carries_personal_data(&self) -> bool {
        self.personal
    }

    /// The payload exactly as stored, at the event's stored schema version: personal fields
    /// are references, never values. What a publisher sends to other systems.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn stored_payload(&self) -> &Value {
        self.stored.as_ref().unwrap_or(&self.payload)
    }

    /// The event as stored (its payload holds references, not personal values).
    pub fn recorded(&self) -> &RecordedEvent {
        &self.event
    }

    /// The event's ids and position.
    pub fn meta(&self) -> EventMeta {
        EventMeta {
            event_id: self.event.event_id,
            event_name: self.event.event_name.clone(),
            stream_id: self.event.stream_id.clone(),
            stream_version: self.event.stream_version,
            position: self.event.position,
            correlation_id: self.event.metadata.correlation_id,
            causation_id: self.event.metadata.causation_id,
            command_id: self.event.metadata.command_id,
            request: self.event.metadata.request.clone(),
            recorded_at: self.event.recorded_at,
        }
    }

    /// The event as `E`, with personal fields decrypted (or erased); `None` if this event is
    /// not one of `E`'s.
    pub fn decode<E: DomainEvent>(&self) -> Result<Option<E>, EventError> {
        self.decode_with(E::handles, E::decode)
    }

    /// [`decode`](Self::decode) with `E`'s `handles` and `decode`.
    pub(crate) fn decode_with<E>(
        &self,
        handles: fn(&str) -> bool,
        decode: crate::__private::DecodeEvent<E>,
    ) -> Result<Option<E>, EventError> {
        if !handles(&self.event.event_name) {
            return Ok(None);
        }
        let mut cx = DecodeContext::with(&self.resolved);
        decode(&self.event.event_name, self.payload.clone(), &mut cx).map(Some)
    }
}

/// An event's ids and position, as a consumer parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventMeta {
    /// The event's id: the idempotency key of at-least-once consumers.
    pub event_id: Uuid,
    /// The stored event name.
    pub event_name: String,
    /// The stream.
    pub stream_id: StreamId,
    /// Its version in the stream.
    pub stream_version: u64,
    /// Its position in the global log.
    pub position: u64,
    /// The correlation id it carries.
    pub correlation_id: Option<Uuid>,
    /// What caused it.
    pub causation_id: Option<Uuid>,
    /// The command that recorded it.
    pub command_id: Option<Uuid>,
    /// What the application told about the request that led to it (actor, tenant, request
    /// id, trace context, other key/values).
    pub request: RequestMetadata,
    /// When it was recorded.
    pub recorded_at: SystemTime,
}

/// What the parameters of a listener, process manager or projection are resolved from: the
/// event being handled, the bus, the registered services and, in a projection, the transaction
/// of its batch.
pub struct EventContext<'a> {
    pub(crate) bus: &'a CommandBus,
    pub(crate) services: &'a Services,
    pub(crate) store: &'a Arc<dyn ConsumerStore>,
    pub(crate) consumer: &'a str,
    pub(crate) envelope: &'a Envelope,
    /// The transaction of a projection's batch.
    pub tx: ProjectionTx<'a>,
}

impl fmt::Debug for EventContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventContext")
            .field("envelope", &self.envelope)
            .field("tx", &self.tx)
            .finish_non_exhaustive()
    }
}

impl EventContext<'_> {
    /// The event being handled.
    pub fn envelope(&self) -> &Envelope {
        self.envelope
    }

    /// Commands caused by this event: they carry its correlation id, its id as causation,
    /// and its request metadata.
    pub fn commands(&self) -> Commands {
        let event = &self.envelope.event;
        Commands {
            bus: self.bus.clone(),
            options: ExecuteOptions::caused_by(
                event.metadata.correlation_id.unwrap_or(event.event_id),
                event.event_id,
            )
            .request(event.metadata.request.clone()),
        }
    }

    /// The idempotency helper for this event and consumer.
    pub fn once(&self) -> Once {
        Once {
            store: Arc::clone(self.store),
            consumer: self.consumer.to_owned(),
            event_id: self.envelope.event.event_id,
        }
    }

    /// A registered service.
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.services.get::<T>()
    }
}

/// Makes an at-least-once listener act once per event: the event id is its idempotency key,
/// recorded in the store's database once the action succeeds.
///
/// A crash between the action and the record repeats the action on redelivery, so an action
/// on an outside system should also pass [`EventMeta::event_id`] as that system's idempotency
/// key; a crash between handling and checkpointing (the common case: the checkpoint moves once
/// per batch) is absorbed here.
#[derive(Clone)]
pub struct Once {
    store: Arc<dyn ConsumerStore>,
    consumer: String,
    event_id: Uuid,
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("consumer", &self.consumer)
            .field("event_id", &self.event_id)
            .finish()
    }
}

impl Once {
    /// Runs `action` unless it already succeeded for this event; `None` if it had.
    pub async fn run<F, Fut, T, E>(&self, action: F) -> Result<Option<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: From<StoreError>,
    {
        if self
            .store
            .is_processed(&self.consumer, self.event_id)
            .await?
        {
            return Ok(None);
        }
        let value = action().await?;
        self.store
            .mark_processed(&self.consumer, self.event_id)
            .await?;
        Ok(Some(value))
    }
}

impl FromContext<EventContext<'_>> for Once {
    fn from_context(cx: &EventContext<'_>) -> Result<Self, ResolveError> {
        Ok(cx.once())
    }
}

/// The references of the personal values of the event being handled, as a consumer
/// parameter: what a read model stores instead of the values
/// ([`PersonalRef`](crate::personal::PersonalRef)), to resolve them when it is read, so that it
/// holds no plaintext at all.
///
/// ```
/// # use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};
/// # use eventsourcery::dispatch::ProjectionTx;
/// # use eventsourcery::dispatch::PersonalRefs;
/// # #[derive(PersonalData, Clone)] struct Email(String);
/// # #[derive(DomainEvent)] #[event(name = "doc_refs_candidate_registered", subject = candidate)]
/// # struct CandidateRegistered { candidate: PersonalKey, #[personal] email: Personal<Email> }
/// #[eventsourcery::projection(consumer = "candidate_emails")]
/// async fn candidates(
///     event: CandidateRegistered,
///     refs: PersonalRefs,
///     tx: &mut ProjectionTx<'_>,
/// ) -> Result<(), eventsourcery::Error> {
///     if let Some(email) = refs.get::<Email>("email") {
///         // store `email.to_string()` in the read model; `vault.resolve_refs` reads it back
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PersonalRefs {
    name: String,
    payload: Value,
    bound: Arc<std::collections::HashMap<Uuid, String>>,
}

impl PersonalRefs {
    /// The reference of the personal field `field` (its first value, for a list); `None` if
    /// the field is absent, erased or not personal.
    pub fn get<T: crate::personal::PersonalData>(
        &self,
        field: &str,
    ) -> Option<crate::personal::PersonalRef<T>> {
        self.all(field).into_iter().next()
    }

    /// The references of every value of the personal field `field`, in order.
    pub fn all<T: crate::personal::PersonalData>(
        &self,
        field: &str,
    ) -> Vec<crate::personal::PersonalRef<T>> {
        crate::personal::PersonalRef::in_payload(&self.name, field, &self.payload, |id| {
            self.bound.get(&id).cloned()
        })
    }
}

impl FromContext<EventContext<'_>> for PersonalRefs {
    fn from_context(cx: &EventContext<'_>) -> Result<Self, ResolveError> {
        Ok(Self {
            name: cx.envelope.event.event_name.clone(),
            payload: cx.envelope.payload.clone(),
            bound: Arc::clone(&cx.envelope.bound),
        })
    }
}

/// Executes commands on behalf of an event (a process manager's parameter).
#[derive(Debug, Clone)]
pub struct Commands {
    bus: CommandBus,
    options: ExecuteOptions,
}

impl Commands {
    /// Executes `command`, caused by the event being handled.
    pub async fn execute<C: Command>(&self, command: C) -> Result<CommandReceipt, CommandError> {
        self.bus.execute_with(command, self.options.clone()).await
    }
}

/// A consumer's error meaning "not now": the outside system it delivers to is unavailable (a
/// broker or a service that is down). A listener or process manager that fails with it is not
/// parked and the failure does not count against `max_attempts`: its checkpoint stays before
/// the event, its round ends, and the event is tried again on the next round (a worker's next
/// wake-up or poll), for as long as it takes. Any other error is retried with backoff, then
/// parks the consumer.
///
/// ```
/// use eventsourcery::dispatch::Unavailable;
///
/// let error: eventsourcery::error::BoxError =
///     Unavailable::new(std::io::Error::other("broker down")).into();
/// assert!(error.is::<Unavailable>());
/// assert_eq!(error.to_string(), "broker down");
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Unavailable(BoxError);

impl Unavailable {
    /// Wraps the error that says why.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}

/// A consumer of the global log. Usually registered with `#[eventsourcery::listener]`,
/// `#[eventsourcery::process_manager]` or `#[eventsourcery::projection]`; implement it by
/// hand for anything else.
#[async_trait::async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The consumer's name: the key of its checkpoint. Renaming it starts over.
    fn name(&self) -> &str;

    /// The kind, which decides the delivery guarantee.
    fn kind(&self) -> ConsumerKind;

    /// Whether it wants events named `event_name` (the others only advance its checkpoint).
    fn subscribes_to(&self, event_name: &str) -> bool;

    /// Whether it reads the personal values of the events it handles. A consumer that only
    /// forwards the stored payloads (the JetStream publisher of the `nats` feature) returns
    /// `false`: its batches are then delivered without reading the personal data stores, so
    /// its process decrypts nothing and needs neither a vault nor a master key, and
    /// [`Envelope::decode`] of an event with personal fields fails. The default is `true`.
    fn reads_personal_data(&self) -> bool {
        true
    }

    /// How many partitions its events are spread over (see
    /// [partitioned consumers](crate::docs::consumers#partitioned-consumers)); the default is 1,
    /// one checkpoint and one active instance.
    fn partitions(&self) -> u32 {
        1
    }

    /// Handles one event. An error is retried with backoff, then parks the consumer; an
    /// [`Unavailable`] error (from a listener or a process manager) is tried again on the
    /// next round instead, never parking it.
    async fn handle(&self, cx: &mut EventContext<'_>) -> Result<(), BoxError>;

    /// Clears a projection's read model before a rebuild (in the same transaction as the
    /// checkpoint reset). The default does nothing.
    async fn reset(&self, _tx: &mut ProjectionTx<'_>) -> Result<(), BoxError> {
        Ok(())
    }

    /// The parameters of its functions, by function, for [`Dispatcher::check`]. The default,
    /// for a consumer written by hand, is none.
    ///
    /// [`Dispatcher::check`]: crate::dispatch::Dispatcher::check
    fn parameters(&self) -> Vec<(&'static str, Parameter)> {
        Vec::new()
    }
}

/// One `#[listener]`, `#[process_manager]` or `#[projection]` function, submitted by the
/// attribute. Functions that name the same consumer make up one consumer.
#[derive(Debug)]
pub struct ConsumerRegistration {
    /// The consumer's name.
    pub consumer: &'static str,
    /// Its kind.
    pub kind: ConsumerKind,
    /// The function's path, for messages.
    pub handler: &'static str,
    /// The event names it handles.
    pub event_names: fn() -> Vec<&'static str>,
    /// Calls it.
    pub call: ConsumerFn,
    /// Its reset hook, for projections (`#[projection(reset = function)]`), if any.
    pub reset: Option<ResetFn>,
    /// What its parameters need from the service containers.
    pub parameters: fn() -> Vec<Parameter>,
    /// Its partition count (`partitions = N`; 1 when not given).
    pub partitions: u32,
}

/// The type-erased entry point of a consumer function.
pub(crate) type ConsumerFn =
    for<'a, 'b> fn(&'a mut EventContext<'b>) -> BoxFuture<'a, Result<(), BoxError>>;

/// The type-erased entry point of a projection's reset hook.
pub(crate) type ResetFn =
    for<'a, 'b> fn(&'a mut ProjectionTx<'b>) -> BoxFuture<'a, Result<(), BoxError>>;

impl FromContext<EventContext<'_>> for EventMeta {
    fn from_context(cx: &EventContext<'_>) -> Result<Self, ResolveError> {
        Ok(cx.envelope.meta())
    }
}

impl FromContext<EventContext<'_>> for Commands {
    fn from_context(cx: &EventContext<'_>) -> Result<Self, ResolveError> {
        Ok(cx.commands())
    }
}

/// A repository that loads aggregates (through the bus's cache and vault) and refuses to save:
/// what an event causes is a command, executed with [`Commands`].
impl<A: Aggregate> FromContext<EventContext<'_>> for Repository<A> {
    fn from_context(cx: &EventContext<'_>) -> Result<Self, ResolveError> {
        Ok(Repository::read_only(Arc::clone(cx.bus.engine())))
    }
}

impl<T: Send + Sync + 'static> FromContext<EventContext<'_>> for Dep<T> {
    /// The dispatcher's service, or else the bus's.
    fn from_context(cx: &EventContext<'_>) -> Result<Self, ResolveError> {
        Dep::from_services(&[cx.services, &cx.bus.engine().services])
    }

    fn parameter() -> Parameter {
        Dep::<T>::describe()
    }
}

inventory::collect!(ConsumerRegistration);

/// The consumer made of registered functions that share a name.
pub(crate) struct Registered {
    name: &'static str,
    kind: ConsumerKind,
    partitions: u32,
    handlers: Vec<(Vec<&'static str>, &'static ConsumerRegistration)>,
}

impl Registered {
    /// Every registered consumer of the program, grouped by name.
    pub(crate) fn collect() -> Result<Vec<Registered>, crate::dispatch::DispatchError> {
        let mut consumers: Vec<Registered> = Vec::new();
        for registration in inventory::iter::<ConsumerRegistration> {
            let names = (registration.event_names)();
            match consumers
                .iter_mut()
                .find(|c| c.name == registration.consumer)
            {
                Some(consumer) => {
                    if consumer.kind != registration.kind {
                        return Err(crate::dispatch::DispatchError::MixedKinds {
                            consumer: registration.consumer,
                        });
                    }
                    if consumer.partitions != registration.partitions {
                        return Err(crate::dispatch::DispatchError::MixedPartitions {
                            consumer: registration.consumer,
                        });
                    }
                    consumer.handlers.push((names, registration));
                }
                None => consumers.push(Registered {
                    name: registration.consumer,
                    kind: registration.kind,
                    partitions: registration.partitions,
                    handlers: vec![(names, registration)],
                }),
            }
        }
        Ok(consumers)
    }
}

#[async_trait::async_trait]
impl Consumer for Registered {
    fn name(&self) -> &str {
        self.name
    }

    fn kind(&self) -> ConsumerKind {
        self.kind
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn subscribes_to(&self, event_name: &str) -> bool {
        self.handlers
            .iter()
            .any(|(names, _)| names.contains(&event_name))
    }

    async fn handle(&self, cx: &mut EventContext<'_>) -> Result<(), BoxError> {
        let name = cx.envelope.recorded().event_name.clone();
        for (names, registration) in &self.handlers {
            if names.contains(&name.as_str()) {
                (registration.call)(cx).await?;
            }
        }
        Ok(())
    }

    fn parameters(&self) -> Vec<(&'static str, Parameter)> {
        self.handlers
            .iter()
            .flat_map(|(_, registration)| {
                (registration.parameters)()
                    .into_iter()
                    .map(|parameter| (registration.handler, parameter))
            })
            .collect()
    }

    async fn reset(&self, tx: &mut ProjectionTx<'_>) -> Result<(), BoxError> {
        for (_, registration) in &self.handlers {
            if let Some(reset) = registration.reset {
                reset(tx).await?;
            }
        }
        Ok(())
    }
}
