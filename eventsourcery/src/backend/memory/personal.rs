//! The key store and personal data store in process memory, for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use uuid::Uuid;

use crate::personal::{PersonalError, PersonalKey};
use crate::store::personal::{check_index_floor, refused_subjects};
use crate::store::{
    AuditEntry, AuditRecord, Erasure, IndexEntry, KeyStore, PersonalRecord, PersonalStore,
    WrappedKey,
};
use crate::sync::lock;

/// Keys in process memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    inner: Mutex<MemoryKeys>,
}

#[derive(Debug, Default)]
struct MemoryKeys {
    keys: BTreeMap<PersonalKey, WrappedKey>,
    erasures: HashMap<PersonalKey, Erasure>,
    epoch: u64,
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
        Ok(found(subjects, |s| inner.keys.get(s)))
    }

    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError> {
        Ok(lock(&self.inner)
            .keys
            .entry(key.subject)
            .or_insert(key)
            .clone())
    }

    async fn claim_keys(&self, keys: Vec<WrappedKey>) -> Result<Vec<bool>, PersonalError> {
        // One lock for the check and the insert: no erasure comes between them.
        let mut inner = lock(&self.inner);
        Ok(keys
            .into_iter()
            .map(|key| {
                let allowed = inner
                    .erasures
                    .get(&key.subject)
                    .is_none_or(|e| e.allows(key.version));
                if !allowed || inner.keys.contains_key(&key.subject) {
                    return false;
                }
                inner.keys.insert(key.subject, key);
                true
            })
            .collect())
    }

    async fn erase(
        &self,
        subject: PersonalKey,
        erased_at: SystemTime,
        reason: &str,
    ) -> Result<Erasure, PersonalError> {
        let mut inner = lock(&self.inner);
        let current = inner.keys.get(&subject).map(|k| k.version);
        let previous = inner.erasures.get(&subject).cloned();
        let last_key_version = Erasure::next_last_key_version(current, previous.as_ref());
        let erasure = match previous {
            Some(previous) if !previous.re_enrolled => Erasure {
                last_key_version,
                ..previous
            },
            _ => Erasure {
                subject,
                erased_at,
                reason: reason.to_owned(),
                last_key_version,
                re_enrolled: false,
            },
        };
        inner.erasures.insert(subject, erasure.clone());
        inner.keys.remove(&subject);
        inner.epoch += 1;
        Ok(erasure)
    }

    async fn erasures(&self, subjects: &[PersonalKey]) -> Result<Vec<Erasure>, PersonalError> {
        let inner = lock(&self.inner);
        Ok(found(subjects, |s| inner.erasures.get(s)))
    }

    async fn erasure_epoch(&self) -> Result<u64, PersonalError> {
        Ok(lock(&self.inner).epoch)
    }

    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        if let Some(erasure) = lock(&self.inner).erasures.get_mut(&subject) {
            erasure.re_enrolled = true;
        }
        Ok(())
    }

    async fn keys_after(
        &self,
        after: Option<PersonalKey>,
        limit: usize,
    ) -> Result<Vec<WrappedKey>, PersonalError> {
        Ok(page_after(&lock(&self.inner).keys, after, limit))
    }

    async fn rewrap_keys(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalError> {
        let mut inner = lock(&self.inner);
        for key in keys {
            if let Some(existing) = inner.keys.get_mut(&key.subject)
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
    erased: HashMap<PersonalKey, u32>,
    index_floor: u32,
    audit: Vec<AuditEntry>,
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
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        let mut inner = lock(&self.inner);
        check_index_floor(&index, inner.index_floor)?;
        let refused = refused_subjects(&records, &index, |s| inner.erased.get(&s).copied());
        for record in records {
            if !refused.contains(&record.subject) {
                inner.records.insert(record.reference, record);
            }
        }
        for entry in index {
            let known = inner
                .index
                .iter()
                .any(|e| e.hash == entry.hash && e.subject == entry.subject);
            if !refused.contains(&entry.subject) && !known {
                inner.index.push(entry);
            }
        }
        Ok(refused)
    }

    async fn get(&self, references: &[Uuid]) -> Result<Vec<PersonalRecord>, PersonalError> {
        let inner = lock(&self.inner);
        Ok(found(references, |r| inner.records.get(r)))
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

    async fn erase_subject(
        &self,
        subject: PersonalKey,
        last_key_version: u32,
    ) -> Result<u64, PersonalError> {
        let mut inner = lock(&self.inner);
        let erased = inner.erased.entry(subject).or_insert(last_key_version);
        *erased = (*erased).max(last_key_version);
        let before = inner.records.len();
        inner.records.retain(|_, r| r.subject != subject);
        inner.index.retain(|e| e.subject != subject);
        Ok((before - inner.records.len()) as u64)
    }

    async fn delete(&self, references: &[Uuid]) -> Result<u64, PersonalError> {
        let mut inner = lock(&self.inner);
        Ok(references
            .iter()
            .filter(|r| inner.records.remove(r).is_some())
            .count() as u64)
    }

    async fn find(&self, hash: &[u8]) -> Result<Vec<PersonalKey>, PersonalError> {
        let inner = lock(&self.inner);
        let mut found: Vec<PersonalKey> = inner
            .index
            .iter()
            .filter(|e| e.hash.as_slice() == hash)
            .map(|e| e.subject)
            .collect();
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn records_after(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PersonalRecord>, PersonalError> {
        Ok(page_after(&lock(&self.inner).records, after, limit))
    }

    async fn raise_index_floor(&self, version: u32) -> Result<u32, PersonalError> {
        let mut inner = lock(&self.inner);
        inner.index_floor = inner.index_floor.max(version);
        Ok(inner.index_floor)
    }

    async fn delete_index_entries_below(&self, version: u32) -> Result<u64, PersonalError> {
        let mut inner = lock(&self.inner);
        let before = inner.index.len();
        inner.index.retain(|e| e.key_version >= version);
        Ok((before - inner.index.len()) as u64)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, PersonalError> {
        if let Some(problem) = entry.problem() {
            return Err(PersonalError::InvalidAudit { problem });
        }
        let mut inner = lock(&self.inner);
        inner.audit.push(entry.clone());
        Ok(inner.audit.len() as u64)
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, PersonalError> {
        let inner = lock(&self.inner);
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(inner
            .audit
            .iter()
            .enumerate()
            .skip(skip)
            .take(limit)
            .map(|(i, entry)| AuditRecord {
                sequence: i as u64 + 1,
                entry: entry.clone(),
            })
            .collect())
    }
}

/// The values that `get` finds for `keys`, in their order; a key it does not find is left out.
fn found<'m, K, V: Clone + 'm>(keys: &[K], get: impl Fn(&K) -> Option<&'m V>) -> Vec<V> {
    keys.iter().filter_map(|k| get(k).cloned()).collect()
}

/// At most `limit` values of `map` with keys after `after` (from the first without it), in key
/// order.
fn page_after<K: Ord, V: Clone>(map: &BTreeMap<K, V>, after: Option<K>, limit: usize) -> Vec<V> {
    let range = match after {
        Some(after) => map.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
        None => map.range(..),
    };
    range.take(limit).map(|(_, v)| v.clone()).collect()
}
