//! Loading and saving aggregates.
//!
//! A [`Repository`] replays an aggregate's stream (from a snapshot, if any) and appends the
//! events raised on it with the version it was loaded at. Inside a command handler its saves
//! are staged and committed with the command; given to a consumer it only loads; made with
//! [`Repository::new`] it appends at once. Guide: [aggregates](crate::docs::aggregates).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tracing::Instrument;
use uuid::Uuid;

use crate::aggregate::{Aggregate, AggregateRoot, snapshot};
use crate::codec::{DecodeContext, EncodeContext, Reference, Resolved};
use crate::engine::{CacheUpdate, Engine, UnitOfWork};
use crate::event::{EventError, EventRegistry, Metadata};
use crate::personal::reference::REFERENCE_KEY;
use crate::store::{
    Commit, EventStore, NewEvent, Shared, Snapshot, StoreError, StreamAppend, StreamEvent,
    StreamPayload,
};
use crate::value::StreamId;
use crate::vault::PersonalVault;

fn decode_error(stream: &StreamId, event: &StreamEvent, source: EventError) -> StoreError {
    StoreError::Decode {
        stream: stream.clone(),
        version: event.stream_version,
        position: event.position,
        source: Box::new(source),
    }
}

/// Applies one stored event to `root`: straight from its text when its schema is current and
/// it has no personal fields, else parsed, upcast and decoded with the page's personal values.
fn apply_stored<A: Aggregate>(
    root: &mut AggregateRoot<A>,
    stream: &StreamId,
    mut event: StreamEvent,
    cx: &mut DecodeContext<'_>,
) -> Result<(), StoreError> {
    let registry = EventRegistry::global();
    // The payload moves on; the event keeps what error messages need.
    let payload = match std::mem::replace(
        &mut event.payload,
        StreamPayload::Json(serde_json::Value::Null),
    ) {
        StreamPayload::Text(text) => {
            if registry.is_current(&event.event_name, event.schema_version)
                && root.apply_recorded_text(event.stream_version, &event.event_name, &text)
            {
                return Ok(());
            }
            serde_json::from_str(&text).map_err(|source| malformed(stream, &event, source))?
        }
        StreamPayload::Json(payload) => payload,
    };
    let payload = registry
        .upcast(&event.event_name, event.schema_version, payload)
        .map_err(|source| decode_error(stream, &event, source))?;
    root.apply_recorded(event.stream_version, &event.event_name, payload, cx)
        .map_err(|source| decode_error(stream, &event, source))
}

/// A payload that is not JSON, from a store that did not check it.
fn malformed(stream: &StreamId, event: &StreamEvent, source: serde_json::Error) -> StoreError {
    let source = EventError::Malformed {
        name: event.event_name.clone(),
        field: "*".to_owned(),
        source,
    };
    decode_error(stream, event, source)
}

/// What one load has read of personal data.
struct PersonalReads {
    /// Whether the loaded state is cached, and so needs the erasure epoch it was read at.
    caching: bool,
    /// Whether personal values were read.
    read: bool,
    /// The erasure epoch read before the first value was, for a cached state.
    epoch: Option<u64>,
}

/// Events read per page when an aggregate is loaded: a few megabytes of rows at most, and
/// few enough round trips that a load of a typical stream is one query.
const LOAD_PAGE: usize = 4_096;

/// Loads aggregates from their events and saves the events they raise.
///
/// As a handler parameter it belongs to the command being executed: `save` stages the events,
/// and the bus appends them together with the command's log entry once the handler returns.
/// Built by hand with [`Repository::new`], `save` appends at once.
pub struct Repository<A> {
    engine: Arc<Engine>,
    uow: Option<Arc<UnitOfWork>>,
    read_only: bool,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
            uow: self.uow.clone(),
            read_only: self.read_only,
            _aggregate: PhantomData,
        }
    }
}

impl<A> fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("in_command", &self.uow.is_some())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store` whose saves append immediately.
    pub fn new(store: impl Shared<dyn EventStore>) -> Self {
        Self::standalone(Arc::new(Engine::bare(store.shared(), None)))
    }

    /// A repository over `store` whose events' personal fields go through `vault`.
    pub fn with_personal_data(
        store: impl Shared<dyn EventStore>,
        vault: impl Shared<PersonalVault>,
    ) -> Self {
        Self::standalone(Arc::new(Engine::bare(store.shared(), Some(vault.shared()))))
    }

    pub(crate) fn standalone(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            uow: None,
            read_only: false,
            _aggregate: PhantomData,
        }
    }

    /// A repository that loads but refuses to save ([`StoreError::ReadOnly`]): a consumer's.
    pub(crate) fn read_only(engine: Arc<Engine>) -> Self {
        Self {
            read_only: true,
            ..Self::standalone(engine)
        }
    }

    pub(crate) fn in_unit_of_work(engine: Arc<Engine>, uow: Arc<UnitOfWork>) -> Self {
        Self {
            engine,
            uow: Some(uow),
            read_only: false,
            _aggregate: PhantomData,
        }
    }

    /// Loads the aggregate with `id` from its snapshot (if any) and its events; an id with no
    /// events gives a new aggregate at version 0.
    ///
    /// Replaying events never triggers a listener.
    pub async fn load(&self, id: &A::Id) -> Result<AggregateRoot<A>, StoreError> {
        let loaded = self.load_inner(id).await;
        self.note(loaded)
    }

    /// In a command, notes a failure for the bus, which reports it as what it is (a conflict,
    /// invalid input, a failing store), whatever the handler makes of it.
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let (Err(error), Some(uow)) = (&result, &self.uow) {
            uow.failed(error);
        }
        result
    }

    async fn load_inner(&self, id: &A::Id) -> Result<AggregateRoot<A>, StoreError> {
        let mut root = AggregateRoot::<A>::new(id.clone());
        let stream = root.stream_id().clone();
        let span = tracing::debug_span!(
            "load",
            otel.name = %format_args!("load {}", A::NAME),
            otel.kind = "internal",
            eventsourcery.aggregate.name = A::NAME,
            eventsourcery.stream.id = %stream,
        );
        async {
            let store = &self.engine.store;
            if A::CACHED
                && let Some(uow) = &self.uow
                && let Some(cached) = self.engine.cache.get::<A>(&stream)
            {
                let current = match cached.personal {
                    None => true,
                    // Decrypted values are served only if no erasure happened since, in any
                    // process sharing the key store.
                    Some(epoch) => {
                        self.engine.erasure_epoch().await.map_err(|source| {
                            StoreError::Personal {
                                stream: stream.clone(),
                                source,
                            }
                        })? == epoch
                    }
                };
                if current {
                    uow.loaded_from_cache(stream.clone(), cached.personal);
                    return Ok(AggregateRoot::from_state(
                        id.clone(),
                        cached.version,
                        cached.state,
                    ));
                }
                self.engine.cache.remove([&stream]);
            }
            let mut personal = PersonalReads {
                caching: A::CACHED && self.uow.is_some(),
                read: false,
                epoch: None,
            };
            if A::SNAPSHOT_EVERY.is_some()
                && let Some(stored) = store.load_snapshot(&stream).await?
                && stored.snapshot_version == A::SNAPSHOT_VERSION
                && let Some((state, references)) = snapshot::references(stored.state, A::handles)
            {
                // The snapshot's personal values, by reference: resolved in one round trip,
                // as a page of events is.
                let resolved = self.resolve(&stream, &references, &mut personal).await?;
                match snapshot::decode(resolved, A::handles, || A::from_snapshot(state)) {
                    Some(state) => {
                        root = AggregateRoot::from_state(id.clone(), stored.stream_version, state);
                    }
                    // Its shape changed without a new version, or it was tampered with: the
                    // events say what the state is.
                    None => tracing::warn!(
                        stream = %stream,
                        "the snapshot does not decode; the stream is replayed instead"
                    ),
                }
            }
            let mut replayed = 0;
            // Page by page, applied as read: memory does not grow with the stream's length.
            loop {
                let mut events = store
                    .load_stream_page(&stream, root.version(), LOAD_PAGE)
                    .await?;
                let last_page = events.len() < LOAD_PAGE;
                replayed += events.len() as u64;
                // A payload holding personal references is parsed now; the others stay text,
                // and decode straight into their event types below.
                for event in &mut events {
                    // An escaped key (`\u0024personal`) is unescaped by parsing.
                    if let StreamPayload::Text(text) = &event.payload
                        && (text.contains(REFERENCE_KEY) || text.contains("\\u"))
                    {
                        let parsed = serde_json::from_str(text)
                            .map_err(|source| malformed(&stream, event, source))?;
                        event.payload = StreamPayload::Json(parsed);
                    }
                }
                // References are read from the payloads as stored, so that each is checked
                // against the field it was written for, whatever upcasters do afterwards. One
                // round trip per page and store resolves them.
                let references =
                    crate::codec::references(events.iter().filter_map(|e| match &e.payload {
                        StreamPayload::Json(payload) => Some((e.event_name.as_str(), payload)),
                        _ => None,
                    }));
                let resolved = self.resolve(&stream, &references, &mut personal).await?;
                let mut cx = DecodeContext::with(&resolved);
                for event in events {
                    apply_stored(&mut root, &stream, event, &mut cx)?;
                }
                if last_page {
                    break;
                }
            }
            // A state holding a personal value that has no reference (made by the aggregate
            // itself) does not serialize, and is not snapshotted.
            if let Some(every) = A::SNAPSHOT_EVERY
                && replayed >= every
                && let Some(state) = snapshot::encode(|| root.state().to_snapshot())
            {
                store
                    .save_snapshot(Snapshot {
                        stream_id: stream.clone(),
                        stream_version: root.version(),
                        snapshot_version: A::SNAPSHOT_VERSION,
                        state,
                    })
                    .await?;
            }
            if A::CACHED
                && let Some(uow) = &self.uow
                && let Some(copy) = root.state().cached_clone()
            {
                if let Some(epoch) = personal.epoch {
                    uow.loaded_personal(stream.clone(), epoch);
                }
                self.engine
                    .cache
                    .put(stream, root.version(), personal.epoch, Box::new(copy));
            }
            Ok(root)
        }
        .instrument(span)
        .await
    }

    /// Resolves the personal values of a snapshot or a page of events, in one round trip per
    /// store. Before the first values of a load are read, the command is told that it read
    /// personal data, and a cached aggregate reads the erasure epoch, so that an erasure after
    /// it makes the cached copy stale.
    async fn resolve(
        &self,
        stream: &StreamId,
        references: &[Reference],
        personal: &mut PersonalReads,
    ) -> Result<Resolved, StoreError> {
        let vault_error = |source| StoreError::Personal {
            stream: stream.clone(),
            source,
        };
        if !references.is_empty() && !personal.read {
            personal.read = true;
            if let Some(uow) = &self.uow {
                uow.read_personal();
            }
            if personal.caching {
                personal.epoch = Some(self.engine.erasure_epoch().await.map_err(vault_error)?);
            }
        }
        self.engine
            .resolve_personal(references)
            .await
            .map_err(vault_error)
    }

    /// Saves the events raised on `root` since it was loaded.
    ///
    /// Inside a command handler the events are staged and appended when the handler returns;
    /// a repository made with [`Repository::new`] appends at once, failing with
    /// [`StoreError::Conflict`] if the stream moved on since `root` was loaded.
    pub async fn save(&self, root: &mut AggregateRoot<A>) -> Result<(), StoreError> {
        let saved = self.save_inner(root).await;
        self.note(saved)
    }

    async fn save_inner(&self, root: &mut AggregateRoot<A>) -> Result<(), StoreError> {
        if root.pending_len() == 0 {
            return Ok(());
        }
        if self.read_only {
            return Err(StoreError::ReadOnly {
                stream: root.stream_id().clone(),
            });
        }
        let expected_version = root.version();
        let metadata = self
            .uow
            .as_ref()
            .map_or_else(Metadata::default, |uow| uow.metadata.clone());
        let pending = root.take_pending();
        let mut cx = EncodeContext::new();
        let mut events = Vec::with_capacity(pending.len());
        for event in pending {
            events.push(NewEvent {
                event_id: Uuid::now_v7(),
                event_name: event.name().to_owned(),
                schema_version: event.version(),
                payload: event.encode(&mut cx)?,
                metadata: metadata.clone(),
            });
        }
        let append = StreamAppend {
            stream_id: root.stream_id().clone(),
            expected_version,
            events,
        };
        match &self.uow {
            Some(uow) => {
                uow.stage(append, cx)?;
                if A::CACHED
                    && let Some(copy) = root.state().cached_clone()
                {
                    uow.cache_after_commit(CacheUpdate {
                        stream: root.stream_id().clone(),
                        version: root.version(),
                        personal: uow.personal_epoch(root.stream_id()),
                        state: Box::new(copy),
                    });
                }
                Ok(())
            }
            None => {
                let values = cx.references();
                self.engine
                    .store_personal(cx)
                    .await
                    .map_err(|source| StoreError::Personal {
                        stream: append.stream_id.clone(),
                        source,
                    })?;
                let appended = self
                    .engine
                    .store
                    .append(Commit {
                        streams: vec![append],
                        command: None,
                    })
                    .await;
                match appended {
                    Ok(_) => Ok(()),
                    Err(error) => {
                        if error.is_conflict() {
                            // Nothing will refer to the values written for these events.
                            self.engine.discard_personal(&values).await;
                        }
                        Err(error)
                    }
                }
            }
        }
    }
}
