//! Personal data: kept out of the event log, encrypted per data subject, erasable.
//!
//! A personal value type derives [`PersonalData`](macro@crate::PersonalData). In an event it is
//! held as [`Personal<T>`] in a field marked `#[personal(subject = field)]`, where `field` is a
//! [`PersonalKey`] of the same event. On save the value is encrypted with the subject's own
//! data key into the personal data store, and the event payload keeps only a reference; on load
//! it is decrypted back, or reads as erased ([`Personal::is_erased`]) once the subject has been forgotten
//! with [`PersonalVault::erase`](crate::vault::PersonalVault::erase).
//!
//! Guide: [personal data](crate::docs::personal_data).

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

use crate::value::ValueError;

pub(crate) mod crypto;
mod error;
mod field;
pub(crate) mod lookup;
pub(crate) mod reference;

pub use crypto::{MASTER_KEY_ENV, MasterKey, MasterKeyRing};
pub use error::PersonalError;
pub use field::{DecodeLeaf, EncodeLeaf, EventPersonalField, PersonalField};
pub use lookup::lookup_form;
pub use reference::PersonalRef;

/// The personal identification token: one per data subject, issued by the framework, never
/// erased. It is a random identifier that says nothing about the person.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonalKey(Uuid);

impl PersonalKey {
    /// Issues a new personal key for a new data subject.
    pub fn issue() -> Self {
        Self(Uuid::new_v4())
    }

    /// The key as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// A key from a stored UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for PersonalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for PersonalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonalKey({})", self.0)
    }
}

impl std::str::FromStr for PersonalKey {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .map(Self)
            .map_err(|e| ValueError::new("PersonalKey", e))
    }
}

impl serde::Serialize for PersonalKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PersonalKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::value::deserialize_from_str(deserializer)
    }
}

/// Derives [`PersonalData`](trait@PersonalData) for a value type holding personal data, and a `Debug`
/// that shows none of it (`Email(<redacted>)`).
///
/// Do not derive `Debug` yourself: `#[derive(PersonalData, Debug)]` fails with "conflicting
/// implementations of trait `Debug`" (E0119), because this derive already implements it.
///
/// The type has no serde form: deriving or implementing `Serialize`, `Deserialize` or
/// [`SerializableValue`](trait@crate::value::SerializableValue) for it, or putting it in a plain field of an
/// event, a command, a serde type or a value, does not compile, and the error says to hold it
/// as `Personal<T>` in a `#[personal(subject = ...)]` field of an event (or as `T` in a
/// `#[personal]` field of a command). Where you also derive `Serialize`, rustc first reports
/// the overlap with the derive's own refused impl ("type annotations needed: cannot satisfy
/// `T: Serialize`").
pub use eventsourcery_derive::PersonalData;

/// A value type that holds personal data, derived with `#[derive(PersonalData)]`.
///
/// It has no serde implementation, so it cannot reach an event payload except through a
/// `#[personal]` field; its derived `Debug` shows no content.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not personal data",
    label = "`#[personal]` fields hold personal data types",
    note = "hold the value in a type of your own that derives `PersonalData` (`#[derive(PersonalData)] struct Email(String);`), or remove `#[personal]` if the field is not personal"
)]
pub trait PersonalData: Sized + Send + Sync + 'static {
    /// The kind of data, for the blind index and exports (`#[personal_data(name = "...")]`, by
    /// default the type name in snake case).
    const KIND: &'static str;

    /// The plaintext that gets encrypted. An error (a value whose parts do not serialize)
    /// fails the write: nothing is stored in place of the value.
    fn to_plaintext(&self) -> Result<zeroize::Zeroizing<String>, ValueError>;

    /// The value back from its plaintext.
    fn from_plaintext(plaintext: &str) -> Result<Self, ValueError>;

    /// The form used for blind-index lookups: by default [`lookup_form`] of the plaintext
    /// (compatibility normalized, case folded, invisible characters removed, trimmed), so
    /// `Ann@Example.com ` finds `ann@example.com`.
    ///
    /// Changing it changes the hashes a lookup computes: values indexed before the change are
    /// found again once the index is rebuilt with
    /// [`PersonalVault::rotate_index_key`](crate::vault::PersonalVault::rotate_index_key).
    fn lookup_form(&self) -> Result<zeroize::Zeroizing<String>, ValueError> {
        self.to_plaintext().map(|plaintext| lookup_form(&plaintext))
    }
}

/// A personal value as an event holds it: present, or erased with its data subject.
///
/// A value read from the store also knows where it is kept (its reference, subject and
/// field), which is what lets an aggregate holding it be snapshotted with no plaintext in
/// the snapshot (see [`aggregate::snapshot`](crate::aggregate::snapshot)). Equality compares the values only.
///
/// ```
/// # use eventsourcery::{Personal, PersonalData};
/// #[derive(PersonalData, Clone, PartialEq)]
/// struct Email(String);
///
/// let email = Personal::new(Email("ann@example.com".into()));
/// assert_eq!(email.present().map(|e| e.0.as_str()), Some("ann@example.com"));
/// assert_eq!(format!("{email:?}"), "Personal(<redacted>)");
/// assert!(Personal::<Email>::erased().is_erased());
/// ```
pub struct Personal<T> {
    value: Option<T>,
    /// Where the value is stored, when it was read from the store.
    origin: Option<Origin>,
}

/// Where a personal value read from the store is kept.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) reference: Uuid,
    pub(crate) subject: PersonalKey,
    /// `"{event or command}.{field}"`: the field the value is bound to.
    pub(crate) field: Arc<str>,
}

impl<T> Personal<T> {
    /// A present value, not yet stored.
    pub fn new(value: T) -> Self {
        Self {
            value: Some(value),
            origin: None,
        }
    }

    /// An erased value: its subject was forgotten, and the value is gone for good.
    pub fn erased() -> Self {
        Self {
            value: None,
            origin: None,
        }
    }

    /// A value read from the store, with where it is kept.
    pub(crate) fn stored(value: T, origin: Origin) -> Self {
        Self {
            value: Some(value),
            origin: Some(origin),
        }
    }

    /// The value, if present.
    pub fn present(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// Whether the value was erased.
    pub fn is_erased(&self) -> bool {
        self.value.is_none()
    }

    /// The value, if present.
    pub fn into_present(self) -> Option<T> {
        self.value
    }

    /// The reference the value is stored under, if it is present and was read from the store
    /// (not created since): what a read model keeps instead of the value.
    pub fn reference(&self) -> Option<PersonalRef<T>> {
        let origin = self.origin.as_ref().filter(|_| self.value.is_some())?;
        Some(PersonalRef::new(
            origin.reference,
            origin.subject,
            origin.field.to_string(),
        ))
    }

    pub(crate) fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }
}

impl<T: Clone> Clone for Personal<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            origin: self.origin.clone(),
        }
    }
}

impl<T: PartialEq> PartialEq for Personal<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Personal<T> {}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(_) => f.write_str("Personal(<redacted>)"),
            None => f.write_str("Personal(<erased>)"),
        }
    }
}

/// The field naming an event's data subject.
#[diagnostic::on_unimplemented(
    message = "the data subject of a personal field must be a `PersonalKey`, not `{Self}`",
    label = "not a `PersonalKey`",
    note = "name a field of type `eventsourcery::personal::PersonalKey` in `subject = ...`"
)]
pub trait Subject {
    /// The subject's key.
    fn personal_key(&self) -> PersonalKey;
}

impl Subject for PersonalKey {
    fn personal_key(&self) -> PersonalKey {
        *self
    }
}
