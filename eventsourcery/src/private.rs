//! Support for generated code. Not public API: anything here may change in any release.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

pub use inventory;
pub use serde;
pub use serde_json;
pub use zeroize::Zeroizing;

pub use crate::aggregate::Aggregate;
pub use crate::codec::{DecodeContext, EncodeContext};
pub use crate::command::Command;
pub use crate::command::{HandlerFailure, HandlerOutput, HandlerRegistration};
pub use crate::event::DomainEvent;
pub use crate::event::codec::{EventField, object};
pub use crate::event::{EventError, EventRegistration};
pub use crate::personal::PersonalData;
pub use crate::personal::lookup::LookupField;
use crate::personal::{EventPersonalField, PersonalField, PersonalKey, Subject};
pub use crate::service::{CommandContext, FromContext, Parameter};
pub use crate::value::SerializableValue;
pub use crate::value::{Newtype, ValueError};
pub use core::any::TypeId;

/// A future returned by a generated handler entry point.
pub type HandlerFuture = crate::command::BoxFuture<'static, Result<(), HandlerFailure>>;

/// The command a handler entry point was given.
///
/// Bounded by `Any` only: the registration checks that `C` is a command, and one check gives
/// the user one error.
pub fn downcast_command<C: Any>(command: Box<dyn Any + Send>) -> Result<C, HandlerFailure> {
    command.downcast::<C>().map(|c| *c).map_err(|_| {
        HandlerFailure::Resolve(crate::service::ResolveError::WrongCommand {
            expected: std::any::type_name::<C>(),
        })
    })
}

/// Converts a handler's return value.
pub fn handler_output<O: HandlerOutput>(output: O) -> Result<(), HandlerFailure> {
    output.into_result().map_err(HandlerFailure::Failed)
}

/// The id type of the stub `Aggregate` impl emitted after a derive error: a serializable value,
/// so the stub adds no error of its own to the one the derive reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoId;

impl fmt::Display for NoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no-id")
    }
}

impl FromStr for NoId {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        Err(ValueError::new(
            "NoId",
            format_args!("`{s}`: this aggregate has no id type"),
        ))
    }
}

impl crate::value::SerializableValue for NoId {}

/// Parses the string form of a value inside `Deserialize`.
pub fn deserialize_from_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    crate::value::deserialize_from_str(deserializer)
}

/// Parses an inner value from a string, naming the outer type in the error.
pub fn parse_inner<T>(type_name: &'static str, s: &str) -> Result<T, ValueError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    s.parse().map_err(|e| ValueError::new(type_name, e))
}

/// The data subject named by a `#[personal(subject = ...)]` field.
pub fn subject<S: Subject>(subject: &S) -> PersonalKey {
    subject.personal_key()
}

/// The codec of a `#[personal]` field of an event: `Personal<T>` where `T: PersonalData`.
///
/// Its bound is the one check of the field's type. Generated code calls it in `encode` and in
/// `decode` alike, spanned on the field's type, so a wrong type is reported once; the codec's
/// own methods have no bounds and add no error of their own.
pub const fn event_personal<F: EventPersonalField>() -> PersonalCodec<F> {
    PersonalCodec::new()
}

/// The codec of a `#[personal]` field of a command: `T` or `Personal<T>` where
/// `T: PersonalData`.
pub const fn command_personal<F: PersonalField>() -> PersonalCodec<F> {
    PersonalCodec::new()
}

/// Encodes and decodes one `#[personal]` field (see [`event_personal`]).
pub struct PersonalCodec<F> {
    encode: EncodePersonal<F>,
    decode: DecodePersonal<F>,
    /// The personal data type's kind and lookup form, for `#[personal(lookup)]`.
    kind: &'static str,
    form: LookupForm,
}

type LookupForm = fn(&str) -> Result<Zeroizing<String>, ValueError>;

type EncodePersonal<F> = fn(
    &mut EncodeContext,
    &str,
    &str,
    PersonalKey,
    &F,
    bool,
) -> Result<serde_json::Value, EventError>;

type DecodePersonal<F> = fn(
    &mut DecodeContext<'_>,
    &str,
    &str,
    PersonalKey,
    &mut serde_json::Map<String, serde_json::Value>,
) -> Result<F, EventError>;

impl<F: PersonalField> PersonalCodec<F> {
    const fn new() -> Self {
        Self {
            encode: encode_personal::<F>,
            decode: decode_personal::<F>,
            kind: <F::Data as PersonalData>::KIND,
            form: crate::personal::lookup::form_of::<F::Data>,
        }
    }
}

impl<F> PersonalCodec<F> {
    /// The registration of the field `field` (`"{event or command}.{field}"`) marked
    /// `#[personal(lookup)]`, so the blind index can be rebuilt from the stored values.
    pub const fn lookup(&self, field: &'static str) -> LookupField {
        LookupField {
            field,
            kind: self.kind,
            form: self.form,
        }
    }

    /// Moves the field `field` of `name` out of the payload.
    pub fn encode(
        &self,
        cx: &mut EncodeContext,
        name: &str,
        field: &str,
        subject: PersonalKey,
        value: &F,
        lookup: bool,
    ) -> Result<serde_json::Value, EventError> {
        (self.encode)(cx, name, field, subject, value, lookup)
    }

    /// Reads the field `field` of `name` back from the resolved values.
    pub fn decode(
        &self,
        cx: &mut DecodeContext<'_>,
        name: &str,
        field: &str,
        subject: PersonalKey,
        map: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<F, EventError> {
        (self.decode)(cx, name, field, subject, map)
    }
}

fn encode_personal<F: PersonalField>(
    cx: &mut EncodeContext,
    name: &str,
    field: &str,
    subject: PersonalKey,
    value: &F,
    lookup: bool,
) -> Result<serde_json::Value, EventError> {
    cx.personal(name, field, subject, value, lookup)
        .map_err(field_error(name, field))
}

fn decode_personal<F: PersonalField>(
    cx: &mut DecodeContext<'_>,
    name: &str,
    field: &str,
    subject: PersonalKey,
    map: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<F, EventError> {
    let value = map.remove(field).unwrap_or(serde_json::Value::Null);
    cx.personal(subject, &value)
        .map_err(field_error(name, field))
}

pub use crate::dispatch::{ConsumerKind, ConsumerRegistration, EventContext, ProjectionTx};

/// A future returned by a generated consumer entry point.
pub type ConsumerFuture<'a> = crate::command::BoxFuture<'a, Result<(), crate::error::BoxError>>;

/// Decodes the event a consumer function takes; `None` if the envelope holds another event.
///
/// Takes `E`'s `handles` and `decode` rather than a `DomainEvent` bound: generated code names
/// them, and `event_names`, through `<E as DomainEvent>` paths spanned on the event type, so an
/// event type that is not a `DomainEvent` is one error.
pub fn consumer_event<E>(
    cx: &EventContext<'_>,
    handles: fn(&str) -> bool,
    decode: DecodeEvent<E>,
) -> Result<Option<E>, crate::error::BoxError> {
    Ok(cx.envelope().decode_with(handles, decode)?)
}

/// A `DomainEvent::decode`.
pub type DecodeEvent<E> =
    fn(&str, serde_json::Value, &mut DecodeContext<'_>) -> Result<E, EventError>;

/// The `&mut` parameter of a consumer function, which gets the transaction of a projection's
/// batch: `&mut ProjectionTx<'_>` only.
#[diagnostic::on_unimplemented(
    message = "`&mut {Self}` cannot be a parameter of a listener, process manager or projection",
    label = "the one `&mut` parameter is `&mut ProjectionTx<'_>`",
    note = "a projection takes `&mut ProjectionTx<'_>` to update its read model in the transaction of its checkpoint; keep other state in a service and take it as `Dep<T>`"
)]
pub trait TxParam<'b> {
    /// The parameter from the transaction.
    fn from_tx<'a>(tx: &'a mut ProjectionTx<'b>) -> &'a mut Self;
}

impl<'b> TxParam<'b> for ProjectionTx<'b> {
    fn from_tx<'a>(tx: &'a mut ProjectionTx<'b>) -> &'a mut Self {
        tx
    }
}

/// What a listener, process manager or projection may return: what a command handler may.
///
/// Its own trait, for a message that names consumers; `HandlerOutput` is a bound of the blanket
/// impl, not a supertrait, so the compiler's error is this trait's message.
#[diagnostic::on_unimplemented(
    message = "a listener, process manager or projection must return `Result<(), E>` (or `()`), not `{Self}`",
    label = "unsupported return type",
    note = "return `Result<(), eventsourcery::Error>` or `Result<(), YourError>` where `YourError: std::error::Error + Send + Sync`; an error is retried, then parks the consumer"
)]
pub trait ConsumerOutput {
    /// Converts into the dispatcher's result.
    fn into_consumer_result(self) -> Result<(), crate::error::BoxError>;
}

impl<O: HandlerOutput> ConsumerOutput for O {
    fn into_consumer_result(self) -> Result<(), crate::error::BoxError> {
        self.into_result()
    }
}

/// Converts a consumer function's return value.
pub fn consumer_output<O: ConsumerOutput>(output: O) -> Result<(), crate::error::BoxError> {
    output.into_consumer_result()
}

/// A command handler's parameter: what implements [`FromContext<CommandContext>`].
///
/// Its own trait, for a message that names command handlers; `FromContext` is a bound of the
/// blanket impl, not a supertrait, so the compiler's error is this trait's message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a command handler parameter",
    label = "not resolvable from the command context",
    note = "take `Repository<YourAggregate>`, `Arc<dyn EventStore>`, `CommandMeta`, or a registered service as `Dep<{Self}>` (register it with `CommandBus::builder(..).service(..)`)"
)]
pub trait HandlerParameter: Sized {
    /// Resolves the parameter.
    fn resolve(cx: &CommandContext) -> Result<Self, crate::service::ResolveError>;
    /// What it needs, for start-up checks.
    fn describe() -> Parameter;
}

impl<T: FromContext<CommandContext>> HandlerParameter for T {
    fn resolve(cx: &CommandContext) -> Result<Self, crate::service::ResolveError> {
        T::from_context(cx)
    }

    fn describe() -> Parameter {
        T::parameter()
    }
}

/// A consumer function's parameter besides its event and its `&mut ProjectionTx<'_>`: what
/// implements [`FromContext<EventContext>`], with a message that names consumers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a listener, process manager or projection",
    label = "not resolvable for an event",
    note = "take `EventMeta`, `Commands` (to execute commands caused by the event: that is how a process manager changes an aggregate), `Once`, `PersonalRefs`, `Dep<T>` for a registered service, or `&mut ProjectionTx<'_>` in a projection"
)]
pub trait ConsumerParameter: Sized {
    /// Resolves the parameter.
    fn resolve(cx: &EventContext<'_>) -> Result<Self, crate::service::ResolveError>;
}

impl<T: for<'a> FromContext<EventContext<'a>>> ConsumerParameter for T {
    fn resolve(cx: &EventContext<'_>) -> Result<Self, crate::service::ResolveError> {
        T::from_context(cx)
    }
}

// What the `Aggregate` derive's `EventOf` impls name.
pub use crate::aggregate::{Apply, EventOf};

// Refusals: what keeps personal data out of plain payloads at compile time.
//
// `#[derive(PersonalData)]` gives its type a `Serialize` and a `Deserialize` whose where-clause
// never holds, and `Personal<T>` has the same. Every serde path to personal data (an unmarked
// event or command field, a field of a serde type or of a `SerializableValue`) then fails on
// that clause, and rustc reports the clause's trait, whose message says what to write instead
// (rather than serde's note, which would suggest deriving `Serialize`). The derive's clauses are
// higher-ranked (`for<'a>`) only because rustc rejects a trivially false bound on a concrete
// type at the impl itself (stable has no `trivial_bounds`), and skips bounds with binders.
//
// A serde impl or `SerializableValue` that the user adds to a personal type is caught by the
// derive's probe (`Probe`, below), which picks a refusal by autoref specialization on the
// concrete type (the derive refuses generic types) and fails with that refusal's
// `#[diagnostic::on_unimplemented]` message. The assert-not-impl pattern (two blanket impls that
// turn ambiguous) would only give E0283 "type annotations needed", which carries no message of
// ours, and which rustc does not even report once the overlap of the user's serde impl with the
// refused one has been (itself an E0283, on the impl).

use crate::personal::Personal;

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
    note = "a serde type or a `SerializableValue` cannot hold personal data: give each personal value its own `#[personal]` field of the event or command"
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

/// Wraps a personal error with the event and field it concerns.
fn field_error(
    name: &str,
    field: &str,
) -> impl FnOnce(crate::personal::PersonalError) -> EventError {
    let (name, field) = (name.to_owned(), field.to_owned());
    move |source| crate::event::EventError::Personal {
        name,
        field,
        source,
    }
}
