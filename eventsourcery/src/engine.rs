//! The engine the bus shares with repositories and handler parameters: the stores, the
//! services, the aggregate cache, and the unit of work of a command's attempt (what it
//! staged to commit). It knows nothing of handlers or dispatch: whatever must hear of commits
//! (a dispatcher) registers a [`CommitHook`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use uuid::Uuid;

use crate::cache::AggregateCache;
use crate::codec::{EncodeContext, Reference, Resolved};
use crate::error::BoxFuture;
use crate::event::Metadata;
use crate::personal::PersonalError;
use crate::store::{EventStore, StoreError, StreamAppend};
use crate::sync::lock;
use crate::value::StreamId;
use crate::vault::PersonalVault;

/// The services an application registered with the command bus, by type.
#[derive(Default, Clone)]
pub struct Services {
    by_type: HashMap<TypeId, (Arc<dyn Any + Send + Sync>, &'static str)>,
}

impl Services {
    /// Registers `service`, replacing one of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, service: T) {
        self.insert_shared(Arc::new(service));
    }

    /// Registers a shared service, replacing one of the same type.
    pub fn insert_shared<T: Send + Sync + 'static>(&mut self, service: Arc<T>) {
        self.by_type
            .insert(TypeId::of::<T>(), (service, std::any::type_name::<T>()));
    }

    /// The service of type `T`, if registered.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let (service, _) = self.by_type.get(&TypeId::of::<T>())?;
        Arc::clone(service).downcast::<T>().ok()
    }

    /// Adds every service of `other`, replacing those of the same type.
    pub fn extend(&mut self, other: Services) {
        self.by_type.extend(other.by_type);
    }

    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.by_type.contains_key(&id)
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.by_type.values().map(|(_, name)| name))
            .finish()
    }
}

/// What hears of every commit: a dispatcher that catches its consumers up (inline) or wakes its
/// worker.
pub(crate) trait CommitHook: Send + Sync {
    /// Events were committed.
    fn committed(&self) -> BoxFuture<'_, ()>;
}

/// What the bus shares with repositories and handler parameters.
pub(crate) struct Engine {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) services: Services,
    pub(crate) vault: Option<Arc<PersonalVault>>,
    /// What is told about every commit (a dispatcher), set once it exists.
    after_commit: RwLock<Option<Arc<dyn CommitHook>>>,
    pub(crate) cache: AggregateCache,
}

impl Engine {
    pub(crate) fn bare(store: Arc<dyn EventStore>, vault: Option<Arc<PersonalVault>>) -> Self {
        Self {
            store,
            services: Services::default(),
            vault,
            after_commit: RwLock::new(None),
            cache: AggregateCache::new(0),
        }
    }

    /// An engine with a cache of `cache_capacity` aggregates.
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        services: Services,
        vault: Option<Arc<PersonalVault>>,
        cache_capacity: usize,
    ) -> Self {
        Self {
            cache: AggregateCache::new(cache_capacity),
            services,
            ..Self::bare(store, vault)
        }
    }

    /// Sets what is told about every commit.
    pub(crate) fn set_after_commit(&self, hook: Arc<dyn CommitHook>) {
        *self
            .after_commit
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hook);
    }

    /// Tells the hook, if any, that events were committed.
    pub(crate) async fn committed(&self) {
        let hook = self
            .after_commit
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook.committed().await;
        }
    }

    /// Stores personal values before anything refers to them.
    pub(crate) async fn store_personal(&self, cx: EncodeContext) -> Result<(), PersonalError> {
        if !cx.has_personal_data() {
            return Ok(());
        }
        let vault = self.vault.as_ref().ok_or(PersonalError::NoVault)?;
        vault.store(cx.writes).await
    }

    /// Deletes personal values stored for an attempt that did not commit. A failure is traced:
    /// the values are under keys of subjects that nothing refers to.
    pub(crate) async fn discard_personal(&self, references: &[Uuid]) {
        if let Some(vault) = &self.vault
            && let Err(error) = vault.discard(references).await
        {
            tracing::warn!(%error, values = references.len(), "could not delete the personal values of an attempt that did not commit");
        }
    }

    /// The erasure epoch, for caching a state that holds personal values.
    pub(crate) async fn erasure_epoch(&self) -> Result<u64, PersonalError> {
        let vault = self.vault.as_ref().ok_or(PersonalError::NoVault)?;
        vault.erasure_epoch().await
    }

    /// Resolves the personal values that these references point at.
    pub(crate) async fn resolve_personal(
        &self,
        references: &[Reference],
    ) -> Result<Resolved, PersonalError> {
        match (&self.vault, references.is_empty()) {
            (_, true) => Ok(Resolved::default()),
            (Some(vault), false) => vault.resolve(references).await,
            (None, false) => Err(PersonalError::NoVault),
        }
    }
}

/// What one attempt of a command has staged so far.
pub(crate) struct UnitOfWork {
    pub(crate) command_id: Uuid,
    pub(crate) correlation_id: Uuid,
    /// What the command's events are stored with.
    pub(crate) metadata: Metadata,
    staged: Mutex<Staged>,
}

/// An aggregate state to cache once the command commits.
pub(crate) struct CacheUpdate {
    pub(crate) stream: StreamId,
    pub(crate) version: u64,
    /// The erasure epoch read before the state's personal values were decrypted, if it holds
    /// any.
    pub(crate) personal: Option<u64>,
    pub(crate) state: Box<dyn Any + Send + Sync>,
}

/// What an attempt staged, taken out once its handler returned.
#[derive(Default)]
pub(crate) struct Staged {
    pub(crate) streams: Vec<StreamAppend>,
    pub(crate) encode: EncodeContext,
    /// Streams whose state came from the cache in this attempt.
    pub(crate) from_cache: Vec<StreamId>,
    /// The erasure epoch of each cached aggregate's state as loaded, if it holds personal
    /// values (read before they were decrypted).
    pub(crate) loaded_personal: HashMap<StreamId, u64>,
    /// Whether a load in this attempt decrypted personal values.
    pub(crate) read_personal: bool,
    /// The first failure of a repository call in this attempt.
    pub(crate) failure: Option<StoreError>,
    pub(crate) cache_updates: Vec<CacheUpdate>,
}

impl UnitOfWork {
    pub(crate) fn new(command_id: Uuid, correlation_id: Uuid, metadata: Metadata) -> Self {
        Self {
            command_id,
            correlation_id,
            metadata,
            staged: Mutex::new(Staged::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Staged> {
        lock(&self.staged)
    }

    /// Stages events of one stream; a second save of the same stream continues the first.
    pub(crate) fn stage(&self, append: StreamAppend, cx: EncodeContext) -> Result<(), StoreError> {
        let mut staged = self.lock();
        staged.encode.merge(cx);
        if let Some(existing) = staged
            .streams
            .iter_mut()
            .find(|s| s.stream_id == append.stream_id)
        {
            let next = existing.expected_version + existing.events.len() as u64;
            if next != append.expected_version {
                return Err(StoreError::Conflict {
                    stream: append.stream_id,
                    expected: append.expected_version,
                    actual: next,
                });
            }
            existing.events.extend(append.events);
        } else {
            staged.streams.push(append);
        }
        Ok(())
    }

    pub(crate) fn loaded_from_cache(&self, stream: StreamId, personal: Option<u64>) {
        let mut staged = self.lock();
        if let Some(epoch) = personal {
            staged.loaded_personal.insert(stream.clone(), epoch);
            staged.read_personal = true;
        }
        staged.from_cache.push(stream);
    }

    /// Notes that a repository call of this attempt failed (the first failure is kept).
    pub(crate) fn failed(&self, error: &StoreError) {
        let mut staged = self.lock();
        if staged.failure.is_none() {
            staged.failure = Some(error.duplicate());
        }
    }

    /// Notes that a load in this attempt read personal values.
    pub(crate) fn read_personal(&self) {
        self.lock().read_personal = true;
    }

    /// Notes that a cached aggregate's state, read from its stream, holds personal values
    /// decrypted after the erasure epoch was `epoch`.
    pub(crate) fn loaded_personal(&self, stream: StreamId, epoch: u64) {
        self.lock().loaded_personal.insert(stream, epoch);
    }

    /// The erasure epoch of a stream's state as loaded, if it holds personal values.
    pub(crate) fn personal_epoch(&self, stream: &StreamId) -> Option<u64> {
        self.lock().loaded_personal.get(stream).copied()
    }

    pub(crate) fn cache_after_commit(&self, update: CacheUpdate) {
        self.lock().cache_updates.push(update);
    }

    pub(crate) fn take(&self) -> Staged {
        std::mem::take(&mut *self.lock())
    }
}
