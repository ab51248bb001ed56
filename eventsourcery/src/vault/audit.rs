//! Audited reads: personal values shown to a person are read only after the read is recorded.

use super::PersonalVault;
#[cfg(all(feature = "cli", any(feature = "sqlite", feature = "postgres")))]
use crate::codec::{Reference, Resolved};
use crate::personal::PersonalError;
use crate::store::{AuditEntry, AuditRecord};

impl PersonalVault {
    /// Records an audited read of personal values in the personal data store's audit log,
    /// and returns the entry's sequence number. Fails with [`PersonalError::InvalidAudit`] if
    /// the entry names no actor or no reason.
    pub async fn record_access(&self, entry: &AuditEntry) -> Result<u64, PersonalError> {
        if let Some(problem) = entry.problem() {
            return Err(PersonalError::InvalidAudit { problem });
        }
        self.data.append_audit(entry).await
    }

    /// Up to `limit` entries of the audit log with a sequence number above `after`, oldest
    /// first.
    pub async fn audit_log(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, PersonalError> {
        self.data.audit_after(after, limit).await
    }

    /// Resolves `references` for a person to see, once `entry` is recorded: a read that
    /// could not be recorded decrypts nothing.
    #[cfg(all(feature = "cli", any(feature = "sqlite", feature = "postgres")))]
    pub(crate) async fn resolve_audited(
        &self,
        entry: &AuditEntry,
        references: &[Reference],
    ) -> Result<(u64, Resolved), PersonalError> {
        let sequence = self.record_access(entry).await?;
        Ok((sequence, self.resolve(references).await?))
    }
}
