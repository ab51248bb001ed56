#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod backend;
mod batch;
pub mod bus;
mod cache;
pub mod codec;
pub mod command;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod config;
pub mod dispatch;
pub mod docs;
mod engine;
pub mod erasure;
pub mod error;
pub mod event;
mod fs;
#[cfg(feature = "axum")]
pub mod http;
pub mod metrics;
#[cfg(all(feature = "cli", any(feature = "sqlite", feature = "postgres")))]
pub mod ops;
pub mod personal;
#[cfg(feature = "nats")]
pub mod publish;
mod redact;
mod repository;
pub mod service;
pub mod store;
mod sync;
mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "postgres")]
pub mod tls;
pub mod value;
pub mod vault;

#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

pub use aggregate::{Aggregate, AggregateRoot, Apply};
pub use backend::MemoryStore;
#[cfg(feature = "postgres")]
pub use backend::PostgresStore;
#[cfg(feature = "sqlite")]
pub use backend::SqliteStore;
pub use bus::CommandBus;
pub use command::{Command, CommandError, Error};
pub use dispatch::Dispatcher;
pub use event::DomainEvent;
pub use personal::{Personal, PersonalData, PersonalKey};
pub use repository::Repository;
pub use service::Dep;
pub use store::{EventStore, StoreError};
pub use value::{Id, SerializableValue};
pub use vault::PersonalVault;

/// The sqlx this crate was built with, with the drivers its features enable: pools given to
/// `from_pool`, returned by `pool()` and used in a `ProjectionTx` are its types, so use this
/// path (`eventsourcery::sqlx::PgPool`) rather than a separate sqlx dependency that could
/// resolve to another version.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sqlx;

/// Registers an `async fn` as the handler of the command it takes first; every other
/// parameter is resolved by the command bus (see [`service::FromContext`]).
pub use eventsourcery_derive::handler;

/// Registers an `async fn` taking an event as a listener: `#[listener(consumer = "name")]`.
/// Delivery is at least once; see [`dispatch`].
pub use eventsourcery_derive::listener;

/// Registers an `async fn` taking an event and [`dispatch::Commands`] as a process manager.
pub use eventsourcery_derive::process_manager;

/// Registers an `async fn` taking an event and `&mut dispatch::ProjectionTx<'_>` as a projection whose
/// update commits with its checkpoint: `#[projection(consumer = "name", reset = clear_fn)]`.
pub use eventsourcery_derive::projection;
