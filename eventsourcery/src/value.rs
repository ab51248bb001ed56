//! Values, identifiers and entities: the string form of `#[derive(SerializableValue)]` types,
//! and the identity equality of `#[derive(Entity)]` ones.
//!
//! A [`SerializableValue`] has value equality and one string form, used by `Display`,
//! `FromStr` and serde alike, so an id or an amount reads the same in a payload, a stream id
//! and a log line. A newtype over a UUID is an [`Id`] (import the trait to call
//! [`generate`](Id::generate)); a [`StreamId`] names an aggregate's stream. An [`Entity`] is
//! equal to another with the same id, whatever its other fields hold. Guide:
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

/// Derives [`Entity`]: equality and hashing by the field marked `#[entity(id)]`, and serde.
///
/// An entity is an object with an identity that lives inside an aggregate's state or an event
/// (a bed in a ward, a line of an order): two entities with the same id are the same entity,
/// whatever their other fields say. The derive goes on a struct with named fields, exactly one
/// of them marked `#[entity(id)]`, and gives it:
///
/// - `PartialEq`, `Eq` and `Hash` on the id field only (do not derive those yourself), so a
///   `HashSet` of entities holds one per id;
/// - [`Entity::id`], the id field;
/// - `Serialize` and `Deserialize` as an object of its fields, so it can be a field of an
///   event, of a command or of a snapshot-taking aggregate's state. Fields that an entity no
///   longer has are ignored when old events are read, as an event's own are.
///
/// An entity is stored in plain text wherever it goes, so it cannot hold personal data: a
/// field whose type derives `PersonalData` does not compile (as in a `SerializableValue`), and
/// neither does a `Personal<T>` one. Keep the personal value in its own `#[personal]` field of
/// the event, beside the entity's id.
///
/// ```
/// use std::collections::HashSet;
///
/// use eventsourcery::SerializableValue;
/// use eventsourcery::value::Entity;
///
/// #[derive(SerializableValue, Clone, Debug)]
/// struct BedId(u32);
///
/// #[derive(Entity, Clone, Debug)]
/// struct Bed {
///     #[entity(id)]
///     id: BedId,
///     occupied: bool,
/// }
///
/// let free = Bed { id: BedId(7), occupied: false };
/// let taken = Bed { id: BedId(7), occupied: true };
/// assert_eq!(free, taken); // the same bed, in two states
/// assert_eq!(taken.id(), &BedId(7));
/// let beds: HashSet<Bed> = [free, taken].into_iter().collect();
/// assert_eq!(beds.len(), 1);
/// ```
pub use eventsourcery_derive::Entity;

/// An object with an identity: equal to another when their ids are equal, usually derived with
/// `#[derive(Entity)]` (which also gives it serde, through the rules that keep personal data
/// out of it).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an entity",
    label = "needs an id",
    note = "an entity is a struct with named fields and `#[derive(Entity)]`, its id field marked `#[entity(id)]`: `struct Bed {{ #[entity(id)] id: BedId, occupied: bool }}`"
)]
pub trait Entity: Eq + Hash {
    /// The type of the id, usually a `SerializableValue` newtype (`struct BedId(Uuid)`).
    type Id: Eq + Hash;

    /// The id: what makes two entities the same one.
    fn id(&self) -> &Self::Id;
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
