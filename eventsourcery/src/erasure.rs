//! The fact that a subject was erased, in the global log, so that what was derived from its
//! personal data is forgotten too.
//!
//! The vault erases what it holds; a listener or projection may have copied personal values
//! (a search index, a mailing list, a read model). [`CommandBus::erase`](crate::CommandBus::erase)
//! erases through the vault and then appends [`SubjectErased`], a PII-free fact (the subject's
//! key, when, why), to a stream of the subject's own, once per erasure. A consumer registered
//! for it deletes or anonymizes its copies, once, with its checkpoint:
//!
//! ```
//! use eventsourcery::erasure::SubjectErased;
//! use eventsourcery::dispatch::EventMeta;
//!
//! #[eventsourcery::listener(consumer = "mailing_list_forgets")]
//! async fn forget(event: SubjectErased, meta: EventMeta) -> Result<(), eventsourcery::Error> {
//!     // delete the subscriber `event.subject` from the mailing list (idempotent: meta.event_id)
//!     let _ = (event.subject, meta.event_id);
//!     Ok(())
//! }
//! ```
//!
//! A read model that holds personal values by reference instead
//! ([`PersonalRef`](crate::personal::PersonalRef)) has nothing to forget: its references read
//! as erased.
//!
//! Guide: [what was derived from the data forgets
//! too](crate::docs::personal_data#what-was-derived-from-the-data-forgets-too).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::codec::{DecodeContext, EncodeContext};
use crate::event::{DomainEvent, EventError, EventRegistration};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::StoreError;
use crate::value::StreamId;

/// The stored name of [`SubjectErased`].
pub const SUBJECT_ERASED: &str = "eventsourcery.subject_erased";

/// The PII-free fact that a data subject was erased: appended to the global log by
/// [`CommandBus::erase`](crate::CommandBus::erase), once per erasure, in the stream
/// [`stream_of`] the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubjectErased {
    /// The subject, whose personal values now read as erased.
    pub subject: PersonalKey,
    /// When the erasure was recorded (the key store's erasure record).
    pub erased_at: SystemTime,
    /// Why (a request id or a policy name; never personal data).
    pub reason: String,
}

inventory::submit! {
    EventRegistration {
        name: SUBJECT_ERASED,
        version: 1,
        type_name: "eventsourcery::erasure::SubjectErased",
    }
}

/// The stream that holds the erasure facts of `subject`.
pub fn stream_of(subject: PersonalKey) -> StreamId {
    StreamId::new(format!("eventsourcery.erasure-{subject}"))
}

/// Nanoseconds since the Unix epoch, saturating (an erasure is never before 1970).
pub(crate) fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[diagnostic::do_not_recommend]
impl DomainEvent for SubjectErased {
    fn event_name(&self) -> &'static str {
        SUBJECT_ERASED
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn handles(name: &str) -> bool {
        name == SUBJECT_ERASED
    }

    fn event_names() -> Vec<&'static str> {
        vec![SUBJECT_ERASED]
    }

    fn encode(&self, _: &mut EncodeContext) -> Result<Value, EventError> {
        Ok(json!({
            "subject": self.subject.to_string(),
            "erased_at_ns": nanos(self.erased_at),
            "reason": self.reason,
        }))
    }

    fn decode(name: &str, payload: Value, _: &mut DecodeContext<'_>) -> Result<Self, EventError> {
        let malformed = |field: &str, source: serde_json::Error| EventError::Malformed {
            name: name.to_owned(),
            field: field.to_owned(),
            source,
        };
        let field = |key: &str| payload.get(key).cloned().unwrap_or(Value::Null);
        let subject =
            serde_json::from_value(field("subject")).map_err(|e| malformed("subject", e))?;
        let ns: u64 = serde_json::from_value(field("erased_at_ns"))
            .map_err(|e| malformed("erased_at_ns", e))?;
        let reason = serde_json::from_value(field("reason")).map_err(|e| malformed("reason", e))?;
        Ok(Self {
            subject,
            erased_at: UNIX_EPOCH + Duration::from_nanos(ns),
            reason,
        })
    }
}

/// A subject could not be erased, or the fact of its erasure not appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EraseError {
    /// The bus has no personal data vault, so it holds no personal data to erase.
    #[error("the command bus has no personal data vault; give it one with `.personal_data(vault)`")]
    NoVault,
    /// The vault failed; erasing again finishes the job.
    #[error("erasing subject: {0}")]
    Personal(#[from] PersonalError),
    /// The event store failed while the fact was appended; erasing again appends it.
    #[error("appending the fact of the erasure: {0}")]
    Store(#[from] StoreError),
}
