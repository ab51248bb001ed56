//! The audit log of reads of personal values: who decrypted which subjects' values, where,
//! when and why. It lives in the personal data store (see
//! [`PersonalStore::append_audit`](super::PersonalStore::append_audit)) and holds no personal
//! value: subject keys, field names and log positions only.

use std::time::SystemTime;

use crate::personal::PersonalKey;

/// One audited read of personal values, as it is recorded: written before the values are
/// shown, so that no read goes unrecorded.
///
/// It names the subjects and fields read, never their values. Subject keys are never erased
/// (see [`Erasure`](super::Erasure)), so an entry stays meaningful after an erasure and holds
/// nothing the erasure must remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When the values were read.
    pub at: SystemTime,
    /// Who read them: the operator's name or id, as given (`--actor`).
    pub actor: String,
    /// What was done: `"decrypt"` for values shown by `events show --decrypt` or `events tail
    /// --decrypt`.
    pub action: String,
    /// Why (a ticket or request id; never personal data).
    pub reason: String,
    /// The stream read, or `None` for a read of the global log.
    pub stream: Option<String>,
    /// The global positions of the events whose values were read, in order.
    pub positions: Vec<u64>,
    /// The subjects whose values were read, each once.
    pub subjects: Vec<PersonalKey>,
    /// The fields read, `"{event}.{field}"`, each once.
    pub fields: Vec<String>,
}

impl AuditEntry {
    /// What is wrong with the entry, if anything: an entry must say who read and why.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.actor.trim().is_empty() {
            Some("an audit entry needs an actor (who reads)")
        } else if self.reason.trim().is_empty() {
            Some("an audit entry needs a reason (why)")
        } else if self.action.trim().is_empty() {
            Some("an audit entry needs an action (what was done)")
        } else {
            None
        }
    }
}

/// An audit entry as stored, with its place in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its sequence number: increasing in the order entries were appended, from 1.
    pub sequence: u64,
    /// The entry.
    pub entry: AuditEntry,
}
