//! The errors and small types every layer shares: boxed errors and futures, the refusal to
//! reach a personal data store without TLS, and copies of driver errors.

use std::future::Future;
use std::pin::Pin;

/// A boxed error from a command handler or a consumer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A key store or personal data store would be reached over a network without TLS.
#[cfg(feature = "postgres")]
///
/// Shows the store, host, port and `sslmode`, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {store} at {host}:{port} would be reached over the network without TLS \
     (sslmode={ssl_mode}); enable TLS: add `sslmode=verify-full` to its URL (with \
     `sslrootcert=/path/to/ca.pem` for a private CA), or set EVENTSOURCERY_SSLMODE=verify-full; \
     only on a network you trust, allow plaintext explicitly with \
     EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES=1 (`Settings::allow_plaintext_personal_stores`, \
     or `PlaintextConnections::Allow`)"
)]
#[non_exhaustive]
pub struct PlaintextRefused {
    /// Which store: "key store" or "personal data store".
    pub store: &'static str,
    /// The host it names.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The `sslmode` in effect.
    pub ssl_mode: &'static str,
}

/// An error and its sources, `a: b: c`, each said once (many messages already include their
/// source's): for the ops commands' reports and the testkit's assertions.
#[cfg(any(
    feature = "testkit",
    all(feature = "cli", any(feature = "sqlite", feature = "postgres"))
))]
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let message = source.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        current = source.source();
    }
    text
}

/// Whether `error`, or one of its sources, is a database refusing a transaction because it met
/// another: a PostgreSQL serialization failure (SQLSTATE `40001`) or deadlock (`40P01`). Not
/// the fault of what the transaction did, so worth trying again as it is.
pub(crate) fn is_transaction_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Some(sqlx::Error::Database(database)) = error.downcast_ref::<sqlx::Error>()
            && matches!(database.code().as_deref(), Some("40001" | "40P01"))
        {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A copy of `error`, for reporting one failure to several callers (sqlx errors are not
/// `Clone`): the same variant where it carries no data or a message, an I/O error with its
/// message otherwise.
pub(crate) fn copy_sqlx_error(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed => sqlx::Error::WorkerCrashed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::Protocol(message) => sqlx::Error::Protocol(message.clone()),
        // Whatever else broke the exchange with the database, told as such.
        other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
    }
}
