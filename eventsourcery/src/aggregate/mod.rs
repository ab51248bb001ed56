//! Aggregates: consistency boundaries rebuilt from their events.
//!
//! An aggregate is a state struct deriving [`Aggregate`](macro@Aggregate), changed only by the
//! events it lists, each through an [`Apply`] impl; an [`AggregateRoot`] adds the id, the version
//! it was loaded at and the events raised since, which [`Repository::save`](crate::Repository::save)
//! appends with that version so that a concurrent writer is caught. The module is here, below the
//! stores, so that the state and its replay know nothing of where events are kept. Guide:
//! [aggregates](crate::docs::aggregates).

use std::fmt;
use std::ops::Deref;

pub mod snapshot;

use serde_json::Value;

use crate::codec::{DecodeContext, EncodeContext};
use crate::event::{DomainEvent, EventError};
use crate::value::{SerializableValue, StreamId};

/// Derives [`Aggregate`] from `#[aggregate(id = T, events(E1, E2, ...))]`.
pub use eventsourcery_derive::Aggregate;

/// An aggregate's state, derived with
/// `#[derive(Aggregate)] #[aggregate(id = VoucherId, events(VoucherIssued, VoucherRedeemed))]`.
///
/// The derive generates the dispatch from a recorded event to the matching [`Apply`] impl.
/// State starts as `Default::default()` and is changed only by applying events. Work with an
/// aggregate through an [`AggregateRoot`], which adds the id, the version and pending events.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "add `#[derive(Aggregate, Default)]` and `#[aggregate(id = ..., events(...))]` to `{Self}`"
)]
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The id type of this aggregate.
    type Id: SerializableValue;

    /// The stream name prefix (`#[aggregate(name = "...")]`, by default the type name in
    /// snake case).
    const NAME: &'static str;

    /// Snapshot every this many events (`#[aggregate(snapshot(every = N, version = V))]`);
    /// `None` when the aggregate takes no snapshots.
    const SNAPSHOT_EVERY: Option<u64> = None;

    /// The snapshot schema version; snapshots of another version are ignored.
    const SNAPSHOT_VERSION: u32 = 1;

    /// Whether a stored event named `name` belongs to this aggregate.
    fn handles(name: &str) -> bool;

    /// Decodes a recorded event (already upcast) and applies it.
    fn apply_stored(
        &mut self,
        name: &str,
        payload: Value,
        cx: &mut DecodeContext<'_>,
    ) -> Result<(), EventError>;

    /// Decodes a recorded event of the current schema version, without personal fields,
    /// straight from its stored JSON text and applies it; `false`, changing nothing, when it
    /// cannot (the caller then goes through [`apply_stored`](Self::apply_stored)). Generated
    /// by the derive.
    #[doc(hidden)]
    fn apply_stored_text(&mut self, _name: &str, _payload: &str) -> bool {
        false
    }

    /// Whether the aggregate is cached between commands (`#[aggregate(cache)]`).
    const CACHED: bool = false;

    /// A copy of the state for the aggregate cache (`#[aggregate(cache)]`, which needs
    /// `Clone`); `None` when the aggregate is not cached.
    ///
    /// A cached aggregate is loaded inside commands without reading its stream: the append's
    /// concurrency check validates the cached version, and a conflict (or a rejection) retries
    /// the command against fresh state.
    fn cached_clone(&self) -> Option<Self> {
        None
    }

    /// The state as a snapshot, if this aggregate takes snapshots.
    fn to_snapshot(&self) -> Option<Value> {
        None
    }

    /// The state from a snapshot; `None` if it does not fit (the snapshot is then ignored).
    fn from_snapshot(_state: Value) -> Option<Self> {
        None
    }
}

/// How an aggregate changes when an event is applied. One impl per event the aggregate lists.
#[diagnostic::on_unimplemented(
    message = "`{Self}` lists `{E}` in `#[aggregate(events(...))]` but does not apply it",
    label = "missing `impl Apply<{E}> for {Self}`",
    note = "add `impl eventsourcery::Apply<{E}> for {Self} {{ fn apply(&mut self, event: &{E}) {{ ... }} }}`"
)]
pub trait Apply<E> {
    /// Changes the state to reflect `event`. Must not fail: the event already happened.
    fn apply(&mut self, event: &E);
}

/// An event that aggregate `A` lists in `#[aggregate(events(...))]`: one it can raise, and
/// replay once saved. `#[derive(Aggregate)]` implements it for each listed event, through the
/// event's [`Apply`] impl; it is not meant to be implemented by hand.
///
/// [`AggregateRoot::raise`] takes any `E: EventOf<A>`: an event that the aggregate does not
/// list would be saved but could not be replayed, so raising one does not compile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event of aggregate `{A}`",
    label = "`{A}` does not list this event",
    note = "list it in `#[aggregate(events(..., {Self}))]` on `{A}` and implement `Apply<{Self}>` for `{A}`: an event that is not listed could be saved but not replayed"
)]
pub trait EventOf<A> {
    /// Applies this event to the aggregate's state.
    fn apply_to(&self, state: &mut A);
}

/// A type-erased event waiting to be saved.
pub(crate) trait PendingEvent: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    fn encode(&self, cx: &mut EncodeContext) -> Result<Value, EventError>;
}

impl<E: DomainEvent> PendingEvent for E {
    fn name(&self) -> &'static str {
        self.event_name()
    }
    fn version(&self) -> u32 {
        self.event_version()
    }
    fn encode(&self, cx: &mut EncodeContext) -> Result<Value, EventError> {
        DomainEvent::encode(self, cx)
    }
}

/// An aggregate instance: its id, its state, the version it was loaded at, and the events
/// raised since then.
pub struct AggregateRoot<A: Aggregate> {
    id: A::Id,
    stream_id: StreamId,
    version: u64,
    state: A,
    pending: Vec<Box<dyn PendingEvent>>,
}

impl<A: Aggregate> AggregateRoot<A> {
    /// A new aggregate with no history.
    pub fn new(id: A::Id) -> Self {
        Self::from_state(id, 0, A::default())
    }

    pub(crate) fn from_state(id: A::Id, version: u64, state: A) -> Self {
        let stream_id = StreamId::for_aggregate(A::NAME, &id);
        Self {
            id,
            stream_id,
            version,
            state,
            pending: Vec::new(),
        }
    }

    /// The aggregate's id.
    pub fn id(&self) -> &A::Id {
        &self.id
    }

    /// The id of its event stream.
    pub fn stream_id(&self) -> &StreamId {
        &self.stream_id
    }

    /// The stream version it was loaded (or last saved) at; 0 for a new aggregate.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The version it will have once its pending events are saved.
    pub fn next_version(&self) -> u64 {
        self.version + self.pending.len() as u64
    }

    /// Whether it has never recorded an event and raised none.
    pub fn is_new(&self) -> bool {
        self.next_version() == 0
    }

    /// The current state, including raised events.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Applies `event` to the state and records it, to be appended on save.
    pub fn raise<E>(&mut self, event: E)
    where
        // On the event, not `A: Apply<E>`: with that, rustc infers `E` from an aggregate's only
        // `Apply` impl before it looks at the argument, and a missing impl reads as "mismatched
        // types" on the argument, before the derive's own error.
        E: DomainEvent + EventOf<A>,
    {
        event.apply_to(&mut self.state);
        self.pending.push(Box::new(event));
    }

    /// How many events were raised and not yet saved.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The names of the events raised and not yet saved.
    pub fn pending_names(&self) -> Vec<&'static str> {
        self.pending.iter().map(|e| e.name()).collect()
    }

    /// Takes the pending events (the flush), leaving the version at the saved version.
    pub(crate) fn take_pending(&mut self) -> Vec<Box<dyn PendingEvent>> {
        let pending = std::mem::take(&mut self.pending);
        self.version += pending.len() as u64;
        pending
    }

    /// Applies a recorded event straight from its text, if it can (see
    /// [`Aggregate::apply_stored_text`]).
    pub(crate) fn apply_recorded_text(&mut self, version: u64, name: &str, payload: &str) -> bool {
        let applied = self.state.apply_stored_text(name, payload);
        if applied {
            self.version = version;
        }
        applied
    }

    pub(crate) fn apply_recorded(
        &mut self,
        version: u64,
        name: &str,
        payload: Value,
        cx: &mut DecodeContext<'_>,
    ) -> Result<(), EventError> {
        self.state.apply_stored(name, payload, cx)?;
        self.version = version;
        Ok(())
    }
}

impl<A: Aggregate> Deref for AggregateRoot<A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.state
    }
}

impl<A: Aggregate + fmt::Debug> fmt::Debug for AggregateRoot<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateRoot")
            .field("stream_id", &self.stream_id)
            .field("version", &self.version)
            .field("state", &self.state)
            .field("pending", &self.pending_names())
            .finish()
    }
}
