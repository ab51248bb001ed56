//! Support for generated code. Not public API: anything here may change in any release.

use std::any::Any;
use std::fmt;
use std::str::FromStr;

mod refusals;

pub use refusals::*;

pub use inventory;
pub use serde;
pub use serde_json;
pub use zeroize::Zeroizing;

pub use crate::aggregate::Aggregate;
pub use crate::codec::{DecodeContext, EncodeContext};
pub use crate::command::Command;
pub use crate::command::HandlerOutput;
pub use crate::command::registry::{CommandRegistration, HandlerFailure, HandlerRegistration};
pub use crate::event::DomainEvent;
pub use crate::event::codec::{EventField, FieldKey, decode_text, object, put, take};
pub use crate::event::{EventError, EventRegistration};
pub use crate::personal::PersonalData;
pub use crate::personal::lookup::{LookupField, PersonalFieldType};
use crate::personal::{EventPersonalField, PersonalField, PersonalKey, Subject};
pub use crate::service::{CommandContext, FromContext, Parameter};
pub use crate::value::Entity;
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
            encode: |cx, name, field, subject, value, lookup| {
                cx.personal(name, field, subject, value, lookup)
                    .map_err(field_error(name, field))
            },
            decode: |cx, name, field, subject, map| {
                let value = map.remove(field).unwrap_or(serde_json::Value::Null);
                cx.personal(subject, &value)
                    .map_err(field_error(name, field))
            },
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

    /// The registration of the event field `field` (`"{event}.{field}"`) with its type.
    pub const fn field(&self, field: &'static str) -> PersonalFieldType {
        PersonalFieldType {
            field,
            kind: self.kind,
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

pub use crate::dispatch::consumer::ConsumerRegistration;
pub use crate::dispatch::{ConsumerKind, EventContext, ProjectionTx};

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
    note = "take `EventMeta`, `Commands` (to execute commands caused by the event: that is how a process manager changes an aggregate), `Once`, `PersonalRefs`, `Repository<A>` (to read an aggregate), `Dep<T>` for a registered service, or `&mut ProjectionTx<'_>` in a projection"
)]
pub trait ConsumerParameter: Sized {
    /// Resolves the parameter.
    fn resolve(cx: &EventContext<'_>) -> Result<Self, crate::service::ResolveError>;
    /// What it needs, for start-up checks.
    fn describe() -> Parameter;
}

impl<T: for<'a> FromContext<EventContext<'a>>> ConsumerParameter for T {
    fn resolve(cx: &EventContext<'_>) -> Result<Self, crate::service::ResolveError> {
        T::from_context(cx)
    }

    fn describe() -> Parameter {
        <T as FromContext<EventContext<'_>>>::parameter()
    }
}

// What the `Aggregate` derive's `EventOf` impls name.
pub use crate::aggregate::{Apply, EventOf};

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
