//! The SQL event stores' [`EventStore`], written once for every [`SqlStore`]: the statements
//! are the backend's constants ([`EventSql`]), the binding and decoding are here, and the
//! backend keeps only its appends and `read_all`.

use std::future::Future;
use std::time::{Duration, SystemTime};

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type};
use tracing::Instrument;

use super::{Backend, PreparedCommit, bound, db, limit, nanos, to_i64};
use crate::store::{
    CommandRecord, Commit, EventStore, RecordedEvent, Snapshot, StoreError, StreamEvent,
    validate_commit,
};
use crate::telemetry;
use crate::value::StreamId;

/// One dialect's event store statements; `$n` are the parameters, in the order given.
pub(crate) struct EventSql {
    /// At most `$3` events of stream `$1` after version `$2`, selected as
    /// [`super::StoreRow::event`] reads them, in version order.
    pub(crate) read_stream: &'static str,
    /// The same page as `read_stream`, selected as [`super::StoreRow::stream_event`] reads it.
    pub(crate) load_stream: &'static str,
    /// Command log entries from offset `$1`, at most `$2`, selected as
    /// [`super::StoreRow::command`] reads them, in log order.
    pub(crate) read_commands: &'static str,
    /// The snapshot of stream `$1`, selected as [`super::StoreRow::snapshot`] reads it.
    pub(crate) load_snapshot: &'static str,
    /// Stores snapshot `($1 stream, $2 version, $3 snapshot version, $4 state as JSON text,
    /// $5 saved at)`, unless a newer one is stored.
    pub(crate) save_snapshot: &'static str,
    /// The checkpoint of consumer `$1`, locked until the transaction ends where the database
    /// has row locks (SQLite's write transaction already excludes other writers).
    pub(crate) lock_checkpoint: &'static str,
}

/// The highest global position, `NULL` for an empty store.
const HEAD_POSITION: &str = "SELECT MAX(position) FROM eventsourcery_events";

/// A SQL event store: what its backend does its own way. [`EventStore`] and
/// [`ConsumerStore`](crate::store::ConsumerStore) are implemented once for every such store.
///
/// Not nameable outside the crate: the stores' public API is their traits and constructors.
pub(crate) trait SqlStore: Clone + Send + Sync + 'static {
    /// The database.
    type Db: Backend;
    /// Held while this process writes, where the database admits one writer at a time.
    type Writer: Send;

    /// The backend's name in spans.
    const NAME: &'static str;
    /// The statements in the backend's dialect.
    const SQL: &'static EventSql;

    /// The connection pool.
    fn pool(&self) -> &Pool<Self::Db>;

    /// Writes a checked commit.
    fn append_prepared(
        &self,
        commit: PreparedCommit,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// [`EventStore::read_all`]: how a reader is kept from skipping an event that commits
    /// late differs by backend.
    fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Waits for this process's turn to write (nothing where writers run in parallel).
    fn writer(&self) -> impl Future<Output = Self::Writer> + Send;

    /// A write transaction, taken in turn with this process's other writers.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<(Self::Writer, Transaction<'static, Self::Db>), StoreError>> + Send;

    /// [`ConsumerStore::wait_for_append`](crate::store::ConsumerStore::wait_for_append); by
    /// default it just waits (polling).
    fn wait_for_append(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            tokio::time::sleep(timeout).await;
            Ok(())
        }
    }

    /// [`ConsumerStore::stop_waiting`](crate::store::ConsumerStore::stop_waiting); by default
    /// there is nothing to give back.
    fn stop_waiting(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The rows of one page of a stream, read with `sql` (`read_stream` or `load_stream`). A macro
/// rather than a function, which would repeat the impl's where-clause.
macro_rules! stream_page {
    ($store:expr, $sql:expr, $stream:expr, $after:expr, $limit:expr) => {
        sqlx::query($sql)
            .bind($stream.as_str())
            .bind(bound($after))
            .bind(i64::try_from($limit).unwrap_or(i64::MAX))
            .fetch_all($store.pool())
            .await
            .map_err(db("read_stream"))?
    };
}

#[async_trait::async_trait]
impl<S> EventStore for S
where
    S: SqlStore,
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as sqlx::Database>::Row>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
{
    async fn append(&self, commit: Commit) -> Result<Vec<RecordedEvent>, StoreError> {
        validate_commit(&commit)?;
        let commit = PreparedCommit::new(commit)?;
        let span = telemetry::append_span(S::NAME, commit.streams.len(), commit.events.len());
        let result = self.append_prepared(commit).instrument(span.clone()).await;
        if let Err(error) = &result {
            telemetry::failed(&span, telemetry::store_error_type(error));
        }
        result
    }

    async fn read_stream_page(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = stream_page!(self, S::SQL.read_stream, stream, after_version, limit);
        rows.iter().map(super::StoreRow::event).collect()
    }

    async fn load_stream_page(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let rows = stream_page!(self, S::SQL.load_stream, stream, after_version, limit);
        rows.iter()
            .map(|row| super::StoreRow::stream_event(stream, row, S::Db::REFUSES_MALFORMED_JSON))
            .collect()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let last: Option<i64> = sqlx::query_scalar(HEAD_POSITION)
            .fetch_one(self.pool())
            .await
            .map_err(db("head position"))?;
        Ok(last.map_or(0, |p| u64::try_from(p).unwrap_or(0)))
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        SqlStore::read_all(self, after_position, limit).await
    }

    async fn read_commands(
        &self,
        offset: u64,
        count: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let rows = sqlx::query(S::SQL.read_commands)
            .bind(bound(offset))
            .bind(limit(count))
            .fetch_all(self.pool())
            .await
            .map_err(db("read_commands"))?;
        rows.iter().map(super::StoreRow::command).collect()
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(S::SQL.load_snapshot)
            .bind(stream.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db("load_snapshot"))?;
        row.map(|row| super::StoreRow::snapshot(stream, &row))
            .transpose()
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let version = to_i64(snapshot.stream_version, "snapshot stream version")?;
        let saved_at = nanos(SystemTime::now())?;
        let _writer = self.writer().await;
        sqlx::query(S::SQL.save_snapshot)
            .bind(snapshot.stream_id.as_str())
            .bind(version)
            .bind(i64::from(snapshot.snapshot_version))
            .bind(snapshot.state.to_string())
            .bind(saved_at)
            .execute(self.pool())
            .await
            .map_err(db("save_snapshot"))?;
        Ok(())
    }
}
