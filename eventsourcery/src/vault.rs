//! The personal data vault: encrypts on write, decrypts on read, erases, exports, finds.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::backend::{MemoryKeyStore, MemoryPersonalStore};
use crate::batch::{Batcher, Queued};
use crate::codec::{PersonalWrite, Reference, Resolved};
use crate::personal::crypto::{DataKey, MasterKey, MasterKeyRing, blind_index, ciphertext_version};
use crate::personal::{Personal, PersonalData, PersonalError, PersonalKey, PersonalRef};
use crate::store::{
    Erasure, IndexEntry, KeyStore, PersonalRecord, PersonalStore, Shared, WrappedKey,
};
use crate::sync::lock;

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

impl fmt::Debug for PersonalVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalVault")
            .field("masters", &self.masters)
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

    /// Encrypts and stores personal values, before the payloads that refer to them.
    ///
    /// Concurrent calls share their reads and writes (see [`crate::batch`]): one read of keys
    /// and erasures, one key insert and one put serve them all. If the shared write fails, each
    /// call's values are written again on their own, so each gets its own result (every step
    /// is safe to repeat: keys are inserted only if missing, values are upserted by reference).
    /// A call that fails leaves none of its values behind (nothing refers to them).
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

    /// Deletes values stored for an attempt that will not commit (a command that lost a
    /// concurrency race, say), so that the personal data store keeps only what stored events
    /// and command entries refer to. Nothing may refer to `references`.
    pub(crate) async fn discard(&self, references: &[Uuid]) -> Result<(), PersonalError> {
        if references.is_empty() {
            return Ok(());
        }
        self.data.delete(references).await.map(drop)
    }

    /// Writes the values of several `store` calls together, or one by one if that fails.
    async fn write_batch(&self, batch: Vec<Queued<Vec<PersonalWrite>, Result<(), PersonalError>>>) {
        if let [only] = batch.as_slice() {
            let writes: Vec<&PersonalWrite> = only.item.iter().collect();
            let result = self.write_or_clean_up(&writes).await;
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
                    source: crate::error::copy_sqlx_error(source),
                }));
            }
            return;
        }
        drop(error);
        // Refused for one call's sake (an erased subject, say): each call on its own, for its
        // own result. Every step is safe to repeat.
        for queued in batch {
            let writes: Vec<&PersonalWrite> = queued.item.iter().collect();
            let result = self.write_or_clean_up(&writes).await;
            queued.answer(result);
        }
    }

    /// [`write_all`](Self::write_all), deleting what it may have stored if it is refused: its
    /// caller fails too, so nothing will refer to the values.
    async fn write_or_clean_up(&self, writes: &[&PersonalWrite]) -> Result<(), PersonalError> {
        let result = self.write_all(writes).await;
        if result.is_err() {
            let references: Vec<Uuid> = writes.iter().map(|w| w.reference).collect();
            if let Err(error) = self.data.delete(&references).await {
                tracing::warn!(%error, values = references.len(), "could not delete the values of a failed write");
            }
        }
        result
    }

    /// Encrypts and stores `writes`; again with the new blind-index key if a rotation began
    /// after the index keys were read.
    async fn write_all(&self, writes: &[&PersonalWrite]) -> Result<(), PersonalError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write_once(writes).await {
                Err(PersonalError::StaleIndexKey { .. }) if attempt < 3 => continue,
                result => return result,
            }
        }
    }

    /// Encrypts and stores `writes`.
    async fn write_once(&self, writes: &[&PersonalWrite]) -> Result<(), PersonalError> {
        let mut subjects: Vec<PersonalKey> = writes.iter().map(|w| w.subject).collect();
        subjects.sort_unstable();
        subjects.dedup();
        if let Some(&reserved) = subjects.iter().find(|s| index_version(**s).is_some()) {
            // A blind-index key's subject never holds personal data.
            return Err(PersonalError::SubjectErased { subject: reserved });
        }
        // Blind-index entries are written only once the subject is known not to be erased.
        let needs_index = writes.iter().any(|w| w.lookup.is_some());
        if needs_index {
            return self.write_read_first(writes, &subjects, true).await;
        }
        let unseen = {
            let seen = lock(&self.seen);
            subjects.iter().all(|s| !seen.contains(s))
        };
        if unseen {
            self.write_unseen(writes, &subjects).await
        } else {
            self.write_read_first(writes, &subjects, false).await
        }
    }

    /// Writes the values of subjects this vault has not seen without reading their keys
    /// first: each subject gets a new key, claimed in the key store while the values it
    /// encrypts are stored. A new subject, the common case for a first write, so costs one
    /// round trip to each store. Subjects whose claim fails (they had a key, or an erasure
    /// record) or whose values are refused are written again by
    /// [`rewrite_lost`](Self::rewrite_lost).
    async fn write_unseen(
        &self,
        writes: &[&PersonalWrite],
        subjects: &[PersonalKey],
    ) -> Result<(), PersonalError> {
        let mut keys = HashMap::with_capacity(subjects.len());
        let mut claims = Vec::with_capacity(subjects.len());
        for &subject in subjects {
            let fresh = DataKey::generate(1)?;
            claims.push(self.wrap(subject, 1, &fresh)?);
            keys.insert(subject, fresh);
        }
        let (records, index) = Self::encrypt_all(&keys, None, writes)?;
        let lost = self.claim_and_put(claims, records, index).await?;
        self.remember(subjects);
        self.rewrite_lost(writes, lost, None).await
    }

    /// Encrypts and stores `writes` of `subjects` (with blind-index entries made with the
    /// current index key if `with_index`): one read of keys, erasures and index keys, then the
    /// new subjects' keys and the values at once.
    async fn write_read_first(
        &self,
        writes: &[&PersonalWrite],
        subjects: &[PersonalKey],
        with_index: bool,
    ) -> Result<(), PersonalError> {
        let (found, index) = tokio::join!(self.keys_for_writing(subjects), async {
            match with_index {
                true => self.current_index_key().await.map(Some),
                false => Ok(None),
            }
        });
        let ((keys, pending), index) = (found?, index?);
        let (records, entries) = Self::encrypt_all(&keys, index.as_ref(), writes)?;
        let lost = if pending.is_empty() {
            self.data.put(records, entries).await?
        } else {
            self.claim_and_put(pending, records, entries).await?
        };
        self.rewrite_lost(writes, lost, index.as_ref()).await
    }

    /// Claims new keys in the key store while the values encrypted under them are stored.
    /// Returns the subjects whose values must be written again: their key was not stored, or
    /// the personal data store refused their values (the subject was erased meanwhile).
    /// Until the caller returns, nothing refers to the values.
    async fn claim_and_put(
        &self,
        claims: Vec<WrappedKey>,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        let subjects: Vec<PersonalKey> = claims.iter().map(|k| k.subject).collect();
        let (claimed, put) =
            tokio::join!(self.keys.claim_keys(claims), self.data.put(records, index));
        let mut lost = put?;
        lost.extend(
            subjects
                .into_iter()
                .zip(claimed?)
                .filter(|(_, claimed)| !claimed)
                .map(|(subject, _)| subject),
        );
        lost.sort_unstable();
        lost.dedup();
        Ok(lost)
    }

    /// Writes again the values of subjects whose new key was not stored or whose values were
    /// refused: encrypted under the key another writer stored first (or a new version, for a
    /// re-enrolled subject), they overwrite the first ones (same references); a subject that
    /// was erased is refused. The key the first values were encrypted under was never stored,
    /// or was destroyed.
    async fn rewrite_lost(
        &self,
        writes: &[&PersonalWrite],
        mut lost: Vec<PersonalKey>,
        index: Option<&IndexKey>,
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
            let (keys, pending) = self.keys_for_writing(&lost).await?;
            let fetched;
            let index = match index {
                None if again.iter().any(|w| w.lookup.is_some()) => {
                    fetched = self.current_index_key().await?;
                    Some(&fetched)
                }
                index => index,
            };
            let (records, index) = Self::encrypt_all(&keys, index, &again)?;
            lost = if pending.is_empty() {
                self.data.put(records, index).await?
            } else {
                self.claim_and_put(pending, records, index).await?
            };
        }
        match lost.first() {
            Some(&subject) => Err(PersonalError::KeyRace { subject }),
            None => Ok(()),
        }
    }

    /// The records and blind-index entries of `writes`.
    fn encrypt_all(
        keys: &HashMap<PersonalKey, DataKey>,
        index_key: Option<&IndexKey>,
        writes: &[&PersonalWrite],
    ) -> Result<(Vec<PersonalRecord>, Vec<IndexEntry>), PersonalError> {
        let mut records = Vec::with_capacity(writes.len());
        let mut index = Vec::new();
        for write in writes {
            records.push(Self::encrypt(keys, write)?);
            if let Some((kind, form)) = &write.lookup {
                let index_key = index_key.ok_or(PersonalError::MissingKey {
                    subject: index_subject(0),
                })?;
                index.push(IndexEntry {
                    hash: blind_index(&index_key.key, kind, form),
                    subject: write.subject,
                    key_version: index_key.version,
                });
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
        seen.extend(
            subjects
                .iter()
                .copied()
                .filter(|s| index_version(*s).is_none()),
        );
    }

    /// Fetches and decrypts the values behind these references: per reference its value,
    /// that it was erased, or what is wrong with it (tampered, missing, moved to another
    /// field, under a master key this vault does not hold). Only a failing store fails the
    /// whole call.
    ///
    /// Reads the values, then the keys, then the erasure records: an erasure writes them in
    /// the opposite order, so a value or key found missing has its erasure record found.
    pub(crate) async fn resolve(
        &self,
        references: &[Reference],
    ) -> Result<Resolved, PersonalError> {
        let mut resolved = Resolved::default();
        if references.is_empty() {
            return Ok(resolved);
        }
        let mut ids: Vec<Uuid> = references.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut subjects: Vec<PersonalKey> = references.iter().map(|r| r.subject).collect();
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
        let mut unwrapped: HashMap<PersonalKey, Result<DataKey, PersonalError>> = HashMap::new();
        for reference in references {
            let record = records.get(&reference.id);
            if resolved.values.contains_key(&reference.id)
                || resolved.erased.contains(&reference.id)
                || resolved.failed.contains_key(&reference.id)
            {
                // A reference held twice: each holder's field is checked.
                if let Some(record) = record
                    && record.field != reference.field
                {
                    resolved.values.remove(&reference.id);
                    resolved
                        .failed
                        .insert(reference.id, field_mismatch(reference, record));
                }
                continue;
            }
            let erasure = erasures.get(&reference.subject);
            let outcome = match record {
                None if erasure.is_some() => Outcome::Erased,
                None => Outcome::Failed(PersonalError::Missing {
                    reference: reference.id,
                    subject: reference.subject,
                }),
                Some(record) => self.open(reference, record, &wrapped, erasure, &mut unwrapped),
            };
            match outcome {
                Outcome::Value(plaintext) => {
                    resolved
                        .values
                        .insert(reference.id, (reference.subject, plaintext));
                }
                Outcome::Erased => {
                    resolved.erased.insert(reference.id);
                }
                Outcome::Failed(error) => {
                    resolved.failed.insert(reference.id, error);
                }
            }
        }
        Ok(resolved)
    }

    /// Decrypts one stored value for `reference`.
    fn open(
        &self,
        reference: &Reference,
        record: &PersonalRecord,
        wrapped: &HashMap<PersonalKey, WrappedKey>,
        erasure: Option<&Erasure>,
        unwrapped: &mut HashMap<PersonalKey, Result<DataKey, PersonalError>>,
    ) -> Outcome {
        let (id, subject) = (reference.id, reference.subject);
        if record.subject != subject {
            return Outcome::Failed(PersonalError::SubjectMismatch {
                reference: id,
                subject,
            });
        }
        if record.field != reference.field {
            return Outcome::Failed(field_mismatch(reference, record));
        }
        let Some(wrapped) = wrapped.get(&subject) else {
            return match erasure {
                Some(_) => Outcome::Erased,
                None => Outcome::Failed(PersonalError::MissingKey { subject }),
            };
        };
        let key = match unwrapped
            .entry(subject)
            .or_insert_with(|| self.unwrap(wrapped))
        {
            Ok(key) => key,
            Err(error) => return Outcome::Failed(error.duplicate()),
        };
        let Some(version) = ciphertext_version(&record.ciphertext) else {
            return Outcome::Failed(PersonalError::Tampered {
                reference: id,
                subject,
            });
        };
        if version != key.version && erasure.is_some_and(|e| version <= e.last_key_version) {
            // Written under a key destroyed by an erasure, before a re-enrolment.
            return Outcome::Erased;
        }
        match key.decrypt(subject, id, &record.field, &record.ciphertext) {
            Ok(plaintext) => Outcome::Value(plaintext),
            Err(error) => Outcome::Failed(error),
        }
    }

    /// Forgets a subject: records a PII-free erasure entry (which refuses new data) and
    /// destroys the subject's data key in one step of the key store, then, in one step of the
    /// personal data store, records which key versions were destroyed (so that a write racing
    /// the erasure is refused) and deletes the subject's personal data and blind-index entries.
    /// On SQLite the write-ahead logs are then truncated, so that no erased byte stays in any
    /// file.
    ///
    /// Once it returns, no key, value or blind-index entry of the subject exists in any store,
    /// whatever writes were in flight, and no aggregate cache in any process sharing the key
    /// store serves the subject's values.
    ///
    /// Idempotent: erasing again, or after a failure part-way, finishes the job. Events that
    /// referred to the subject still load, with its fields as [`Personal::Erased`].
    pub async fn erase(&self, subject: PersonalKey, reason: &str) -> Result<(), PersonalError> {
        let span = tracing::info_span!("erase", %subject);
        let _enter = span.enter();
        if index_version(subject).is_some() {
            // A blind-index key is retired by `rotate_index_key`, not erased.
            return Err(PersonalError::SubjectErased { subject });
        }
        let erasure = self.keys.erase(subject, SystemTime::now(), reason).await?;
        let lease_ends = Instant::now() + self.cache_lease;
        let deleted = self
            .data
            .erase_subject(subject, erasure.last_key_version)
            .await?;
        // Epochs read before the erasure committed are trusted for a lease after their read:
        // wait until none is, so no cache anywhere serves the subject's values once this
        // returns.
        tokio::time::sleep_until(lease_ends.into()).await;
        tracing::info!(deleted, "subject erased");
        Ok(())
    }

    /// The key store's erasure epoch, which every erasure, in any process, moves on: as read
    /// less than the cache lease ago, or read now.
    ///
    /// A value read at time `t` is served until `t` + the lease (timed from before the read
    /// was sent), and every erasure returns only a lease after the erasure committed: so a
    /// value served after an erasure returned was read after it committed, and shows it.
    pub(crate) async fn erasure_epoch(&self) -> Result<u64, PersonalError> {
        if let Some((epoch, read_at)) = *lock(&self.epoch)
            && read_at.elapsed() < self.cache_lease
        {
            return Ok(epoch);
        }
        let sent = Instant::now();
        let epoch = self.keys.erasure_epoch().await?;
        let mut held = lock(&self.epoch);
        if held.is_none_or(|(_, read_at)| read_at < sent) {
            *held = Some((epoch, sent));
        }
        Ok(epoch)
    }

    /// Sets how long a process may trust an erasure epoch it read, and so how long after its
    /// key store step an erasure waits before it returns (default 250 ms). Every process that
    /// shares the key store must use the same lease (or a shorter one than the eraser's).
    pub fn with_cache_lease(mut self, lease: Duration) -> Self {
        self.cache_lease = lease;
        self
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

    /// All personal data of a subject, decrypted (the right of access): every value that its
    /// events and command log entries refer to.
    pub async fn export(&self, subject: PersonalKey) -> Result<Export, PersonalError> {
        let records = self.data.by_subject(subject).await?;
        let references: Vec<Reference> = records
            .iter()
            .map(|r| Reference {
                id: r.reference,
                subject,
                field: r.field.clone(),
            })
            .collect();
        let mut resolved = self.resolve(&references).await?;
        if let Some(error) = resolved.failed.into_values().next() {
            return Err(error);
        }
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

    /// Resolves values held by reference (the [`PersonalRef`]s a read model keeps instead of
    /// values), in the order given: each one's value, or [`Personal::Erased`] once its subject
    /// is forgotten. A reference that was tampered with, or points at a value of another
    /// field, is an error, as it is for an event.
    pub async fn resolve_refs<T: PersonalData>(
        &self,
        refs: &[PersonalRef<T>],
    ) -> Result<Vec<Personal<T>>, PersonalError> {
        let references: Vec<Reference> = refs
            .iter()
            .map(|r| Reference {
                id: r.reference(),
                subject: r.subject(),
                field: r.field().to_owned(),
            })
            .collect();
        let resolved = self.resolve(&references).await?;
        refs.iter()
            .map(|r| {
                let id = r.reference();
                if let Some(error) = resolved.failed.get(&id) {
                    return Err(error.duplicate());
                }
                if let Some((_, plaintext)) = resolved.values.get(&id) {
                    return T::from_plaintext(plaintext)
                        .map(Personal::Present)
                        .map_err(|_| PersonalError::InvalidPlaintext {
                            type_name: std::any::type_name::<T>(),
                        });
                }
                if resolved.erased.contains(&id) {
                    return Ok(Personal::Erased);
                }
                Err(PersonalError::Missing {
                    reference: id,
                    subject: r.subject(),
                })
            })
            .collect()
    }

    /// The subjects holding `value` in a field marked `#[personal(lookup)]`, found through the
    /// keyed blind index (the value itself is never stored in plaintext).
    pub async fn lookup<T: PersonalData>(
        &self,
        value: &T,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        let form = value
            .lookup_form()
            .map_err(|_| PersonalError::UnserializablePlaintext {
                type_name: std::any::type_name::<T>(),
            })?;
        // Every index key present: while a rotation runs, entries of both versions exist.
        let mut found = Vec::new();
        for index_key in self.index_keys().await? {
            let hash = blind_index(&index_key.key, T::KIND, &form);
            found.extend(self.data.find(&hash).await?);
        }
        found.sort_unstable();
        found.dedup();
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

    /// Re-wraps every data key that is not wrapped by the ring's current master key, unwrapping
    /// each with the master key that wrapped it; personal data and events are not touched.
    ///
    /// Online, and safe to rerun: keys already under the current master key are skipped, keys
    /// erased or replaced meanwhile are left alone, and a key that none of the ring's master
    /// keys opens is reported in [`Rotation::failed`] while the others are re-wrapped. With
    /// several processes: give every process the new master key as current and the old one as
    /// previous ([`MasterKeyRing::with_previous`]) first, then rotate from one of them, and drop
    /// the old key from the configuration once a rotation reports [`Rotation::is_complete`].
    pub async fn rotate_master_key(&self) -> Result<Rotation, PersonalError> {
        let current = self.masters.current();
        let span = tracing::info_span!("rotate_master_key", master_key = current.id_str());
        let _enter = span.enter();
        let mut rotation = Rotation::default();
        let mut after = None;
        loop {
            let page = self.keys.keys_after(after, ROTATION_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.subject);
            let mut rewrapped = Vec::with_capacity(page.len());
            for key in page {
                if key.master_key_id == current.id_str() {
                    rotation.already_current += 1;
                    continue;
                }
                match self.unwrap(&key) {
                    Ok(data_key) => {
                        rewrapped.push(self.wrap(key.subject, key.version, &data_key)?);
                    }
                    Err(_) => rotation.failed.push(RotationFailure {
                        subject: key.subject,
                        master_key_id: key.master_key_id,
                    }),
                }
            }
            rotation.rewrapped += rewrapped.len();
            self.keys.rewrap_keys(rewrapped).await?;
        }
        tracing::info!(
            rewrapped = rotation.rewrapped,
            failed = rotation.failed.len(),
            "master key rotation"
        );
        Ok(rotation)
    }
    /// Replaces the blind-index key with a new version and rebuilds the index under it from
    /// the stored values, so that a copied index, or the old key, links nothing any more; also
    /// what brings entries made before a change of lookup form (see
    /// [`PersonalData::lookup_form`]) in line.
    ///
    /// Online: the personal data store first refuses entries made with the old key (a write
    /// that read the keys before is written again with the new one), lookups hash with both
    /// keys while the index is rebuilt, then the old entries are deleted and the old key
    /// destroyed. The values of every field marked `#[personal(lookup)]` in this program are
    /// re-indexed (fields are known by the events and commands this program defines); values
    /// that do not decrypt are counted in [`IndexRotation::unreadable`]. A rotation that
    /// stopped part-way is finished by the next call, which rotates no further.
    pub async fn rotate_index_key(&self) -> Result<IndexRotation, PersonalError> {
        let span = tracing::info_span!("rotate_index_key");
        let _enter = span.enter();
        let present = self.index_keys().await?;
        let Some(highest) = present.last().map(|k| k.version) else {
            // No value was ever indexed: the first write makes the first key.
            return Ok(IndexRotation::default());
        };
        let target = match present.len() {
            1 => {
                let next = highest.checked_add(1).ok_or(PersonalError::OutOfRange {
                    what: "the blind-index key version",
                })?;
                let fresh = DataKey::generate(1)?;
                self.keys
                    .insert_key(self.wrap(index_subject(next), 1, &fresh)?)
                    .await?;
                next
            }
            // A rotation that stopped part-way: finish it.
            _ => highest,
        };
        let target_key = self
            .index_keys()
            .await?
            .into_iter()
            .find(|k| k.version == target)
            .ok_or(PersonalError::MissingKey {
                subject: index_subject(target),
            })?;
        // From here on no entry of an older version is accepted: every value stored before now
        // is in the store for the walk below, every later one is indexed with the new key.
        self.data.raise_index_floor(target).await?;
        let fields = crate::personal::lookup::lookup_fields();
        let mut rotation = IndexRotation {
            version: target,
            ..IndexRotation::default()
        };
        let mut after = None;
        loop {
            let page = self.data.records_after(after, ROTATION_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.reference);
            let references: Vec<Reference> = page
                .iter()
                .filter(|r| fields.contains_key(r.field.as_str()))
                .map(|r| Reference {
                    id: r.reference,
                    subject: r.subject,
                    field: r.field.clone(),
                })
                .collect();
            let resolved = self.resolve(&references).await?;
            let mut entries = Vec::with_capacity(references.len());
            for reference in &references {
                let Some((subject, plaintext)) = resolved.values.get(&reference.id) else {
                    if resolved.failed.contains_key(&reference.id) {
                        rotation.unreadable += 1;
                    }
                    continue;
                };
                let Some(field) = fields.get(reference.field.as_str()) else {
                    continue;
                };
                let Ok(form) = (field.form)(plaintext) else {
                    rotation.unreadable += 1;
                    continue;
                };
                entries.push(IndexEntry {
                    hash: blind_index(&target_key.key, field.kind, &form),
                    subject: *subject,
                    key_version: target,
                });
            }
            rotation.reindexed += entries.len();
            // Entries of subjects erased meanwhile are refused, as any write's are.
            self.data.put(Vec::new(), entries).await?;
        }
        rotation.removed = self.data.delete_index_entries_below(target).await?;
        for old in present.iter().filter(|k| k.version < target) {
            self.keys
                .erase(
                    index_subject(old.version),
                    SystemTime::now(),
                    "blind-index key rotation",
                )
                .await?;
        }
        tracing::info!(
            version = target,
            reindexed = rotation.reindexed,
            removed = rotation.removed,
            "blind-index key rotated"
        );
        Ok(rotation)
    }
}

/// What [`PersonalVault::rotate_index_key`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexRotation {
    /// The index key version now in use (0 if nothing was ever indexed).
    pub version: u32,
    /// Index entries made with it from the stored values.
    pub reindexed: usize,
    /// Values of lookup fields that did not decrypt or parse, left out of the new index.
    pub unreadable: usize,
    /// Entries of older versions deleted.
    pub removed: u64,
}

/// How many keys a rotation reads and re-wraps at a time.
const ROTATION_PAGE: usize = 500;

/// What [`PersonalVault::rotate_master_key`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rotation {
    /// Keys re-wrapped under the current master key.
    pub rewrapped: usize,
    /// Keys that were already under it.
    pub already_current: usize,
    /// Keys that none of the vault's master keys could unwrap: left as they are.
    pub failed: Vec<RotationFailure>,
}

impl Rotation {
    /// Whether every key is now under the current master key.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A data key a rotation could not unwrap.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationFailure {
    /// Whose key it is.
    pub subject: PersonalKey,
    /// The id of the master key that wrapped it (not secret).
    pub master_key_id: String,
}

/// What resolving one reference gave.
enum Outcome {
    Value(Zeroizing<String>),
    Erased,
    Failed(PersonalError),
}

fn field_mismatch(reference: &Reference, record: &PersonalRecord) -> PersonalError {
    PersonalError::FieldMismatch {
        reference: reference.id,
        subject: reference.subject,
        expected: reference.field.as_str().into(),
        found: record.field.as_str().into(),
    }
}
