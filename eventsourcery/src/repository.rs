//! Loading and saving aggregates.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tracing::Instrument;
use uuid::Uuid;

use crate::aggregate::{Aggregate, AggregateRoot};
use crate::bus::{Engine, UnitOfWork};
use crate::event::{EventError, EventRegistry, Metadata};
use crate::personal::PersonalVault;
use crate::personal::{DecodeContext, EncodeContext};
use crate::store::{
    Commit, EventStore, NewEvent, RecordedEvent, Snapshot, StoreError, StreamAppend,
};

fn decode_error(event: &RecordedEvent, source: EventError) -> StoreError {
    StoreError::Decode {
        stream: event.stream_id.clone(),
        version: event.stream_version,
        position: event.position,
        source: Box::new(source),
    }
}

/// Loads aggregates from their events and saves the events they raise.
///
/// As a handler parameter it belongs to the command being executed: `save` stages the events,
/// and the bus appends them together with the command's log entry once the handler returns.
/// Built by hand with [`Repository::new`], `save` appends at once.
pub struct Repository<A> {
    engine: Arc<Engine>,
    uow: Option<Arc<UnitOfWork>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
            uow: self.uow.clone(),
            _aggregate: PhantomData,
        }
    }
}

impl<A> fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("in_command", &self.uow.is_some())
            .finish()
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store` whose saves append immediately.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self::standalone(Arc::new(Engine::bare(store, None)))
    }

    /// A repository over `store` whose events' personal fields go through `vault`.
    pub fn with_personal_data(store: Arc<dyn EventStore>, vault: Arc<PersonalVault>) -> Self {
        Self::standalone(Arc::new(Engine::bare(store, Some(vault))))
    }

    pub(crate) fn standalone(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            uow: None,
            _aggregate: PhantomData,
        }
    }

    pub(crate) fn in_unit_of_work(engine: Arc<Engine>, uow: Arc<UnitOfWork>) -> Self {
        Self {
            engine,
            uow: Some(uow),
            _aggregate: PhantomData,
        }
    }

    /// Loads the aggregate with `id` from its snapshot (if any) and its events; an id with no
    /// events gives a new aggregate at version 0.
    ///
    /// Replaying events never triggers a listener.
    pub async fn load(&self, id: &A::Id) -> Result<AggregateRoot<A>, StoreError> {
        let mut root = AggregateRoot::<A>::new(id.clone());
        let stream = root.stream_id().clone();
        let span = tracing::debug_span!("load", aggregate = A::NAME, stream = %stream);
        async {
            let store = &self.engine.store;
            if A::CACHED
                && let Some(uow) = &self.uow
                && let Some((version, state)) = self.engine.cache.get::<A>(&stream, uow.epoch)
            {
                uow.loaded_from_cache(stream.clone());
                return Ok(AggregateRoot::from_state(id.clone(), version, state));
            }
            if A::SNAPSHOT_EVERY.is_some()
                && let Some(snapshot) = store.load_snapshot(&stream).await?
                && snapshot.snapshot_version == A::SNAPSHOT_VERSION
                && let Some(state) = A::from_snapshot(snapshot.state)
            {
                root = AggregateRoot::from_state(id.clone(), snapshot.stream_version, state);
            }
            let from = root.version();
            let events = store.read_stream(&stream, from).await?;
            let registry = EventRegistry::global();
            let replayed = events.len() as u64;
            let mut upcast = Vec::with_capacity(events.len());
            for mut event in events {
                // The payload moves on; the event keeps what error messages need.
                let payload = std::mem::take(&mut event.payload);
                let payload = registry
                    .upcast(&event.event_name, event.schema_version, payload)
                    .map_err(|source| decode_error(&event, source))?;
                upcast.push((event, payload));
            }
            let resolved = self
                .engine
                .resolve_personal(upcast.iter().map(|(_, payload)| payload))
                .await
                .map_err(|source| {
                    let (event, _) = &upcast[0];
                    let name = event.event_name.clone();
                    let field = "*".to_owned();
                    decode_error(
                        event,
                        EventError::Personal {
                            name,
                            field,
                            source,
                        },
                    )
                })?;
            let mut cx = DecodeContext::with(&resolved);
            for (event, payload) in upcast {
                root.apply_recorded(event.stream_version, &event.event_name, payload, &mut cx)
                    .map_err(|source| decode_error(&event, source))?;
            }
            if let Some(every) = A::SNAPSHOT_EVERY
                && replayed >= every
                && let Some(state) = root.state().to_snapshot()
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
                self.engine
                    .cache
                    .put(stream, root.version(), uow.epoch, Box::new(copy));
            }
            Ok(root)
        }
        .instrument(span)
        .await
    }

    /// Saves the events raised on `root` since it was loaded.
    ///
    /// Inside a command handler the events are staged and appended when the handler returns;
    /// a repository made with [`Repository::new`] appends at once, failing with
    /// [`StoreError::Conflict`] if the stream moved on since `root` was loaded.
    pub async fn save(&self, root: &mut AggregateRoot<A>) -> Result<(), StoreError> {
        if root.pending_len() == 0 {
            return Ok(());
        }
        let expected_version = root.version();
        let metadata = self.uow.as_ref().map_or_else(Metadata::default, |uow| {
            Metadata::for_command(uow.command_id, uow.correlation_id, uow.causation_id)
        });
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
                    uow.cache_after_commit(
                        root.stream_id().clone(),
                        root.version(),
                        Box::new(copy),
                    );
                }
                Ok(())
            }
            None => {
                self.engine.store_personal(cx).await.map_err(|source| {
                    StoreError::from(EventError::Personal {
                        name: A::NAME.to_owned(),
                        field: "*".to_owned(),
                        source,
                    })
                })?;
                self.engine
                    .store
                    .append(Commit {
                        streams: vec![append],
                        command: None,
                    })
                    .await?;
                Ok(())
            }
        }
    }
}
