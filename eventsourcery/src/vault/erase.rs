//! Erasure by destroying the key, and the erasure epoch that caches check.

use super::PersonalVault;
use super::index_version;
use crate::personal::{PersonalError, PersonalKey};
use crate::sync::lock;
use std::time::{Instant, SystemTime};
use tracing::Instrument;

impl PersonalVault {
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
    /// referred to the subject still load, with its fields read as erased ([`Personal::is_erased`](crate::Personal::is_erased)).
    pub async fn erase(&self, subject: PersonalKey, reason: &str) -> Result<(), PersonalError> {
        // Instrumented, not entered: a guard held across an await would mark other tasks'
        // work as the erasure's.
        let span = tracing::info_span!(
            "erase",
            otel.name = "erase subject",
            otel.kind = "internal",
            eventsourcery.subject.id = %subject,
        );
        async move {
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
            crate::metrics::erased();
            Ok(())
        }
        .instrument(span)
        .await
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
}
