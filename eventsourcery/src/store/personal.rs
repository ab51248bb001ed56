//! The two stores behind the vault: encryption keys, and encrypted personal data. Each is a
//! trait, implemented in memory, on SQLite and on PostgreSQL (see [`crate::backend`]); by
//! default each lives in a database of its own, apart from the event store.

use std::collections::BTreeMap;
use std::fmt;

use std::time::SystemTime;

use uuid::Uuid;

use super::{AuditEntry, AuditRecord};
use crate::personal::{PersonalError, PersonalKey};

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

crate::redact::debug_fields!(WrappedKey {
    subject,
    version,
    master_key_id
});

/// The PII-free record that a subject was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The subject.
    pub subject: PersonalKey,
    /// When.
    pub erased_at: SystemTime,
    /// Why (a request id or a policy name; never personal data).
    pub reason: String,
    /// Every key version up to this one is destroyed: the subject's key when it was erased,
    /// and any version a writer racing the erasure could have been about to claim. A
    /// re-enrolled subject gets a higher one, and the personal data store refuses values
    /// under any version up to it.
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

    /// The `last_key_version` of an erasure made now, given the subject's current key version
    /// (if it has a key) and its previous erasure (if any).
    ///
    /// It covers the current key, and every version a writer could be about to claim: 1 for a
    /// subject never erased, one above the old versions for a re-enrolled one. So a write that
    /// read the subject's state before the erasure, whatever it read, encrypts under a version
    /// the personal data store then refuses.
    pub fn next_last_key_version(current: Option<u32>, previous: Option<&Erasure>) -> u32 {
        let claimable = match previous {
            None => 1,
            Some(previous) if previous.re_enrolled => previous.last_key_version.saturating_add(1),
            Some(previous) => previous.last_key_version,
        };
        current.unwrap_or(0).max(claimable)
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

impl PersonalRecord {
    /// The version of the data key the value is encrypted under, from the ciphertext's header
    /// (`None` if the header is malformed). The header is authenticated: a changed version
    /// fails decryption.
    pub fn key_version(&self) -> Option<u32> {
        crate::personal::crypto::ciphertext_version(&self.ciphertext)
    }
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

/// A blind-index entry: the keyed hash of a personal value's lookup form, its subject, and the
/// version of the index key that made the hash.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexEntry {
    /// The HMAC of the value's kind and lookup form under the index key.
    pub hash: Vec<u8>,
    /// The subject holding the value.
    pub subject: PersonalKey,
    /// The version of the index key that made `hash`.
    pub key_version: u32,
}

crate::redact::debug_fields!(IndexEntry {
    subject,
    key_version
});

/// Where data keys and erasure records live.
///
/// Implementations must make [`erase`](Self::erase) and [`claim_keys`](Self::claim_keys) take
/// turns per subject (a write transaction, or a per-subject lock that an erasure takes alone),
/// so that a claim either comes before an erasure (whose key the erasure then destroys) or
/// sees its record.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The current keys of these subjects (those that have one).
    async fn keys(&self, subjects: &[PersonalKey]) -> Result<Vec<WrappedKey>, PersonalError>;

    /// Stores `key` unless the subject already has one; returns the subject's key either way,
    /// so that concurrent first writes agree on exactly one key.
    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError>;

    /// Stores each key whose subject has no key and may take it, and tells, in the order given,
    /// which were stored. A subject may take a key unless it was erased and not re-enrolled,
    /// or was re-enrolled but had a key of this version or a later one before its erasure
    /// ([`Erasure::allows`]).
    ///
    /// The vault stores new keys only this way, while the values encrypted under them are
    /// stored, so that a write which read the subject as not erased cannot give it a key once
    /// the erasure is recorded: the check and the insert must not let an erasure come between
    /// them.
    async fn claim_keys(&self, keys: Vec<WrappedKey>) -> Result<Vec<bool>, PersonalError>;

    /// Erases a subject in one step that no claim can come between: records the erasure
    /// (a subject already erased and not re-enrolled keeps its first record), with
    /// `last_key_version` decided from the key it finds
    /// ([`Erasure::next_last_key_version`]), destroys the subject's key, and moves the
    /// [`erasure_epoch`](Self::erasure_epoch) on. Returns the record. Idempotent.
    async fn erase(
        &self,
        subject: PersonalKey,
        erased_at: SystemTime,
        reason: &str,
    ) -> Result<Erasure, PersonalError>;

    /// The erasure records of these subjects.
    async fn erasures(&self, subjects: &[PersonalKey]) -> Result<Vec<Erasure>, PersonalError>;

    /// A number that every [`erase`](Self::erase) changes, in the same transaction as the key
    /// it destroys, for every process sharing the store: a cache of decrypted state read
    /// before it changed must be dropped.
    async fn erasure_epoch(&self) -> Result<u64, PersonalError>;

    /// Marks an erased subject as re-enrolled, so it accepts new personal data under a key
    /// version above its old ones.
    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError>;

    /// Up to `limit` keys of subjects after `after` (from the first if `None`), in subject
    /// order: master-key rotation walks the store with it.
    async fn keys_after(
        &self,
        after: Option<PersonalKey>,
        limit: usize,
    ) -> Result<Vec<WrappedKey>, PersonalError>;

    /// Every key (for tests and small stores; rotation pages with
    /// [`keys_after`](Self::keys_after)).
    async fn all_keys(&self) -> Result<Vec<WrappedKey>, PersonalError> {
        let mut all = Vec::new();
        loop {
            let page = self
                .keys_after(all.last().map(|k: &WrappedKey| k.subject), 1_000)
                .await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Replaces wrapped keys in one transaction, each only if the subject still has a key of
    /// the same version (a key erased or replaced meanwhile is left alone).
    async fn rewrap_keys(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalError>;
}

/// Where encrypted personal values and the blind index live.
///
/// It keeps a PII-free record of each erased subject: the last key version the erasure
/// destroyed. [`put`](Self::put) refuses, in the same transaction as its writes, every value
/// of such a subject under a version up to that one, so that a write racing an erasure either
/// lands before it (and is deleted by it) or is refused. Implementations must make `put` and
/// [`erase_subject`](Self::erase_subject) take turns per subject.
#[async_trait::async_trait]
pub trait PersonalStore: Send + Sync + 'static {
    /// Stores records and index entries in one transaction, except those of subjects that
    /// were erased through a key version at least as high as their records' (see
    /// [`PersonalRecord::key_version`]; a record whose header is malformed, or a subject with
    /// index entries but no record, is refused once the subject is erased at all). Returns the refused subjects, of which nothing was stored.
    async fn put(
        &self,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError>;

    /// The records with these references (those that exist).
    async fn get(&self, references: &[Uuid]) -> Result<Vec<PersonalRecord>, PersonalError>;

    /// Every record of a subject, oldest first.
    async fn by_subject(&self, subject: PersonalKey) -> Result<Vec<PersonalRecord>, PersonalError>;

    /// Erases a subject in one transaction: records that its keys up to `last_key_version`
    /// are destroyed (keeping the highest version recorded), and deletes its records and index
    /// entries. Returns how many records went. Idempotent.
    async fn erase_subject(
        &self,
        subject: PersonalKey,
        last_key_version: u32,
    ) -> Result<u64, PersonalError>;

    /// Deletes the records with these references (values written for an attempt that did not
    /// commit, so that nothing refers to them); returns how many went.
    async fn delete(&self, references: &[Uuid]) -> Result<u64, PersonalError>;

    /// The subjects with this blind-index hash.
    async fn find(&self, hash: &[u8]) -> Result<Vec<PersonalKey>, PersonalError>;

    /// Up to `limit` records with references after `after` (from the first if `None`), in
    /// reference order: rebuilding the blind index walks the store with it.
    async fn records_after(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PersonalRecord>, PersonalError>;

    /// From now on, refuses index entries made with an index key version below `version`
    /// (a floor only rises); returns the floor. Takes turns with [`put`](Self::put), so a put
    /// that checked the old floor commits first.
    async fn raise_index_floor(&self, version: u32) -> Result<u32, PersonalError>;

    /// Deletes the index entries made with an index key version below `version`; returns how
    /// many went.
    async fn delete_index_entries_below(&self, version: u32) -> Result<u64, PersonalError>;

    /// Appends `entry` to the audit log of reads of personal values, and returns its sequence
    /// number. The log is append-only: no method of this trait changes or removes an entry,
    /// and an erasure leaves it alone (it holds subject keys and field names, no value).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, PersonalError>;

    /// Up to `limit` audit entries with a sequence number above `after`, in sequence order.
    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, PersonalError>;
}

/// Fails with [`PersonalError::StaleIndexKey`] if an entry was made with an index key version
/// below `floor`: the rule every [`PersonalStore::put`] applies.
pub(crate) fn check_index_floor(index: &[IndexEntry], floor: u32) -> Result<(), PersonalError> {
    match index.iter().find(|e| e.key_version < floor) {
        Some(entry) => Err(PersonalError::StaleIndexKey {
            found: entry.key_version,
        }),
        None => Ok(()),
    }
}

/// The subjects of `records` and `index` that an erasure through `erased(subject)` refuses:
/// the rule every [`PersonalStore::put`] applies, for stores that check in their own code.
pub(crate) fn refused_subjects(
    records: &[PersonalRecord],
    index: &[IndexEntry],
    mut erased: impl FnMut(PersonalKey) -> Option<u32>,
) -> Vec<PersonalKey> {
    let mut lowest: BTreeMap<PersonalKey, u32> = BTreeMap::new();
    for record in records {
        // A malformed header counts as version 0: refused once the subject is erased at all.
        let version = record.key_version().unwrap_or(0);
        let entry = lowest.entry(record.subject).or_insert(version);
        *entry = (*entry).min(version);
    }
    for entry in index {
        lowest.entry(entry.subject).or_insert(0);
    }
    lowest
        .into_iter()
        .filter(|(subject, version)| erased(*subject).is_some_and(|last| *version <= last))
        .map(|(subject, _)| subject)
        .collect()
}
