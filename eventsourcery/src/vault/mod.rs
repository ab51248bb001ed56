//! The personal data vault: encrypts on write, decrypts on read, erases, exports, finds.
//!
//! A [`PersonalVault`] sits over a key store and a personal data store (see
//! [`store`](crate::store)) and a master key: it gives each data subject its own data key,
//! encrypts personal values into the personal data store on write, decrypts them on read (or
//! reads them as erased), erases a subject by destroying its key, exports a subject's data
//! ([`Export`]), finds subjects through the blind index, and rotates the master and index keys
//! ([`Rotation`], [`IndexRotation`]). It is the only place that sees plaintext personal values
//! and keys. Guide: [personal data](crate::docs::personal_data).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::backend::{MemoryKeyStore, MemoryPersonalStore};
use crate::batch::Batcher;
use crate::codec::PersonalWrite;
use crate::personal::crypto::{DataKey, MasterKey, MasterKeyRing};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{Erasure, KeyStore, PersonalRecord, PersonalStore, Shared, WrappedKey};

/// The reserved subject whose data key is blind-index key `version`: the subject with UUID
/// `version` (the nil UUID for version 0, the first). Reserved subjects sort before every
/// issued one, so the index keys are the first keys of the key store.
fn index_subject(version: u32) -> PersonalKey {
    PersonalKey::from_uuid(Uuid::from_u128(u128::from(version)))
}

/// The blind-index key version a reserved subject stands for; `None` for a data subject.
fn index_version(subject: PersonalKey) -> Option<u32> {
    u32::try_from(subject.as_uuid().as_u128()).ok()
}

/// At most this many blind-index keys exist at once (two while a rotation runs).
const MAX_INDEX_KEYS: usize = 8;

/// A blind-index key and its version.
struct IndexKey {
    version: u32,
    key: DataKey,
}

/// Encrypts personal data per subject, keeps it in the personal data store with the data keys
/// in the key store, and erases a subject by destroying its key and its data.
pub struct PersonalVault {
    keys: Arc<dyn KeyStore>,
    data: Arc<dyn PersonalStore>,
    masters: MasterKeyRing,
    /// Concurrent `store` calls, written together.
    writes: Batcher<Vec<PersonalWrite>, Result<(), PersonalError>>,
    /// Subjects known to have a key or an erasure record: their writes read it first.
    seen: Mutex<HashSet<PersonalKey>>,
    /// The erasure epoch last read from the key store, and when the read was sent.
    epoch: Mutex<Option<(u64, Instant)>>,
    /// How long an epoch read is trusted (see [`PersonalVault::with_cache_lease`]).
    cache_lease: Duration,
}

/// How long a process trusts an erasure epoch it read, by default.
pub const DEFAULT_CACHE_LEASE: Duration = Duration::from_millis(250);

/// At most this many subjects are remembered in `seen` (16 bytes each).
const MAX_SEEN: usize = 100_000;

/// Personal data batches written at once.
const WRITE_SLOTS: usize = 2;

/// At most this many `store` calls in one batch.
const MAX_WRITE_CALLS: usize = 64;

/// A batch stops taking calls once it holds this many values.
const MAX_WRITE_VALUES: usize = 1_024;

crate::redact::debug_fields!(PersonalVault { masters });

mod audit;
mod erase;
mod read;
mod rotate;
mod write;

pub use read::{Export, ExportedField};
pub use rotate::{IndexRotation, Rotation, RotationFailure};

impl PersonalVault {
    /// A vault over a key store and a personal data store, with the master key that wraps the
    /// data keys: a [`MasterKey`], or a [`MasterKeyRing`] holding previous master keys too
    /// while a rotation is under way.
    ///
    /// Each store is given by value or as an `Arc` shared with other parts of the program.
    pub fn new(
        keys: impl Shared<dyn KeyStore>,
        data: impl Shared<dyn PersonalStore>,
        masters: impl Into<MasterKeyRing>,
    ) -> Self {
        Self {
            keys: keys.shared(),
            data: data.shared(),
            masters: masters.into(),
            writes: Batcher::new(WRITE_SLOTS, MAX_WRITE_CALLS, MAX_WRITE_VALUES, Vec::len),
            seen: Mutex::new(HashSet::new()),
            epoch: Mutex::new(None),
            cache_lease: DEFAULT_CACHE_LEASE,
        }
    }

    /// A vault in memory with a random master key, for tests. Its stores belong to it alone,
    /// so it trusts no erasure epoch it read (a cache lease of zero): erasures return at once.
    pub fn in_memory() -> Result<Self, PersonalError> {
        Ok(Self::new(
            MemoryKeyStore::new(),
            MemoryPersonalStore::new(),
            MasterKey::generate()?,
        )
        .with_cache_lease(Duration::ZERO))
    }

    /// The key store.
    pub fn key_store(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// The personal data store.
    pub fn personal_store(&self) -> &Arc<dyn PersonalStore> {
        &self.data
    }

    /// The master keys this vault holds.
    pub fn master_keys(&self) -> &MasterKeyRing {
        &self.masters
    }

    /// Unwraps a data key with the master key that wrapped it, current or previous.
    fn unwrap(&self, key: &WrappedKey) -> Result<DataKey, PersonalError> {
        let master = self
            .masters
            .get(&key.master_key_id)
            .ok_or(PersonalError::WrongMasterKey {
                subject: key.subject,
            })?;
        master.unwrap_key(key.subject, key.version, &key.wrapped)
    }

    /// A new data key of `version` for `subject`, wrapped by the current master key.
    fn wrap(
        &self,
        subject: PersonalKey,
        version: u32,
        key: &DataKey,
    ) -> Result<WrappedKey, PersonalError> {
        let master = self.masters.current();
        Ok(WrappedKey {
            subject,
            version,
            wrapped: master.wrap(subject, version, key)?,
            master_key_id: master.id(),
        })
    }

    /// The data keys of `subjects`. Refuses erased subjects that were not re-enrolled. Keys
    /// that are missing are generated and returned wrapped, not yet stored, so the caller can
    /// store them together with the data they encrypt (the index key is stored at once).
    async fn keys_for_writing(
        &self,
        subjects: &[PersonalKey],
    ) -> Result<(HashMap<PersonalKey, DataKey>, Vec<WrappedKey>), PersonalError> {
        let (erasures, existing) =
            tokio::join!(self.keys.erasures(subjects), self.keys.keys(subjects));
        let erasures: HashMap<PersonalKey, Erasure> =
            erasures?.into_iter().map(|e| (e.subject, e)).collect();
        if let Some(erasure) = erasures.values().find(|e| !e.re_enrolled) {
            return Err(PersonalError::SubjectErased {
                subject: erasure.subject,
            });
        }
        let mut keys = HashMap::new();
        for key in existing? {
            keys.insert(key.subject, self.unwrap(&key)?);
        }
        let mut pending = Vec::new();
        for &subject in subjects {
            if keys.contains_key(&subject) {
                continue;
            }
            let version = erasures
                .get(&subject)
                .map_or(1, |e| e.last_key_version.saturating_add(1));
            let fresh = DataKey::generate(version)?;
            pending.push(self.wrap(subject, version, &fresh)?);
            keys.insert(subject, fresh);
        }
        self.remember(subjects);
        Ok((keys, pending))
    }

    /// Every blind-index key in the key store, oldest version first.
    async fn index_keys(&self) -> Result<Vec<IndexKey>, PersonalError> {
        let mut found = Vec::new();
        for key in self.keys.keys_after(None, MAX_INDEX_KEYS).await? {
            if let Some(version) = index_version(key.subject) {
                found.push(IndexKey {
                    version,
                    key: self.unwrap(&key)?,
                });
            }
        }
        found.sort_by_key(|k| k.version);
        Ok(found)
    }

    /// The blind-index key new entries are made with: the highest version in the key store,
    /// created (as version 0) if there is none.
    async fn current_index_key(&self) -> Result<IndexKey, PersonalError> {
        if let Some(current) = self.index_keys().await?.pop() {
            return Ok(current);
        }
        let fresh = DataKey::generate(1)?;
        // Another writer may have created it first: use the stored one.
        let stored = self
            .keys
            .insert_key(self.wrap(index_subject(0), 1, &fresh)?)
            .await?;
        Ok(IndexKey {
            version: 0,
            key: self.unwrap(&stored)?,
        })
    }

    fn encrypt(
        keys: &HashMap<PersonalKey, DataKey>,
        write: &PersonalWrite,
    ) -> Result<PersonalRecord, PersonalError> {
        let key = keys.get(&write.subject).ok_or(PersonalError::MissingKey {
            subject: write.subject,
        })?;
        Ok(PersonalRecord {
            reference: write.reference,
            subject: write.subject,
            field: write.field.clone(),
            ciphertext: key.encrypt(
                write.subject,
                write.reference,
                &write.field,
                write.plaintext.as_bytes(),
            )?,
        })
    }

    /// Sets how long a process may trust an erasure epoch it read, and so how long after its
    /// key store step an erasure waits before it returns (default 250 ms). Every process that
    /// shares the key store must use the same lease (or a shorter one than the eraser's).
    pub fn with_cache_lease(mut self, lease: Duration) -> Self {
        self.cache_lease = lease;
        self
    }
}
