//! The stores: in memory (tests), SQLite (the embedded default) and PostgreSQL (many processes
//! sharing one database), each an event store with its consumer state, a key store and a
//! personal data store, over the traits of [`crate::store`].

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::{MemoryKeyStore, MemoryPersonalStore, MemoryStore};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresKeyStore, PostgresPersonalStore, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteKeyStore, SqlitePersonalStore, SqliteStore};
