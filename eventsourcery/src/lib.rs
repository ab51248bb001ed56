#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod backend;
mod batch;
mod bus;
mod cache;
pub mod codec;
pub mod command;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod config;
pub mod dispatch;
mod engine;
pub mod erasure;
mod error;
pub mod event;
mod fs;
pub mod personal;
mod repository;
pub mod service;
pub mod store;
mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "postgres")]
pub mod tls;
pub mod value;
pub mod vault;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aggregate::{Aggregate, AggregateRoot, Apply};
pub use backend::MemoryStore;
#[cfg(feature = "postgres")]
pub use backend::PostgresStore;
#[cfg(feature = "sqlite")]
pub use backend::SqliteStore;
#[cfg(feature = "postgres")]
pub use backend::{PostgresKeyStore, PostgresPersonalStore};
#[cfg(feature = "sqlite")]
pub use backend::{SqliteKeyStore, SqlitePersonalStore};
pub use bus::{CommandBus, CommandBusBuilder, DEFAULT_MAX_ATTEMPTS, ExecuteOptions};
pub use command::{BoxError, Command, CommandError, CommandReceipt, Error};
pub use dispatch::{Consumer, ConsumerKind, Dispatcher, Envelope, EventMeta, ProjectionTx};
pub use event::{DomainEvent, EventError, EventRegistry, Metadata, Upcaster};
pub use personal::{MasterKey, Personal, PersonalKey};
pub use repository::Repository;
pub use service::{CommandMeta, Dep, FromServices, Services, Store};
pub use store::{EventStore, RecordedEvent, StoreError};
pub use value::{Id, SerializableValue, StreamId, ValueError};
pub use vault::PersonalVault;

/// The attribute for implementing [`EventStore`], [`Consumer`] and the other async traits by
/// hand: `#[eventsourcery::async_trait]`.
pub use async_trait::async_trait;

/// The sqlx this crate was built with, with the drivers its features enable: pools given to
/// `from_pool`, returned by `pool()` and used in a `ProjectionTx` are its types, so use this
/// path (`eventsourcery::sqlx::PgPool`) rather than a separate sqlx dependency that could
/// resolve to another version.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sqlx;

/// Derives [`SerializableValue`]: a string form, serde through it, and value equality.
///
/// On a newtype (`struct VoucherId(Uuid)`) the string form is the inner value's; on a struct
/// with named fields it is compact JSON; on an enum of unit variants it is the variant name.
/// It also derives `PartialEq`, `Eq` and `Hash`: do not derive those yourself.
pub use eventsourcery_derive::SerializableValue;

/// Derives [`DomainEvent`]. See the [crate docs](crate) for the attributes.
pub use eventsourcery_derive::DomainEvent;

/// Derives [`Aggregate`] from `#[aggregate(id = T, events(E1, E2, ...))]`.
pub use eventsourcery_derive::Aggregate;

/// Derives [`Command`], with `#[command(name = "...")]` to set its log name.
pub use eventsourcery_derive::Command;

/// Derives [`personal::PersonalData`] for a value type holding personal data, and a `Debug`
/// that shows none of it (`Email(<redacted>)`).
///
/// Do not derive `Debug` yourself: `#[derive(PersonalData, Debug)]` fails with "conflicting
/// implementations of trait `Debug`" (E0119), because this derive already implements it.
///
/// The type has no serde form: deriving or implementing `Serialize`, `Deserialize` or
/// [`SerializableValue`](trait@SerializableValue) for it, or putting it in a plain field of an
/// event, a command, a serde type or a value, does not compile, and the error says to hold it
/// as `Personal<T>` in a `#[personal(subject = ...)]` field of an event (or as `T` in a
/// `#[personal]` field of a command). Where you also derive `Serialize`, rustc first reports
/// the overlap with the derive's own refused impl ("type annotations needed: cannot satisfy
/// `T: Serialize`").
pub use eventsourcery_derive::PersonalData;

/// Registers an `async fn` as the handler of the command it takes first; every other
/// parameter is resolved by the command bus (see [`FromServices`]).
pub use eventsourcery_derive::handler;

/// Registers an `async fn` taking an event as a listener: `#[listener(consumer = "name")]`.
/// Delivery is at least once; see [`dispatch`].
pub use eventsourcery_derive::listener;

/// Registers an `async fn` taking an event and [`dispatch::Commands`] as a process manager.
pub use eventsourcery_derive::process_manager;

/// Registers an `async fn` taking an event and `&mut ProjectionTx<'_>` as a projection whose
/// update commits with its checkpoint: `#[projection(consumer = "name", reset = clear_fn)]`.
pub use eventsourcery_derive::projection;
