//! Writing personal values: batched, each subject's key claimed or read first, a write racing
//! an erasure refused and cleaned up.

use super::PersonalVault;
use super::{IndexKey, MAX_SEEN, index_subject, index_version};
use crate::batch::Queued;
use crate::codec::PersonalWrite;
use crate::personal::crypto::{DataKey, blind_index};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{IndexEntry, PersonalRecord, WrappedKey};
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

impl PersonalVault {
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
    pub(super) fn remember(&self, subjects: &[PersonalKey]) {
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
}
