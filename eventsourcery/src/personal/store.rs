//! The two stores behind the vault: encryption keys, and encrypted personal data. Each is a
//! trait with in-memory, SQLite and PostgreSQL implementations; by default each lives in its
//! own database, apart from the event store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use uuid::Uuid;

use super::{PersonalError, PersonalKey};

/// A subject's data key, wrapped by the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The subject.
    pub subject: PersonalKey,
    /// The key version, bound into every ciphertext made with it.
    pub version: u32,
    /// Nonce and sealed key.
    pub wrapped: Vec<u8>,
    /// The id of the master key that wrapped it.
    pub master_key_id: String,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("subject", &self.subject)
            .field("version", &self.version)
            .field("master_key_id", &self.master_key_id)
            .finish_non_exhaustive()
    }
}

/// The PII-free record that a subject was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The subject.
    pub subject: PersonalKey,
    /// When.
    pub erased_at: SystemTime,
    /// Why (a request id or a policy name; never personal data).
    pub reason: String,
    /// The highest key version the subject had; a re-enrolled subject gets a higher one.
    pub last_key_version: u32,
    /// Whether the subject was re-enrolled after the erasure.
    pub re_enrolled: bool,
}

impl Erasure {
    /// Whether the subject may take a new key of `version`: only once re-enrolled, and only
    /// above every version it had before.
    pub fn allows(&self, version: u32) -> bool {
        self.re_enrolled && version > self.last_key_version
    }
}

/// One encrypted personal value.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonalRecord {
    /// The reference the payload holds.
    pub reference: Uuid,
    /// The subject.
    pub subject: PersonalKey,
    /// `"{event or command}.{field}"`.
    pub field: String,
    /// Format byte, key version, nonce, sealed value.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for PersonalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalRecord")
            .field("reference", &self.reference)
            .field("subject", &self.subject)
            .field("field", &self.field)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// A blind-index entry: the keyed hash of a personal value, and its subject.
pub type IndexEntry = (Vec<u8>, PersonalKey);

/// Where data keys and erasure records live.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The current keys of these subjects (those that have one).
    async fn keys(&self, subjects: &[PersonalKey]) -> Result<Vec<WrappedKey>, PersonalError>;

    /// Stores `key` unless the subject already has one; returns the subject's key either way,
    /// so that concurrent first writes agree on exactly one key.
    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError>;

    /// Stores each key whose subject has no key and may take it, and tells, in the order given,
    /// which were stored. A subject may take a key unless it was erased and not re-enrolled,
    /// or was re-enrolled but had a key of this version or a later one before its erasure.
    ///
    /// The vault stores new keys this way, while the values encrypted under them are stored,
    /// so that a write which read the subject as not erased cannot give it a key once the
    /// erasure is recorded. The default reads the erasure records, then inserts with
    /// [`insert_key`](Self::insert_key); SQLite checks and inserts in one write transaction
    /// (no erasure can come between); PostgreSQL takes the subjects' advisory locks, which
    /// [`record_erasure`](Self::record_erasure) takes alone, before it checks and inserts.
    async fn claim_keys(&self, keys: Vec<WrappedKey>) -> Result<Vec<bool>, PersonalError> {
        let subjects: Vec<PersonalKey> = keys.iter().map(|k| k.subject).collect();
        let erasures: std::collections::HashMap<PersonalKey, Erasure> = self
            .erasures(&subjects)
            .await?
            .into_iter()
            .map(|e| (e.subject, e))
            .collect();
        let candidates: Vec<WrappedKey> = keys
            .iter()
            .filter(|k| erasures.get(&k.subject).is_none_or(|e| e.allows(k.version)))
            .cloned()
            .collect();
        let mut claimed = std::collections::HashSet::new();
        for key in candidates {
            let stored = self.insert_key(key.clone()).await?;
            if stored.wrapped == key.wrapped {
                claimed.insert(key.subject);
            }
        }
        Ok(keys.iter().map(|k| claimed.contains(&k.subject)).collect())
    }

    /// Deletes a subject's key (crypto-shredding).
    async fn delete_key(&self, subject: PersonalKey) -> Result<(), PersonalError>;

    /// Records an erasure; a subject already erased and not re-enrolled keeps its first record.
    async fn record_erasure(&self, erasure: Erasure) -> Result<(), PersonalError>;

    /// The erasure records of these subjects.
    async fn erasures(&self, subjects: &[PersonalKey]) -> Result<Vec<Erasure>, PersonalError>;

    /// Marks an erased subject as re-enrolled, so it accepts new personal data.
    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError>;

    /// Every key, for master-key rotation.
    async fn all_keys(&self) -> Result<Vec<WrappedKey>, PersonalError>;

    /// Replaces wrapped keys (same subjects and versions) in one transaction.
    async fn rewrap_keys(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalError>;
}

/// Where encrypted personal values and the blind index live.
#[async_trait::async_trait]
pub trait PersonalStore: Send + Sync + 'static {
    /// Stores records and index entries in one transaction.
    async fn put(
        &self,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> Result<(), PersonalError>;

    /// The records with these references (those that exist).
    async fn get(&self, references: &[Uuid]) -> Result<Vec<PersonalRecord>, PersonalError>;

    /// Every record of a subject, oldest first.
    async fn by_subject(&self, subject: PersonalKey) -> Result<Vec<PersonalRecord>, PersonalError>;

    /// Deletes a subject's records and index entries; returns how many records went.
    async fn delete_subject(&self, subject: PersonalKey) -> Result<u64, PersonalError>;

    /// The subjects with this blind-index hash.
    async fn find(&self, hash: &[u8]) -> Result<Vec<PersonalKey>, PersonalError>;
}

/// Locks `mutex`; its data are plain collections, which a panic elsewhere cannot leave half
/// changed.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keys in process memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    inner: Mutex<(
        HashMap<PersonalKey, WrappedKey>,
        HashMap<PersonalKey, Erasure>,
    )>,
}

impl MemoryKeyStore {
    /// An empty key store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl KeyStore for MemoryKeyStore {
    async fn keys(&self, subjects: &[PersonalKey]) -> Result<Vec<WrappedKey>, PersonalError> {
        let inner = lock(&self.inner);
        Ok(subjects
            .iter()
            .filter_map(|s| inner.0.get(s).cloned())
            .collect())
    }

    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError> {
        Ok(lock(&self.inner)
            .0
            .entry(key.subject)
            .or_insert(key)
            .clone())
    }

    async fn delete_key(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        lock(&self.inner).0.remove(&subject);
        Ok(())
    }

    async fn record_erasure(&self, erasure: Erasure) -> Result<(), PersonalError> {
        let mut inner = lock(&self.inner);
        let keep = inner
            .1
            .get(&erasure.subject)
            .is_some_and(|e| !e.re_enrolled);
        if !keep {
            inner.1.insert(erasure.subject, erasure);
        }
        Ok(())
    }

    async fn erasures(&self, subjects: &[PersonalKey]) -> Result<Vec<Erasure>, PersonalError> {
        let inner = lock(&self.inner);
        Ok(subjects
            .iter()
            .filter_map(|s| inner.1.get(s).cloned())
            .collect())
    }

    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        if let Some(erasure) = lock(&self.inner).1.get_mut(&subject) {
            erasure.re_enrolled = true;
        }
        Ok(())
    }

    async fn all_keys(&self) -> Result<Vec<WrappedKey>, PersonalError> {
        Ok(lock(&self.inner).0.values().cloned().collect())
    }

    async fn rewrap_keys(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalError> {
        let mut inner = lock(&self.inner);
        for key in keys {
            if let Some(existing) = inner.0.get_mut(&key.subject)
                && existing.version == key.version
            {
                *existing = key;
            }
        }
        Ok(())
    }
}

/// Personal data in process memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryPersonalStore {
    inner: Mutex<MemoryData>,
}

#[derive(Debug, Default)]
struct MemoryData {
    records: BTreeMap<Uuid, PersonalRecord>,
    index: Vec<IndexEntry>,
}

impl MemoryPersonalStore {
    /// An empty personal data store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl PersonalStore for MemoryPersonalStore {
    async fn put(
        &self,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> Result<(), PersonalError> {
        let mut inner = lock(&self.inner);
        for record in records {
            inner.records.insert(record.reference, record);
        }
        for entry in index {
            if !inner.index.contains(&entry) {
                inner.index.push(entry);
            }
        }
        Ok(())
    }

    async fn get(&self, references: &[Uuid]) -> Result<Vec<PersonalRecord>, PersonalError> {
        let inner = lock(&self.inner);
        Ok(references
            .iter()
            .filter_map(|r| inner.records.get(r).cloned())
            .collect())
    }

    async fn by_subject(&self, subject: PersonalKey) -> Result<Vec<PersonalRecord>, PersonalError> {
        let inner = lock(&self.inner);
        Ok(inner
            .records
            .values()
            .filter(|r| r.subject == subject)
            .cloned()
            .collect())
    }

    async fn delete_subject(&self, subject: PersonalKey) -> Result<u64, PersonalError> {
        let mut inner = lock(&self.inner);
        let before = inner.records.len();
        inner.records.retain(|_, r| r.subject != subject);
        inner.index.retain(|(_, s)| *s != subject);
        Ok((before - inner.records.len()) as u64)
    }

    async fn find(&self, hash: &[u8]) -> Result<Vec<PersonalKey>, PersonalError> {
        let inner = lock(&self.inner);
        let mut found: Vec<PersonalKey> = inner
            .index
            .iter()
            .filter(|(h, _)| h.as_slice() == hash)
            .map(|(_, s)| *s)
            .collect();
        found.dedup();
        Ok(found)
    }
}
