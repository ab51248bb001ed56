//! Values and identifiers: the string form of `#[derive(SerializableValue)]` types.
//!
//! A [`SerializableValue`] has value equality and one string form, used by `Display`,
//! `FromStr` and serde alike, so an id or an amount reads the same in a payload, a stream id
//! and a log line. A newtype over a UUID is an [`Id`] (import the trait to call
//! [`generate`](Id::generate)); a [`StreamId`] names an aggregate's stream. Guide:
//! [values and ids](crate::docs::values_and_ids).

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::str::FromStr;

use uuid::Uuid;

/// Derives [`SerializableValue`]: a string form, serde through it, and value equality.
///
/// On a newtype (`struct VoucherId(Uuid)`) the string form is the inner value's; on a struct
/// with named fields it is compact JSON; on an enum of unit variants it is the variant name.
/// It also derives `PartialEq`, `Eq` and `Hash`: do not derive those yourself.
pub use eventsourcery_derive::SerializableValue;

/// A value with value semantics and a string form, usually derived with
/// `#[derive(SerializableValue)]`.
///
/// The string form (`Display` / `FromStr`) is what the event payload stores, as the original
/// library's `toString` / `fromString`; serde goes through it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a serializable value",
    label = "needs a string form",
    note = "a value is a type of its own with `#[derive(SerializableValue)]`: a newtype such as `struct PatientId(Uuid)`, a struct with named fields or an enum of unit variants; if `{Self}` is such a type of yours, add the derive to it",
    note = "if `{Self}` holds personal data, it is never a value: hold it in a type that derives `PersonalData`, as `Personal<T>` in a `#[personal(subject = ...)]` field of an event"
)]
pub trait SerializableValue:
    fmt::Display + FromStr<Err = ValueError> + Eq + Hash + Clone + Send + Sync + 'static
{
}

/// A value that wraps exactly one inner value, implemented by `#[derive(SerializableValue)]` on
/// newtypes such as `struct VoucherId(Uuid)`.
pub trait Newtype: Sized {
    /// The wrapped type.
    type Inner;
    /// Wraps an inner value.
    fn from_inner(inner: Self::Inner) -> Self;
    /// The wrapped value.
    fn as_inner(&self) -> &Self::Inner;
}

/// An identifier that can be generated: every `SerializableValue` newtype over [`Uuid`].
///
/// Ids of different types are different types, so comparing a `VoucherId` with a `CandidateId`
/// or passing one where the other is expected does not compile.
///
/// ```
/// use eventsourcery::{Id, SerializableValue};
///
/// #[derive(SerializableValue, Clone, Debug)]
/// struct VoucherId(uuid::Uuid);
///
/// let id = VoucherId::generate();
/// let parsed: VoucherId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// ```
pub trait Id: SerializableValue {
    /// A new, unique id (a time-ordered UUIDv7, so ids sort roughly by creation time).
    fn generate() -> Self;
}

impl<T> Id for T
where
    T: SerializableValue + Newtype<Inner = Uuid>,
{
    fn generate() -> Self {
        T::from_inner(Uuid::now_v7())
    }
}

/// The string form of a value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {type_name}: {reason}")]
pub struct ValueError {
    type_name: &'static str,
    reason: String,
}

impl ValueError {
    /// A parse error for the value type `type_name`.
    pub fn new(type_name: &'static str, reason: impl fmt::Display) -> Self {
        Self {
            type_name,
            reason: reason.to_string(),
        }
    }

    /// The value type that failed to parse.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

/// The identity of an event stream: one aggregate instance, `"{aggregate}-{id}"`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// A stream id from its string form.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The stream of aggregate `name` with id `id`.
    pub fn for_aggregate(name: &str, id: &impl fmt::Display) -> Self {
        Self(format!("{name}-{id}"))
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", self.0)
    }
}

/// Parses the string form of a value inside `Deserialize`.
pub(crate) fn deserialize_from_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct Visitor<T>(PhantomData<fn() -> T>);

    impl<T> serde::de::Visitor<'_> for Visitor<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }

    deserializer.deserialize_str(Visitor(PhantomData))
}
