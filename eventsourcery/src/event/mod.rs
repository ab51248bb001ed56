//! Domain events: names, schema versions, payload encoding, the event registry and upcasters.
//!
//! An event derives [`DomainEvent`](macro@DomainEvent), which gives it the stable name and
//! schema version it is stored under and the encoding of its fields (personal ones through
//! [`codec`](crate::codec)). Every event type registers itself in the [`EventRegistry`], so
//! that two types claiming one name are found when the bus is built, and old payloads are
//! upgraded on read by the [`upcaster!`](crate::upcaster)s registered for their versions.
//! Decoding a bad payload gives an [`EventError`] naming where it is, never a panic. Guide:
//! [events](crate::docs::events).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::codec::{DecodeContext, EncodeContext};

/// Derives [`DomainEvent`]. See the [crate docs](crate) for the attributes.
pub use eventsourcery_derive::DomainEvent;

mod metadata;
pub use metadata::{Metadata, MetadataError, RequestMetadata};

/// A domain event, derived with `#[derive(DomainEvent)]` on a struct (one event type) or on an
/// enum whose variants each wrap one event struct.
///
/// Each event struct has a stable name and a schema version, set with
/// `#[event(name = "...", version = N)]` (by default the type name in snake case, and 1).
/// The payload is JSON; personal fields never reach it (they go through the [`EncodeContext`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    label = "not a domain event",
    note = "add `#[derive(DomainEvent)]` to `{Self}`"
)]
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// The stored name of this event.
    fn event_name(&self) -> &'static str;

    /// The schema version this code writes for this event.
    fn event_version(&self) -> u32;

    /// Whether a stored event named `name` decodes into this type.
    fn handles(name: &str) -> bool;

    /// The names this type decodes, for subscriptions.
    fn event_names() -> Vec<&'static str>;

    /// Encodes the payload, routing personal fields into `cx`.
    fn encode(&self, cx: &mut EncodeContext) -> Result<Value, EventError>;

    /// Decodes a payload already upcast to the current schema version.
    fn decode(name: &str, payload: Value, cx: &mut DecodeContext<'_>) -> Result<Self, EventError>;

    /// Decodes a payload of the current schema version straight from its stored JSON text,
    /// with no [`Value`] in between: what loads do for an event without personal fields.
    /// `None` when it does not (a personal field, an unknown name, any failure): the caller
    /// then decodes through [`decode`](Self::decode), which reports what is wrong. Generated
    /// by the derive.
    #[doc(hidden)]
    fn decode_text(_name: &str, _payload: &str) -> Option<Self> {
        None
    }
}

/// An event that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// No event type in this program is registered under the stored name.
    #[error("unknown event `{name}`: no type in this program derives DomainEvent with that name")]
    UnknownEvent {
        /// The stored event name.
        name: String,
    },
    /// The event is known, but the type asked to decode it does not handle it.
    #[error("`{type_name}` does not handle event `{name}`")]
    NotHandled {
        /// The type that was asked to decode.
        type_name: &'static str,
        /// The stored event name.
        name: String,
    },
    /// The payload does not match the event's shape.
    #[error("malformed payload for event `{name}`, field `{field}`: {source}")]
    Malformed {
        /// The event name.
        name: String,
        /// The field at fault, or `*` for the payload as a whole.
        field: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The stored schema version is newer than this program knows.
    #[error(
        "event `{name}` is stored at schema version {stored}, newer than version {supported} in this program"
    )]
    NewerVersion {
        /// The event name.
        name: String,
        /// The stored version.
        stored: u32,
        /// The version this code writes.
        supported: u32,
    },
    /// An old schema version has no upcaster to the next one.
    #[error(
        "event `{name}` is stored at schema version {stored}, and no upcaster from version {stored} is registered"
    )]
    MissingUpcaster {
        /// The event name.
        name: String,
        /// The stored version.
        stored: u32,
    },
    /// An upcaster rejected an old payload.
    #[error("upcasting event `{name}` from version {from}: {reason}")]
    Upcast {
        /// The event name.
        name: String,
        /// The version the upcaster reads.
        from: u32,
        /// What the upcaster said.
        reason: String,
    },
    /// A personal field could not be stored or read.
    #[error("personal field `{field}` of event `{name}`: {source}")]
    Personal {
        /// The event or command name.
        name: String,
        /// The field.
        field: String,
        /// What went wrong.
        #[source]
        source: crate::personal::PersonalError,
    },
}

impl EventError {
    /// A copy of this error (see [`StoreError`](crate::store::StoreError)'s); a serde error
    /// is copied with its message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::UnknownEvent { name } => Self::UnknownEvent { name: name.clone() },
            Self::NotHandled { type_name, name } => Self::NotHandled {
                type_name,
                name: name.clone(),
            },
            Self::Malformed {
                name,
                field,
                source,
            } => Self::Malformed {
                name: name.clone(),
                field: field.clone(),
                source: <serde_json::Error as serde::de::Error>::custom(source),
            },
            Self::NewerVersion {
                name,
                stored,
                supported,
            } => Self::NewerVersion {
                name: name.clone(),
                stored: *stored,
                supported: *supported,
            },
            Self::MissingUpcaster { name, stored } => Self::MissingUpcaster {
                name: name.clone(),
                stored: *stored,
            },
            Self::Upcast { name, from, reason } => Self::Upcast {
                name: name.clone(),
                from: *from,
                reason: reason.clone(),
            },
            Self::Personal {
                name,
                field,
                source,
            } => Self::Personal {
                name: name.clone(),
                field: field.clone(),
                source: source.duplicate(),
            },
        }
    }
}

/// An event type known to this program, submitted by `#[derive(DomainEvent)]`.
#[derive(Debug)]
pub struct EventRegistration {
    /// The stored name.
    pub name: &'static str,
    /// The schema version the code writes.
    pub version: u32,
    /// The Rust type, for messages.
    pub type_name: &'static str,
}

inventory::collect!(EventRegistration);

/// Turns a payload stored at schema version `from` into version `from + 1`.
///
/// Register one with [`upcaster!`](crate::upcaster).
#[derive(Debug)]
pub struct Upcaster {
    /// The event name.
    pub event: &'static str,
    /// The version this upcaster reads; it writes `from + 1`.
    pub from: u32,
    /// The conversion.
    pub upcast: fn(Value) -> Result<Value, String>,
}

inventory::collect!(Upcaster);

/// Registers an [`Upcaster`]: `upcaster!("voucher_issued", 1 => |payload| Ok(payload))`.
///
/// ```
/// eventsourcery::upcaster!("doc_example_renamed", 1 => |mut payload| {
///     if let Some(object) = payload.as_object_mut() {
///         let old = object.remove("name").unwrap_or_default();
///         object.insert("title".into(), old);
///     }
///     Ok(payload)
/// });
/// ```
#[macro_export]
macro_rules! upcaster {
    ($event:literal, $from:literal => $f:expr) => {
        $crate::__private::inventory::submit! {
            $crate::event::Upcaster { event: $event, from: $from, upcast: $f }
        }
    };
}

/// Two event types registered under the same name, or other registry trouble.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two types claim one event name.
    #[error(
        "event name `{name}` is claimed by both `{first}` and `{second}`; give one of them `#[event(name = \"...\")]`"
    )]
    DuplicateEventName {
        /// The name.
        name: &'static str,
        /// One type.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// Two upcasters for one event and version.
    #[error("two upcasters are registered for event `{name}` from version {from}")]
    DuplicateUpcaster {
        /// The event name.
        name: &'static str,
        /// The version.
        from: u32,
    },
    /// Two handlers for one command.
    #[error("command `{command}` has two handlers: `{first}` and `{second}`")]
    DuplicateHandler {
        /// The command name.
        command: &'static str,
        /// One handler.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
}

/// All event types and upcasters in this program.
#[derive(Debug)]
pub struct EventRegistry {
    events: HashMap<&'static str, &'static EventRegistration>,
    upcasters: HashMap<(&'static str, u32), &'static Upcaster>,
    problems: Vec<RegistryError>,
}

impl EventRegistry {
    /// The registry of this program, built on first use.
    pub fn global() -> &'static EventRegistry {
        static REGISTRY: OnceLock<EventRegistry> = OnceLock::new();
        REGISTRY.get_or_init(Self::collect)
    }

    fn collect() -> Self {
        let mut events: HashMap<&'static str, &'static EventRegistration> = HashMap::new();
        let mut upcasters = HashMap::new();
        let mut problems = Vec::new();
        for registration in inventory::iter::<EventRegistration> {
            if let Some(first) = events.insert(registration.name, registration) {
                let (first, second) = ordered(first.type_name, registration.type_name);
                problems.push(RegistryError::DuplicateEventName {
                    name: registration.name,
                    first,
                    second,
                });
            }
        }
        for upcaster in inventory::iter::<Upcaster> {
            if upcasters
                .insert((upcaster.event, upcaster.from), upcaster)
                .is_some()
            {
                problems.push(RegistryError::DuplicateUpcaster {
                    name: upcaster.event,
                    from: upcaster.from,
                });
            }
        }
        Self {
            events,
            upcasters,
            problems,
        }
    }

    /// Checks that no two types claim one name. Called when a command bus is built.
    pub fn check(&self) -> Result<(), RegistryError> {
        self.problems.first().cloned().map_or(Ok(()), Err)
    }

    /// The registration for a stored event name.
    pub fn get(&self, name: &str) -> Option<&'static EventRegistration> {
        self.events.get(name).copied()
    }

    /// Whether a payload of `name` stored at `version` needs no upcaster.
    pub(crate) fn is_current(&self, name: &str, version: u32) -> bool {
        self.get(name).is_some_and(|r| r.version == version)
    }

    /// Brings a payload stored at `version` up to the version this program writes.
    pub fn upcast(
        &self,
        name: &str,
        version: u32,
        mut payload: Value,
    ) -> Result<Value, EventError> {
        let registration = self.get(name).ok_or_else(|| EventError::UnknownEvent {
            name: name.to_owned(),
        })?;
        if version > registration.version {
            return Err(EventError::NewerVersion {
                name: name.to_owned(),
                stored: version,
                supported: registration.version,
            });
        }
        for from in version..registration.version {
            let upcaster = self
                .upcasters
                .get(&(registration.name, from))
                .ok_or_else(|| EventError::MissingUpcaster {
                    name: name.to_owned(),
                    stored: version,
                })?;
            payload = (upcaster.upcast)(payload).map_err(|reason| EventError::Upcast {
                name: name.to_owned(),
                from,
                reason,
            })?;
        }
        Ok(payload)
    }
}

fn ordered(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Upcasts and decodes a stored event into `E`.
pub fn decode_stored<E: DomainEvent>(
    name: &str,
    version: u32,
    payload: Value,
    cx: &mut DecodeContext<'_>,
) -> Result<E, EventError> {
    if !E::handles(name) {
        return Err(EventError::NotHandled {
            type_name: std::any::type_name::<E>(),
            name: name.to_owned(),
        });
    }
    let payload = EventRegistry::global().upcast(name, version, payload)?;
    E::decode(name, payload, cx)
}

/// Helpers for generated code.
#[doc(hidden)]
pub mod codec {
    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    pub fn object(name: &str, payload: Value) -> Result<Map<String, Value>, EventError> {
        match payload {
            Value::Object(map) => Ok(map),
            other => Err(EventError::Malformed {
                name: name.to_owned(),
                field: "*".to_owned(),
                source: <serde_json::Error as serde::de::Error>::invalid_type(
                    unexpected(&other),
                    &"a JSON object",
                ),
            }),
        }
    }

    pub fn encode_field<T: Serialize>(
        name: &str,
        field: &str,
        value: &T,
    ) -> Result<Value, EventError> {
        serde_json::to_value(value).map_err(|source| EventError::Malformed {
            name: name.to_owned(),
            field: field.to_owned(),
            source,
        })
    }

    pub fn decode_field<T: DeserializeOwned>(
        name: &str,
        map: &mut Map<String, Value>,
        field: &str,
    ) -> Result<T, EventError> {
        let value = map.remove(field).unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|source| EventError::Malformed {
            name: name.to_owned(),
            field: field.to_owned(),
            source,
        })
    }

    /// A payload's text decoded by a generated visitor of its fields; `None` on any failure.
    pub fn decode_text<'de, V: serde::de::Visitor<'de>>(
        payload: &'de str,
        visitor: V,
    ) -> Option<V::Value> {
        use serde::Deserializer as _;
        let mut deserializer = serde_json::Deserializer::from_str(payload);
        let value = deserializer.deserialize_map(visitor).ok()?;
        deserializer.end().ok()?;
        Some(value)
    }

    /// Stores a field's value read by a generated visitor; a field given twice is an error
    /// (the decode through `Value` then reports the payload as it reads it).
    pub fn put<T, E: serde::de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
        match slot.replace(value) {
            None => Ok(()),
            Some(_) => Err(E::custom("a field given twice")),
        }
    }

    /// The value of a field a generated visitor read, or of one the payload lacks (`missing`,
    /// the field's [`EventField::missing`]).
    pub fn take<T, E: serde::de::Error>(
        slot: Option<T>,
        missing: fn() -> Option<T>,
    ) -> Result<T, E> {
        slot.or_else(missing)
            .ok_or_else(|| E::custom("a missing field"))
    }

    /// A payload's key, borrowed from the text where it has no escapes.
    pub struct FieldKey<'de>(std::borrow::Cow<'de, str>);

    impl FieldKey<'_> {
        /// The key.
        pub fn as_str(&self) -> &str {
            &self.0
        }
    }

    impl<'de> serde::Deserialize<'de> for FieldKey<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Key;
            impl<'de> serde::de::Visitor<'de> for Key {
                type Value = FieldKey<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                    Ok(FieldKey(std::borrow::Cow::Borrowed(key)))
                }
                fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                    Ok(FieldKey(std::borrow::Cow::Owned(key.to_owned())))
                }
            }
            deserializer.deserialize_str(Key)
        }
    }

    fn unexpected(value: &Value) -> serde::de::Unexpected<'_> {
        use serde::de::Unexpected;
        match value {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::Number(_) => Unexpected::Other("a number"),
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        }
    }

    /// A type that can be an ordinary (not personal) field of an event or command.
    ///
    /// Generated code calls these methods through `<T as EventField>` paths rather than through
    /// bounded functions: the errors for a field then read alike in `encode` and `decode`, and
    /// the compiler shows them once. Serde's traits are bounds of the blanket impl, not
    /// supertraits, so the compiler's error is this trait's message, not serde's.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be stored in an event or command payload",
        label = "this field has no serializable form",
        note = "if `{Self}` holds personal data, hold it in a type that derives `PersonalData`, as `Personal<T>` in a `#[personal(subject = ...)]` field of an event or as `T` in a `#[personal]` field of a command: it is then encrypted into the personal data store",
        note = "otherwise derive `SerializableValue` (or serde's `Serialize` and `Deserialize`) for `{Self}`"
    )]
    pub trait EventField: Sized {
        /// Encodes the value of field `field` of event or command `name`.
        fn encode_field(&self, name: &str, field: &str) -> Result<Value, EventError>;

        /// Reads the field's value from a payload being decoded from its text.
        fn next_value<'de, A: serde::de::MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error>;

        /// The field's value when the payload lacks it, as `decode_field` reads it (`null`):
        /// `None` for an `Option`, say; `None` when there is none.
        fn missing() -> Option<Self>;

        /// Takes field `field` of event or command `name` out of its payload.
        fn decode_field(
            name: &str,
            map: &mut Map<String, Value>,
            field: &str,
        ) -> Result<Self, EventError>;
    }

    impl<T: Serialize + DeserializeOwned> EventField for T {
        fn encode_field(&self, name: &str, field: &str) -> Result<Value, EventError> {
            encode_field(name, field, self)
        }

        fn next_value<'de, A: serde::de::MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
            map.next_value()
        }

        fn missing() -> Option<Self> {
            serde_json::from_value(Value::Null).ok()
        }

        fn decode_field(
            name: &str,
            map: &mut Map<String, Value>,
            field: &str,
        ) -> Result<Self, EventError> {
            decode_field(name, map, field)
        }
    }
}
