//! Support for generated code. Not public API: anything here may change in any release.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

pub use inventory;
pub use serde;
pub use serde_json;
pub use zeroize::Zeroizing;

pub use crate::DomainEvent;
pub use crate::command::{HandlerFailure, HandlerOutput, HandlerRegistration};
pub use crate::event::codec::{EventField, object};
pub use crate::event::{EventError, EventRegistration};
pub use crate::personal::PersonalData;
pub use crate::personal::{DecodeContext, EncodeContext};
use crate::personal::{EventPersonalField, PersonalField, PersonalKey, Subject};
pub use crate::service::{FromServices, HandlerContext, Parameter};
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

impl crate::SerializableValue for NoId {}

/// Parses the string form of a value inside `Deserialize`.
pub fn deserialize_from_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
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
pub fn event_personal<F: EventPersonalField>() -> PersonalCodec<F> {
    PersonalCodec::new()
}

/// The codec of a `#[personal]` field of a command: `T` or `Personal<T>` where
/// `T: PersonalData`.
pub fn command_personal<F: PersonalField>() -> PersonalCodec<F> {
    PersonalCodec::new()
}

/// Encodes and decodes one `#[personal]` field (see [`event_personal`]).
pub struct PersonalCodec<F> {
    encode: EncodePersonal<F>,
    decode: DecodePersonal<F>,
}

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
        }
    }
}

impl<F> PersonalCodec<F> {
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
    Ok(cx.personal(name, field, subject, value, lookup))
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
        .map_err(crate::personal::codec::field_error(name, field))
}

pub use crate::dispatch::{
    ConsumerKind, ConsumerRegistration, FromEvent, HandleContext, ProjectionTx,
};

/// A future returned by a generated consumer entry point.
pub type ConsumerFuture<'a> = crate::command::BoxFuture<'a, Result<(), crate::BoxError>>;

/// Decodes the event a consumer function takes; `None` if the envelope holds another event.
///
/// Takes `E`'s `handles` and `decode` rather than a `DomainEvent` bound: generated code names
/// them, and `event_names`, through `<E as DomainEvent>` paths spanned on the event type, so an
/// event type that is not a `DomainEvent` is one error.
pub fn consumer_event<E>(
    cx: &HandleContext<'_>,
    handles: fn(&str) -> bool,
    decode: DecodeEvent<E>,
) -> Result<Option<E>, crate::BoxError> {
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
    fn into_consumer_result(self) -> Result<(), crate::BoxError>;
}

impl<O: HandlerOutput> ConsumerOutput for O {
    fn into_consumer_result(self) -> Result<(), crate::BoxError> {
        self.into_result()
    }
}

/// Converts a consumer function's return value.
pub fn consumer_output<O: ConsumerOutput>(output: O) -> Result<(), crate::BoxError> {
    output.into_consumer_result()
}

// What the `Aggregate` derive's `EventOf` impls name.
pub use crate::aggregate::{Apply, EventOf};
