//! The personal data vault: encrypts on write, decrypts on read, erases, exports, finds.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::codec::{PersonalWrite, Resolved};
use super::crypto::{DataKey, MasterKey, blind_index, ciphertext_version};
use super::store::{
    Erasure, IndexEntry, KeyStore, MemoryKeyStore, MemoryPersonalStore, PersonalRecord,
    PersonalStore, WrappedKey, lock,
};
use super::{PersonalData, PersonalError, PersonalKey};
use crate::batch::{Batcher, Queued};

/// The reserved subject whose data key keys the blind index.
const INDEX_SUBJECT: PersonalKey = PersonalKey(Uuid::nil());

/// Encrypts personal data per subject, keeps it in the personal data store with the data keys
/// in the key store, and erases a subject by destroying its key and its data.
pub struct PersonalVault {
    keys: Arc<dyn KeyStore>,
    data: Arc<dyn PersonalStore>,
    master: MasterKey,
    /// Bumped by every erasure, so caches of decrypted state know to drop it.
    epoch: AtomicU64,
    /// Concurrent `store` calls, written together.
    writes: Batcher<Vec<PersonalWrite>, Result<(), PersonalError>>,
    /// Subjects known to have a key or an erasure record: their writes read it first.
    seen: Mutex<HashSet<PersonalKey>>,
}

/// At most this many subjects are remembered in `seen` (16 bytes each).
const MAX_SEEN: usize = 100_000;

/// Personal data batches written at once.
const WRITE_SLOTS: usize = 2;

/// At most this many `store` calls in one batch.
const MAX_WRITE_CALLS: usize = 64;

/// A batch stops taking calls once it holds this many values.
const MAX_WRITE_VALUES: usize = 1_024;

impl fmt::Debug for PersonalVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalVault")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

/// Everything stored about one subject (the right of access).
///
/// Its `Debug` output shows field names only; [`Export::to_json`] gives the values.
pub struct Export {
    /// The subject.
    pub subject: PersonalKey,
    /// Whether the subject was erased (and so has no data).
    pub erased: bool,
    /// The subject's personal values, oldest first.
    pub fields: Vec<ExportedField>,
}

/// One exported personal value.
pub struct ExportedField {
    /// The personal data reference held by the event or command.
    pub reference: Uuid,
    /// `"{event or command}.{field}"`.
    pub field: String,
    /// The value, as its plaintext form.
    pub value: Zeroizing<String>,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field("subject", &self.subject)
            .field("erased", &self.erased)
            .field(
                "fields",
                &self.fields.iter().map(|x| &x.field).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Export {
    /// The export as JSON, values included: hand it to the person who asked for it.
    pub fn to_json(&self) -> Value {
        json!({
            "subject": self.subject.to_string(),
            "erased": self.erased,
            "data": self.fields.iter().map(|f| json!({
                "reference": f.reference.to_string(),
                "field": f.field,
                "value": f.value.as_str(),
            })).collect::<Vec<_>>(),
        })
    }
}

impl PersonalVault {
    /// A vault over a key store and a personal data store, with the master key that wraps the
    /// data keys.
    pub fn new(keys: impl KeyStore, data: impl PersonalStore, master: MasterKey) -> Self {
        Self::from_shared(Arc::new(keys), Arc::new(data), master)
    }

    /// A vault over shared stores.
    pub fn from_shared(
        keys: Arc<dyn KeyStore>,
        data: Arc<dyn PersonalStore>,
        master: MasterKey,
    ) -> Self {
        Self {
            keys,
            data,
            master,
            epoch: AtomicU64::new(0),
            writes: Batcher::new(WRITE_SLOTS, MAX_WRITE_CALLS, MAX_WRITE_VALUES, Vec::len),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// A vault in memory with a random master key, for tests.
    pub fn in_memory() -> Result<Self, PersonalError> {
        Ok(Self::new(
            MemoryKeyStore::new(),
            MemoryPersonalStore::new(),
            MasterKey::generate()?,
        ))
    }

    /// The key store.
    pub fn key_store(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// The personal data store.
    pub fn personal_store(&self) -> &Arc<dyn PersonalStore> {
        &self.data
    }

    fn unwrap(&self, key: &WrappedKey) -> Result<DataKey, PersonalError> {
        if key.master_key_id != self.master.id() {
            return Err(PersonalError::WrongMasterKey {
                subject: key.subject,
            });
        }
        self.master
            .unwrap_key(key.subject, key.version, &key.wrapped)
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
            let version = erasures.get(&subject).map_or(1, |e| e.last_key_version + 1);
            let fresh = DataKey::generate(version)?;
            let wrapped = WrappedKey {
                subject,
                version,
                wrapped: self.master.wrap(subject, version, &fresh)?,
                master_key_id: self.master.id(),
            };
            if subject == INDEX_SUBJECT {
                // Another writer may have created it first: use the stored one.
                let stored = self.keys.insert_key(wrapped).await?;
                keys.insert(subject, self.unwrap(&stored)?);
            } else {
                keys.insert(subject, fresh);
                pending.push(wrapped);
            }
        }
        self.remember(subjects);
        Ok((keys, pending))
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

    /// Encrypts and stores personal values, before the payloads that refer to them.
    ///
    /// Concurrent calls share their reads and writes (see [`crate::batch`]): one read of keys
    /// and erasures, one key insert and one put serve them all. If the shared write fails, each
    /// call's values are written again on their own, so each gets its own result (every step
    /// is safe to repeat: keys are inserted only if missing, values are upserted by reference).
    pub(crate) async fn store(
        self: &Arc<Self>,
        writes: Vec<PersonalWrite>,
    ) -> Result<(), PersonalError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.writes
            .submit(writes, |batch| {
                let vault = Arc::clone(self);
                async move { vault.write_batch(batch).await }
            })
            .await
            .unwrap_or(Err(PersonalError::Unanswered))
    }

    /// Writes the values of several `store` calls together, or one by one if that fails.
    async fn write_batch(&self, batch: Vec<Queued<Vec<PersonalWrite>, Result<(), PersonalError>>>) {
        if let [only] = batch.as_slice() {
            let writes: Vec<&PersonalWrite> = only.item.iter().collect();
            let result = self.write_all(&writes).await;
            if let Some(only) = batch.into_iter().next() {
                only.answer(result);
            }
            return;
        }
        let writes: Vec<&PersonalWrite> = batch.iter().flat_map(|q| q.item.iter()).collect();
        let error = match self.write_all(&writes).await {
            Ok(()) => {
                for queued in batch {
                    queued.answer(Ok(()));
                }
                return;
            }
            Err(error) => error,
        };
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let PersonalError::Database { operation, source } = &error
            && !matches!(source, sqlx::Error::Database(_))
        {
            // A failed connection, not a refusal: writing each call again would only wait
            // for it to fail once more, call after call.
            for queued in batch {
                queued.answer(Err(PersonalError::Database {
                    operation,
                    source: crate::store::sql::copy_error(source),
                }));
            }
            return;
        }
        drop(error);
        // Refused for one call's sake (an erased subject, say): each call on its own, for its
        // own result. Every step is safe to repeat.
        for queued in batch {
            let writes: Vec<&PersonalWrite> = queued.item.iter().collect();
            let result = self.write_all(&writes).await;
            queued.answer(result);
        }
    }

    /// Encrypts and stores `writes`.
    async fn write_all(&self, writes: &[&PersonalWrite]) -> Result<(), PersonalError> {
        let mut subjects: Vec<PersonalKey> = writes.iter().map(|w| w.subject).collect();
        subjects.sort_unstable();
        subjects.dedup();
        if subjects.contains(&INDEX_SUBJECT) {
            return Err(PersonalError::SubjectErased {
                subject: INDEX_SUBJECT,
            });
        }
        // Blind-index entries are written only once the subject is known not to be erased:
        // unlike a value under a key that was never stored, an entry links a keyed hash of
        // the value to the subject, and nothing would delete it if this write were cut short.
        let needs_index = writes.iter().any(|w| w.lookup.is_some());
        if needs_index {
            subjects.push(INDEX_SUBJECT);
            return self.write_read_first(writes, &subjects).await;
        }
        let unseen = {
            let seen = lock(&self.seen);
            subjects.iter().all(|s| !seen.contains(s))
        };
        if unseen {
            self.write_unseen(writes, &subjects).await
        } else {
            self.write_read_first(writes, &subjects).await
        }
    }

    /// Writes the values of subjects this vault has not seen without reading their keys
    /// first: each subject gets a new key, claimed in the key store while the values it
    /// encrypts are stored. A new subject, the common case for a first write, so costs one
    /// round trip to each store. Subjects whose claim fails (they had a key, or an erasure
    /// record) are written again by [`rewrite_lost`](Self::rewrite_lost).
    async fn write_unseen(
        &self,
        writes: &[&PersonalWrite],
        subjects: &[PersonalKey],
    ) -> Result<(), PersonalError> {
        let mut keys = HashMap::with_capacity(subjects.len());
        let mut claims = Vec::with_capacity(subjects.len());
        for &subject in subjects {
            let fresh = DataKey::generate(1)?;
            claims.push(WrappedKey {
                subject,
                version: 1,
                wrapped: self.master.wrap(subject, 1, &fresh)?,
                master_key_id: self.master.id(),
            });
            keys.insert(subject, fresh);
        }
        let (records, index) = Self::encrypt_all(&keys, None, writes)?;
        let lost = self.claim_and_put(claims, records, index).await?;
        self.remember(subjects);
        self.rewrite_lost(writes, lost).await
    }

    /// Encrypts and stores `writes` of `subjects` (with the index subject if they need the
    /// blind index): one read of keys and erasures, then the new subjects' keys and the values
    /// at once.
    async fn write_read_first(
        &self,
        writes: &[&PersonalWrite],
        subjects: &[PersonalKey],
    ) -> Result<(), PersonalError> {
        let (keys, pending) = self.keys_for_writing(subjects).await?;
        let (records, index) = Self::encrypt_all(&keys, keys.get(&INDEX_SUBJECT), writes)?;
        if pending.is_empty() {
            return self.data.put(records, index).await;
        }
        let lost = self.claim_and_put(pending, records, index).await?;
        self.rewrite_lost(writes, lost).await
    }

    /// Claims new keys in the key store while the values encrypted under them are stored.
    /// Returns the subjects whose key was not stored: until the caller returns nothing refers
    /// to their values, which it writes again.
    async fn claim_and_put(
        &self,
        claims: Vec<WrappedKey>,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        let subjects: Vec<PersonalKey> = claims.iter().map(|k| k.subject).collect();
        let (claimed, put) =
            tokio::join!(self.keys.claim_keys(claims), self.data.put(records, index));
        put?;
        Ok(subjects
            .into_iter()
            .zip(claimed?)
            .filter(|(_, claimed)| !claimed)
            .map(|(subject, _)| subject)
            .collect())
    }

    /// Writes again the values of subjects whose new key was not stored: encrypted under the
    /// key another writer stored first, they overwrite the first ones (same references); for a
    /// subject that was erased, they are refused and what was stored for it is deleted. The
    /// key the first values were encrypted under was never stored anywhere.
    async fn rewrite_lost(
        &self,
        writes: &[&PersonalWrite],
        mut lost: Vec<PersonalKey>,
    ) -> Result<(), PersonalError> {
        // Each round loses only to an erasure or re-enrolment racing this write.
        for _ in 0..3 {
            if lost.is_empty() {
                return Ok(());
            }
            let again: Vec<&PersonalWrite> = writes
                .iter()
                .copied()
                .filter(|w| lost.contains(&w.subject))
                .collect();
            let mut subjects = lost.clone();
            if again.iter().any(|w| w.lookup.is_some()) {
                subjects.push(INDEX_SUBJECT);
            }
            let (keys, pending) = match self.keys_for_writing(&subjects).await {
                Ok(found) => found,
                Err(error) => {
                    if matches!(error, PersonalError::SubjectErased { .. }) {
                        for erasure in self.keys.erasures(&lost).await? {
                            if !erasure.re_enrolled {
                                self.data.delete_subject(erasure.subject).await?;
                            }
                        }
                    }
                    return Err(error);
                }
            };
            let (records, index) = Self::encrypt_all(&keys, keys.get(&INDEX_SUBJECT), &again)?;
            if pending.is_empty() {
                return self.data.put(records, index).await;
            }
            lost = self.claim_and_put(pending, records, index).await?;
        }
        match lost.first() {
            Some(&subject) => Err(PersonalError::KeyRace { subject }),
            None => Ok(()),
        }
    }

    /// The records and blind-index entries of `writes`.
    fn encrypt_all(
        keys: &HashMap<PersonalKey, DataKey>,
        index_key: Option<&DataKey>,
        writes: &[&PersonalWrite],
    ) -> Result<(Vec<PersonalRecord>, Vec<IndexEntry>), PersonalError> {
        let mut records = Vec::with_capacity(writes.len());
        let mut index = Vec::new();
        for write in writes {
            records.push(Self::encrypt(keys, write)?);
            if let Some((kind, form)) = &write.lookup {
                let index_key = index_key.ok_or(PersonalError::MissingKey {
                    subject: INDEX_SUBJECT,
                })?;
                index.push((blind_index(index_key, kind, form), write.subject));
            }
        }
        Ok((records, index))
    }

    /// Notes that `subjects` have a key (or an erasure record), so that their next writes read
    /// it first.
    fn remember(&self, subjects: &[PersonalKey]) {
        let mut seen = lock(&self.seen);
        if seen.len() + subjects.len() > MAX_SEEN {
            // Forgetting costs a forgotten subject's next write a second put, nothing more.
            seen.clear();
        }
        seen.extend(subjects.iter().copied().filter(|s| *s != INDEX_SUBJECT));
    }

    /// Fetches and decrypts the values behind these references.
    pub(crate) async fn resolve(
        &self,
        references: &[(Uuid, PersonalKey)],
    ) -> Result<Resolved, PersonalError> {
        let mut resolved = Resolved::default();
        if references.is_empty() {
            return Ok(resolved);
        }
        let ids: Vec<Uuid> = references.iter().map(|(id, _)| *id).collect();
        let mut subjects: Vec<PersonalKey> = references.iter().map(|(_, s)| *s).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let records: HashMap<Uuid, PersonalRecord> = self
            .data
            .get(&ids)
            .await?
            .into_iter()
            .map(|r| (r.reference, r))
            .collect();
        let wrapped: HashMap<PersonalKey, WrappedKey> = self
            .keys
            .keys(&subjects)
            .await?
            .into_iter()
            .map(|k| (k.subject, k))
            .collect();
        let erasures: HashMap<PersonalKey, Erasure> = self
            .keys
            .erasures(&subjects)
            .await?
            .into_iter()
            .map(|e| (e.subject, e))
            .collect();
        let mut unwrapped: HashMap<PersonalKey, DataKey> = HashMap::new();
        for &(id, subject) in references {
            let erasure = erasures.get(&subject);
            let Some(record) = records.get(&id) else {
                if erasure.is_some() {
                    resolved.erased.insert(id);
                    continue;
                }
                return Err(PersonalError::Missing {
                    reference: id,
                    subject,
                });
            };
            if record.subject != subject {
                return Err(PersonalError::SubjectMismatch {
                    reference: id,
                    subject,
                });
            }
            let Some(wrapped) = wrapped.get(&subject) else {
                if erasure.is_some() {
                    resolved.erased.insert(id);
                    continue;
                }
                return Err(PersonalError::MissingKey { subject });
            };
            let key = match unwrapped.entry(subject) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(self.unwrap(wrapped)?),
            };
            let version =
                ciphertext_version(&record.ciphertext).ok_or(PersonalError::Tampered {
                    reference: id,
                    subject,
                })?;
            if version != key.version && erasure.is_some_and(|e| version <= e.last_key_version) {
                // Written under a key destroyed by an erasure, before a re-enrolment.
                resolved.erased.insert(id);
                continue;
            }
            let plaintext = key.decrypt(subject, id, &record.field, &record.ciphertext)?;
            resolved.values.insert(id, (subject, plaintext));
        }
        Ok(resolved)
    }

    /// Forgets a subject: records a PII-free erasure entry (which refuses new data), destroys
    /// the subject's data key, then deletes its personal data and blind-index entries.
    ///
    /// Idempotent: erasing again, or after a crash part-way, finishes the job. Events that
    /// referred to the subject still load, with its fields as [`Personal::Erased`](super::Personal::Erased).
    pub async fn erase(&self, subject: PersonalKey, reason: &str) -> Result<(), PersonalError> {
        let span = tracing::info_span!("erase", %subject);
        let _enter = span.enter();
        if subject == INDEX_SUBJECT {
            return Err(PersonalError::SubjectErased { subject });
        }
        let current = self.keys.keys(&[subject]).await?.first().map(|k| k.version);
        let previous = self
            .keys
            .erasures(&[subject])
            .await?
            .first()
            .map(|e| e.last_key_version);
        let last_key_version = current.or(previous).unwrap_or(0).max(previous.unwrap_or(0));
        self.keys
            .record_erasure(Erasure {
                subject,
                erased_at: SystemTime::now(),
                reason: reason.to_owned(),
                last_key_version,
                re_enrolled: false,
            })
            .await?;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.keys.delete_key(subject).await?;
        let deleted = self.data.delete_subject(subject).await?;
        tracing::info!(deleted, "subject erased");
        Ok(())
    }

    /// Changes whenever a subject is erased through this vault.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Lets an erased subject give personal data again. Old data stays gone: it was deleted and
    /// its key destroyed; new data is encrypted under a new key version.
    pub async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        self.keys.re_enroll(subject).await
    }

    /// Whether the subject is erased and not re-enrolled.
    pub async fn is_erased(&self, subject: PersonalKey) -> Result<bool, PersonalError> {
        Ok(self
            .keys
            .erasures(&[subject])
            .await?
            .iter()
            .any(|e| !e.re_enrolled))
    }

    /// All personal data of a subject, decrypted (the right of access).
    pub async fn export(&self, subject: PersonalKey) -> Result<Export, PersonalError> {
        let records = self.data.by_subject(subject).await?;
        let references: Vec<(Uuid, PersonalKey)> =
            records.iter().map(|r| (r.reference, subject)).collect();
        let mut resolved = self.resolve(&references).await?;
        let fields = records
            .into_iter()
            .filter_map(|record| {
                let (_, value) = resolved.values.remove(&record.reference)?;
                Some(ExportedField {
                    reference: record.reference,
                    field: record.field,
                    value,
                })
            })
            .collect();
        Ok(Export {
            subject,
            erased: self.is_erased(subject).await?,
            fields,
        })
    }

    /// The subjects holding `value` in a field marked `#[personal(lookup)]`, found through the
    /// keyed blind index (the value itself is never stored in plaintext).
    pub async fn lookup<T: PersonalData>(
        &self,
        value: &T,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        let Some(key) = self.keys.keys(&[INDEX_SUBJECT]).await?.into_iter().next() else {
            return Ok(Vec::new());
        };
        let index_key = self.unwrap(&key)?;
        let hash = blind_index(&index_key, T::KIND, &value.lookup_form());
        let mut found = self.data.find(&hash).await?;
        let erased: HashSet<PersonalKey> = self
            .keys
            .erasures(&found)
            .await?
            .into_iter()
            .filter(|e| !e.re_enrolled)
            .map(|e| e.subject)
            .collect();
        found.retain(|s| !erased.contains(s));
        Ok(found)
    }

    /// Re-wraps every data key under `new`, without touching personal data or events.
    /// Afterwards, open the vault with `new`. Returns how many keys were re-wrapped.
    pub async fn rotate_master_key(&self, new: &MasterKey) -> Result<usize, PersonalError> {
        let keys = self.keys.all_keys().await?;
        let mut rewrapped = Vec::with_capacity(keys.len());
        for key in &keys {
            let data_key = self.unwrap(key)?;
            rewrapped.push(WrappedKey {
                subject: key.subject,
                version: key.version,
                wrapped: new.wrap(key.subject, key.version, &data_key)?,
                master_key_id: new.id(),
            });
        }
        let count = rewrapped.len();
        self.keys.rewrap_keys(rewrapped).await?;
        Ok(count)
    }
}
