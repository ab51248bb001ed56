//! Durable consumer state in the event store's database: checkpoints, parked consumers,
//! skipped events, leases and processed-event marks.

use std::any::Any;
use std::fmt;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::{EventStore, StoreError};
use crate::error::BoxError;

/// Where a consumer stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConsumerState {
    /// The position of the last event it is done with (0 before the first).
    pub position: u64,
    /// Set while it is parked after repeated failures.
    pub parked: Option<Parked>,
}

/// Why a consumer stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Parked {
    /// The position of the event that kept failing.
    pub position: u64,
    /// The last error's message.
    pub error: String,
    /// When it was parked.
    pub parked_at: SystemTime,
}

impl Parked {
    /// A parked state.
    pub fn new(position: u64, error: impl Into<String>, parked_at: SystemTime) -> Self {
        Self {
            position,
            error: error.into(),
            parked_at,
        }
    }
}

/// The error of a row [`ConsumerStore::reset`] retired.
pub const RETIRED: &str =
    "retired: the consumer was rebuilt with another partition count; run the new count";

/// One row of consumer state, as [`ConsumerStore::consumers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerEntry {
    /// The row's name: a consumer's, or one of its partitions' (see
    /// [`Partition`](crate::dispatch::Partition)).
    pub name: String,
    /// Its checkpoint.
    pub position: u64,
    /// Who holds its lease, if the lease has not expired.
    pub holder: Option<Uuid>,
}

impl ConsumerEntry {
    /// An entry.
    pub fn new(name: impl Into<String>, position: u64, holder: Option<Uuid>) -> Self {
        Self {
            name: name.into(),
            position,
            holder,
        }
    }
}

/// Work done in the same transaction as a checkpoint move.
#[async_trait::async_trait]
pub trait TxWork: Send + Sync {
    /// Runs the work; an error rolls the whole transaction back.
    async fn run(&self, tx: &mut ProjectionTx<'_>) -> Result<(), BoxError>;
}

/// The consumer state an event store keeps beside its events, so that a projection's update and
/// its checkpoint share one transaction.
#[async_trait::async_trait]
pub trait ConsumerStore: EventStore {
    /// Where `consumer` stands.
    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState, StoreError>;

    /// Moves the checkpoint from `from` to `to`. Fails with [`StoreError::CheckpointMoved`],
    /// changing nothing, if it is not at `from` (another instance moved it).
    async fn advance(&self, consumer: &str, from: u64, to: u64) -> Result<(), StoreError>;

    /// Runs `work` and moves the checkpoint from `from` to `to` in one transaction. The outer
    /// error is the store's; the inner one is the work's, after which nothing was changed.
    async fn advance_with(
        &self,
        consumer: &str,
        from: u64,
        to: u64,
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), BoxError>, StoreError>;

    /// A rebuild's reset, in one transaction: runs `work` (a projection's reset hook), moves
    /// every row of `consumers` to the start of the log, unparked, and retires the rows of
    /// `retire`: moved to the start too, and parked with [`RETIRED`] (a dispatcher still
    /// configured with their partition count finds them parked and does not run them). Every
    /// row of both is locked (in name order) before `work` runs, so a batch another instance
    /// commits at the same time either commits first (and `work` clears it) or fails with
    /// [`StoreError::CheckpointMoved`] afterwards. The outer error is the store's; the inner
    /// one is the work's, after which nothing was changed.
    async fn reset(
        &self,
        consumers: &[String],
        retire: &[String],
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), BoxError>, StoreError>;

    /// Parks the consumer at the event at `position`, the one after its checkpoint, recording
    /// the error. Fails with [`StoreError::CheckpointMoved`], changing nothing, if the
    /// checkpoint is not at `position - 1` (another instance moved it, or a rebuild reset
    /// it), so that a stale instance cannot park a consumer at an event it no longer owns.
    async fn park(&self, consumer: &str, position: u64, error: &str) -> Result<(), StoreError>;

    /// Lets a parked consumer run again, retrying the event it stopped at.
    async fn unpark(&self, consumer: &str) -> Result<(), StoreError>;

    /// Records that the event at `position` was skipped, moves the checkpoint past it, and
    /// unparks the consumer, in one transaction.
    async fn skip(&self, consumer: &str, position: u64, reason: &str) -> Result<(), StoreError>;

    /// The positions skipped by `consumer`, with their reasons.
    async fn skipped(&self, consumer: &str) -> Result<Vec<(u64, String)>, StoreError>;

    /// Takes or renews the lease on `consumer` for `owner`; false if another owner holds an
    /// unexpired lease. One active instance per consumer across processes.
    async fn claim(&self, consumer: &str, owner: Uuid, lease: Duration)
    -> Result<bool, StoreError>;

    /// Gives the lease up, if `owner` holds it.
    async fn release(&self, consumer: &str, owner: Uuid) -> Result<(), StoreError>;

    /// The consumer rows whose names start with `prefix`, in name order: what a partitioned
    /// consumer's instances read to share its partitions out.
    async fn consumers(&self, prefix: &str) -> Result<Vec<ConsumerEntry>, StoreError>;

    /// Deletes the row of `consumer` (its checkpoint, parked state and lease; not its skipped
    /// events or processed marks). Used for the rows a partitioned consumer no longer uses.
    async fn forget(&self, consumer: &str) -> Result<(), StoreError>;

    /// Deletes the row of `consumer` as [`forget`](Self::forget) does, but only if nobody holds
    /// an unexpired lease on it; false, changing nothing, if somebody does. An instance that
    /// read a row's lease as expired deletes it with this, so that a renewal that came in
    /// between (the other instance was slow, not gone) keeps its row.
    async fn forget_expired(&self, consumer: &str) -> Result<bool, StoreError>;

    /// Marks `event_id` as processed by `consumer`; false if it already was (the idempotency
    /// record of at-least-once listeners).
    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError>;

    /// Whether `event_id` was marked as processed by `consumer`.
    async fn is_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError>;

    /// Waits until events may have been appended by another process, or `timeout` passes.
    /// The default just waits (polling); PostgreSQL wakes on LISTEN/NOTIFY.
    async fn wait_for_append(&self, timeout: Duration) -> Result<(), StoreError> {
        tokio::time::sleep(timeout).await;
        Ok(())
    }

    /// Gives back what [`wait_for_append`](Self::wait_for_append) holds between waits (on
    /// PostgreSQL, the LISTEN connection, which a pool would otherwise wait for on `close`).
    /// Called by a dispatch worker when it stops; the next wait takes it again.
    async fn stop_waiting(&self) {}
}

/// The connection inside the transaction that a projection's update shares with its checkpoint.
///
/// A backend with transactions hands its connection over with [`new`](Self::new); a projection
/// takes it back as the backend's type with [`connection`](Self::connection), or with
/// [`sqlite`](Self::sqlite) and [`postgres`](Self::postgres), which need no type and no arm for
/// the backends a build leaves out. Listeners, process managers and projections on the memory
/// store get [`none`](Self::none).
pub struct ProjectionTx<'a> {
    backend: &'static str,
    conn: Option<&'a mut (dyn Any + Send + Sync)>,
}

impl fmt::Debug for ProjectionTx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProjectionTx").field(&self.backend).finish()
    }
}

impl<'a> ProjectionTx<'a> {
    /// No transaction: listeners, process managers, and projections on the memory store.
    pub fn none() -> Self {
        Self {
            backend: "none",
            conn: None,
        }
    }

    /// The transaction on `conn`, a connection of the backend named `backend` (`"sqlite"`,
    /// `"postgres"`, or a backend of your own).
    pub fn new<C: Any + Send + Sync>(backend: &'static str, conn: &'a mut C) -> Self {
        Self {
            backend,
            conn: Some(conn),
        }
    }

    /// The connection of the transaction as `C`, if there is a transaction and its connection is
    /// a `C`. Name the connection types through `eventsourcery::sqlx` (as
    /// `eventsourcery::sqlx::PgConnection`): the same type from another version of sqlx is
    /// another type, and gives `None`.
    pub fn connection<C: Any>(&mut self) -> Option<&mut C> {
        self.conn.as_deref_mut()?.downcast_mut()
    }

    /// Whether there is a transaction (a SQL backend), not [`none`](Self::none).
    pub fn is_transaction(&self) -> bool {
        self.conn.is_some()
    }

    /// The name of the backend the transaction is on, `"none"` without one.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The same transaction, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> ProjectionTx<'_> {
        ProjectionTx {
            backend: self.backend,
            conn: self
                .conn
                .as_deref_mut()
                .map(|conn| conn as &mut (dyn Any + Send + Sync)),
        }
    }

    /// The SQLite connection of the transaction, if the store is SQLite.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        self.connection()
    }

    /// The PostgreSQL connection of the transaction, if the store is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        self.connection()
    }
}

#[cfg(test)]
mod tests {
    use super::ProjectionTx;

    /// A stand-in for a backend's connection.
    struct Conn(u32);

    /// A consumer may hold `&EventContext` (which holds the transaction) across an `.await`.
    #[test]
    fn a_transaction_is_send_and_sync() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<ProjectionTx<'static>>();
    }

    #[test]
    fn the_connection_comes_back_only_as_its_own_type() {
        let mut conn = Conn(7);
        let mut tx = ProjectionTx::new("test", &mut conn);
        assert!(tx.is_transaction());
        assert_eq!(tx.backend(), "test");
        assert!(tx.connection::<String>().is_none());
        tx.connection::<Conn>().expect("a Conn").0 += 1;
        let mut shorter = tx.reborrow();
        assert_eq!(shorter.connection::<Conn>().map(|c| c.0), Some(8));
        assert_eq!(format!("{tx:?}"), r#"ProjectionTx("test")"#);

        let mut none = ProjectionTx::none();
        assert!(!none.is_transaction());
        assert!(none.connection::<Conn>().is_none());
        assert!(none.reborrow().connection::<Conn>().is_none());
    }
}
