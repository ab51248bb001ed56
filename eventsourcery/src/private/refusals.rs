//! Refusals: what keeps personal data out of plain payloads at compile time.
//!
//! `#[derive(PersonalData)]` gives its type a `Serialize` and a `Deserialize` whose where-clause
//! never holds, and `Personal<T>` has the same. Every serde path to personal data (an unmarked
//! event or command field, a field of a serde type or of a `SerializableValue`) then fails on
//! that clause, and rustc reports the clause's trait, whose message says what to write instead
//! (rather than serde's note, which would suggest deriving `Serialize`). The derive's clauses are
//! higher-ranked (`for<'a>`) only because rustc rejects a trivially false bound on a concrete
//! type at the impl itself (stable has no `trivial_bounds`), and skips bounds with binders.
//!
//! A serde impl or `SerializableValue` that the user adds to a personal type is caught by the
//! derive's probe (`Probe`, below), which picks a refusal by autoref specialization on the
//! concrete type (the derive refuses generic types) and fails with that refusal's
//! `#[diagnostic::on_unimplemented]` message. The assert-not-impl pattern (two blanket impls that
//! turn ambiguous) would only give E0283 "type annotations needed", which carries no message of
//! ours, and which rustc does not even report once the overlap of the user's serde impl with the
//! refused one has been (itself an E0283, on the impl).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use super::parse_inner;
use crate::personal::{Personal, PersonalData};
use crate::value::ValueError;

mod sealed {
    /// Implemented by nothing: the refusal traits require it, so that no crate can implement
    /// one and unlock a refused impl. Generic, so that a bound on `Plaintext` is not a
    /// trivially false one.
    pub trait Never<T: ?Sized> {}
}

/// The self type of the refusal bounds: the plain text that a refused impl would write.
#[derive(Debug)]
pub struct Plaintext;

/// The bound of a personal data type's `Serialize` and `Deserialize`, which never holds.
#[diagnostic::on_unimplemented(
    message = "`{T}` is personal data: it cannot be serialized",
    label = "personal data has no serde form",
    note = "in an event, hold it as `Personal<{T}>` in a field marked `#[personal(subject = ...)]`; in a command, as `{T}` in a field marked `#[personal]`: it is then encrypted into the personal data store, and the payload keeps a reference",
    note = "a serde type or a `SerializableValue` cannot hold personal data: give each personal value its own `#[personal]` field of the event or command"
)]
pub trait PersonalDataIsNeverSerialized<T>: sealed::Never<T> {}

/// The bound of `Personal<T>`'s `Serialize` and `Deserialize`, which never holds.
#[diagnostic::on_unimplemented(
    message = "`Personal<{T}>` is personal data: it cannot be serialized",
    label = "a `Personal<_>` goes in a `#[personal]` field only",
    note = "mark the field `#[personal(subject = ...)]`, naming the `PersonalKey` field of its data subject: its value is then encrypted into the personal data store, and the payload keeps a reference",
    note = "a serde type or a `SerializableValue` cannot hold personal data: give each personal value its own `#[personal]` field of the event or command",
    note = "in the state of an aggregate that takes snapshots, mark the field `#[serde(with = \"eventsourcery::aggregate::snapshot\")]`: the snapshot then holds its reference, not the value"
)]
pub trait PersonalIsOnlyInAPersonalField<T>: sealed::Never<T> {}

#[doc(hidden)]
impl<T> serde::Serialize for Personal<T>
where
    Plaintext: PersonalIsOnlyInAPersonalField<T>,
{
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        unreachable!("the bound never holds")
    }
}

#[doc(hidden)]
impl<'de, T> serde::Deserialize<'de> for Personal<T>
where
    Plaintext: PersonalIsOnlyInAPersonalField<T>,
{
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("the bound never holds")
    }
}

/// Autoref specialization on a personal data type `T`: `(&&&&Probe::<T>::new()).refusal()`
/// finds the first of `RefuseValue`, `RefuseSerialize`, `RefuseDeserialize` that `T`
/// implements, else `RefuseNothing`; its result's `check` fails when `T` is serializable.
pub struct Probe<T>(PhantomData<T>);

impl<T> Probe<T> {
    /// The probe of `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

/// Probed first: `T` is a `SerializableValue`.
pub trait RefuseValue<T> {
    /// The refusal.
    fn refusal(&self) -> IsValue<T> {
        IsValue(PhantomData)
    }
}

impl<T: crate::value::SerializableValue> RefuseValue<T> for &&&Probe<T> {}

/// Probed second: `T` implements `Serialize` (which a personal data type has only as the
/// derive's refused impl, so this holds when a second impl makes it ambiguous).
pub trait RefuseSerialize<T> {
    /// The refusal.
    fn refusal(&self) -> IsSerialize<T> {
        IsSerialize(PhantomData)
    }
}

impl<T: serde::Serialize> RefuseSerialize<T> for &&Probe<T> {}

/// Probed third: `T` implements `Deserialize`.
pub trait RefuseDeserialize<T> {
    /// The refusal.
    fn refusal(&self) -> IsDeserialize<T> {
        IsDeserialize(PhantomData)
    }
}

impl<T: serde::de::DeserializeOwned> RefuseDeserialize<T> for &Probe<T> {}

/// Probed last: `T` has no serializable form.
pub trait RefuseNothing {
    /// No refusal.
    fn refusal(&self) -> NotSerializable {
        NotSerializable
    }
}

impl<T> RefuseNothing for Probe<T> {}

/// `T` is a `SerializableValue`.
pub struct IsValue<T>(PhantomData<T>);

impl<T> IsValue<T> {
    /// Fails: a personal data type is never a value.
    pub fn check(self)
    where
        T: PersonalDataIsNeverASerializableValue,
    {
    }
}

/// `T` implements `Serialize` other than by the derive's refused impl.
pub struct IsSerialize<T>(PhantomData<T>);

impl<T> IsSerialize<T> {
    /// Fails: a personal data type is never serialized.
    pub fn check(self)
    where
        T: PersonalDataNeverImplementsSerialize,
    {
    }
}

/// `T` implements `Deserialize` other than by the derive's refused impl.
pub struct IsDeserialize<T>(PhantomData<T>);

impl<T> IsDeserialize<T> {
    /// Fails: a personal data type is never deserialized from a payload.
    pub fn check(self)
    where
        T: PersonalDataNeverImplementsDeserialize,
    {
    }
}

/// `T` has no serializable form.
pub struct NotSerializable;

impl NotSerializable {
    /// Passes.
    pub fn check(self) {}
}

/// Never holds: see [`IsValue::check`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is personal data: it cannot also be a `SerializableValue`",
    label = "this type derives `PersonalData`",
    note = "remove `#[derive(SerializableValue)]` (or the `impl SerializableValue for {Self}`): a value's string form is stored in plain text",
    note = "in an event, hold it as `Personal<{Self}>` in a field marked `#[personal(subject = ...)]`; in a command, as `{Self}` in a field marked `#[personal]`: it is then encrypted into the personal data store"
)]
pub trait PersonalDataIsNeverASerializableValue: sealed::Never<Self> {}

/// Never holds: see [`IsSerialize::check`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is personal data: it cannot also implement `Serialize`",
    label = "this type derives `PersonalData`",
    note = "remove `#[derive(Serialize)]` (or the `impl Serialize for {Self}`): serde would put the data in a payload in plain text",
    note = "in an event, hold it as `Personal<{Self}>` in a field marked `#[personal(subject = ...)]`; in a command, as `{Self}` in a field marked `#[personal]`: it is then encrypted into the personal data store"
)]
pub trait PersonalDataNeverImplementsSerialize: sealed::Never<Self> {}

/// Never holds: see [`IsDeserialize::check`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is personal data: it cannot also implement `Deserialize`",
    label = "this type derives `PersonalData`",
    note = "remove `#[derive(Deserialize)]` (or the `impl Deserialize for {Self}`): personal data is read back from the personal data store, never from a payload",
    note = "in an event, hold it as `Personal<{Self}>` in a field marked `#[personal(subject = ...)]`; in a command, as `{Self}` in a field marked `#[personal]`"
)]
pub trait PersonalDataNeverImplementsDeserialize: sealed::Never<Self> {}

/// Autoref specialization on the type `T` of a part of a `SerializableValue` (a newtype's inner
/// value or a field): `(&&Probe::<T>::new()).value_part()` is a `PersonalPart` if `T` is
/// personal data, else a `ValuePart`. The derive goes through it for every operation on the
/// part, and calls `refuse` once per part: personal data in a value is then one error, not one
/// per trait its type lacks and per serde call that needs it.
pub trait PersonalValuePart<T> {
    /// The part's operations.
    fn value_part(&self) -> PersonalPart<T> {
        PersonalPart(PhantomData)
    }
}

impl<T: PersonalData> PersonalValuePart<T> for &Probe<T> {}

/// See [`PersonalValuePart`].
pub trait PlainValuePart<T> {
    /// The part's operations.
    fn value_part(&self) -> ValuePart<T> {
        ValuePart(PhantomData)
    }
}

impl<T> PlainValuePart<T> for Probe<T> {}

/// The operations on a part of a value.
pub struct ValuePart<T>(PhantomData<T>);

impl<T> ValuePart<T> {
    /// Passes: the part is not personal data.
    pub fn refuse(self) {}

    /// Passes: the field of an entity is not personal data.
    pub fn refuse_in_entity(self) {}

    /// The part's string form.
    pub fn fmt(self, value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result
    where
        T: fmt::Display,
    {
        fmt::Display::fmt(value, f)
    }

    /// The part from its string form, naming the value type `type_name` in the error.
    pub fn parse(self, type_name: &'static str, s: &str) -> Result<T, ValueError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        parse_inner(type_name, s)
    }

    /// Whether two parts are equal.
    pub fn eq(self, a: &T, b: &T) -> bool
    where
        T: PartialEq,
    {
        a == b
    }

    /// Hashes the part.
    pub fn hash<H: std::hash::Hasher>(self, value: &T, state: &mut H)
    where
        T: std::hash::Hash,
    {
        value.hash(state);
    }

    /// Serializes the part, as a field of a value with named fields.
    pub fn serialize<S: serde::Serializer>(
        self,
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error>
    where
        T: serde::Serialize,
    {
        value.serialize(serializer)
    }

    /// Deserializes the part, as a field of a value with named fields.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<T, D::Error>
    where
        T: serde::Deserialize<'de>,
    {
        T::deserialize(deserializer)
    }
}

/// The bound of [`PersonalPart::refuse`], which never holds.
#[diagnostic::on_unimplemented(
    message = "`{T}` is personal data: a `SerializableValue` cannot hold it",
    label = "personal data in a value",
    note = "a value's string form is stored in plain text: give the event or command a field of its own for the personal part, `Personal<{T}>` marked `#[personal(subject = ...)]` in an event, `{T}` marked `#[personal]` in a command"
)]
pub trait PersonalDataIsNeverPartOfAValue<T>: sealed::Never<T> {}

/// The bound of [`PersonalPart::refuse_in_entity`], which never holds.
#[diagnostic::on_unimplemented(
    message = "`{T}` is personal data: an `Entity` cannot hold it",
    label = "personal data in an entity",
    note = "an entity is stored in plain text wherever it goes (an event, a command, a snapshot): leave the personal part out of the entity and give the event a field of its own for it, `Personal<{T}>` marked `#[personal(subject = ...)]`, beside the entity's id (in a command, `{T}` marked `#[personal]`)"
)]
pub trait PersonalDataIsNeverPartOfAnEntity<T>: sealed::Never<T> {}

/// A part of a value that is personal data. Its operations have no bounds, so that `refuse`
/// is the one error: they are never called, since the value does not compile.
pub struct PersonalPart<T>(PhantomData<T>);

impl<T> PersonalPart<T> {
    /// Fails: a value never holds personal data.
    pub fn refuse(self)
    where
        Plaintext: PersonalDataIsNeverPartOfAValue<T>,
    {
    }

    /// Fails: an entity never holds personal data.
    pub fn refuse_in_entity(self)
    where
        Plaintext: PersonalDataIsNeverPartOfAnEntity<T>,
    {
    }

    /// Never called.
    pub fn fmt(self, _: &T, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        unreachable!("a value with a personal part does not compile")
    }

    /// Never called.
    pub fn parse(self, _: &'static str, _: &str) -> Result<T, ValueError> {
        unreachable!("a value with a personal part does not compile")
    }

    /// Never called.
    pub fn eq(self, _: &T, _: &T) -> bool {
        unreachable!("a value with a personal part does not compile")
    }

    /// Never called.
    pub fn hash<H: std::hash::Hasher>(self, _: &T, _: &mut H) {
        unreachable!("a value with a personal part does not compile")
    }

    /// Never called.
    pub fn serialize<S: serde::Serializer>(self, _: &T, _: S) -> Result<S::Ok, S::Error> {
        unreachable!("a value with a personal part does not compile")
    }

    /// Never called.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(self, _: D) -> Result<T, D::Error> {
        unreachable!("a value with a personal part does not compile")
    }
}
