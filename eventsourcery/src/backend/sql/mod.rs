//! What the SQLite and PostgreSQL stores share: the embedded migrations, the conversions
//! between API types and columns, and the checks that turn a bad row into a typed error.
//!
//! Both backends store the same columns: JSON as text (PostgreSQL: `jsonb`, read back as
//! text), times as `BIGINT` nanoseconds since the Unix epoch (exact round trips of
//! `SystemTime` from 1677 to 2262), and `u64` versions and positions as `BIGINT`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::error::ErrorKind;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::{ColumnIndex, Decode, Row, SqlSafeStr, Type};
use uuid::Uuid;

use crate::event::Metadata;
use crate::store::{
    CommandOutcome, CommandRecord, Commit, NewEvent, RecordedEvent, Snapshot, StoreError,
};
use crate::value::StreamId;

/// The table in which the migrator records applied schema versions.
///
/// Not sqlx's default `_sqlx_migrations`, so the event store can live in a database whose
/// application runs its own sqlx migrations without the two version sequences clashing.
pub(super) const MIGRATIONS_TABLE: &str = "eventsourcery_event_store_migrations";

/// The events table.
pub(super) const EVENTS: &str = "eventsourcery_events";
/// The command log table.
pub(super) const COMMANDS: &str = "eventsourcery_commands";
/// The snapshots table.
pub(super) const SNAPSHOTS: &str = "eventsourcery_snapshots";

/// One backend's embedded, versioned migrations (also used by the personal data and key
/// stores, each with a migrations table of its own).
pub(crate) struct Schema {
    /// The database, for messages ("SQLite event store").
    pub(crate) database: &'static str,
    /// `(version, description, sql)`, in version order.
    pub(crate) migrations: &'static [(i64, &'static str, &'static str)],
}

impl Schema {
    /// The newest schema version this program knows.
    pub(crate) fn latest(&self) -> i64 {
        self.migrations.last().map_or(0, |m| m.0)
    }

    /// A migrator over the embedded migrations, recording into [`MIGRATIONS_TABLE`].
    pub(super) fn migrator(&self) -> Migrator {
        self.migrator_recording_into(MIGRATIONS_TABLE)
    }

    /// A migrator over the embedded migrations, recording into `table`, so that several
    /// schemas (event store, key store, personal data store) can share one database with
    /// version sequences of their own.
    pub(crate) fn migrator_recording_into(&self, table: &'static str) -> Migrator {
        let migrations = self
            .migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(table);
        migrator
    }

    /// Fails with [`StoreError::SchemaTooNew`] if the database was migrated by a newer program.
    pub(super) fn check_applied(&self, applied: Option<i64>) -> Result<(), StoreError> {
        match applied {
            Some(found) if found > self.latest() => Err(StoreError::SchemaTooNew {
                database: self.database,
                found,
                supported: self.latest(),
            }),
            _ => Ok(()),
        }
    }

    /// Maps a migrator error; an applied version this program does not have means the schema
    /// is newer than the program.
    pub(super) fn migrate_error(&self, error: MigrateError) -> StoreError {
        match error {
            MigrateError::VersionMissing(found) if found > self.latest() => {
                StoreError::SchemaTooNew {
                    database: self.database,
                    found,
                    supported: self.latest(),
                }
            }
            source => StoreError::Migrate {
                database: self.database,
                source,
            },
        }
    }
}

/// Wraps a driver error with what was being done.
pub(super) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { operation, source }
}

/// A commit waiting for its group (see `crate::batch`), and where its result goes.
pub(super) type PendingAppend =
    crate::batch::Queued<PreparedCommit, Result<Vec<RecordedEvent>, StoreError>>;

/// The append queue of one store and its clones: commits made at the same time are written
/// as one group (group commit).
pub(super) type AppendQueue =
    crate::batch::Batcher<PreparedCommit, Result<Vec<RecordedEvent>, StoreError>>;

/// Queues `commit` on `queue` together with whatever else is queued, and returns its own
/// result; `write` writes one group of `store`, answering each of its commits.
///
/// If the caller stops waiting before its commit left the queue, the commit is dropped
/// unwritten; after that, it is written (or not) with its group, as a statement already sent
/// would be.
pub(super) async fn append_in_group<S, W, Fut>(
    queue: &AppendQueue,
    store: &S,
    commit: PreparedCommit,
    write: W,
) -> Result<Vec<RecordedEvent>, StoreError>
where
    S: Clone,
    W: Fn(S, Vec<PendingAppend>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;

    queue
        .submit(commit, |group| {
            let span = tracing::debug_span!("append_group", commits = group.len());
            write(store.clone(), group).instrument(span)
        })
        .await
        .unwrap_or_else(|| Err(unanswered()))
}

/// Answers every commit of `group` with `error`, which failed them all.
pub(super) fn fail_group(group: Vec<PendingAppend>, error: &StoreError) {
    for queued in group {
        queued.answer(Err(match error {
            StoreError::Database { operation, source } => StoreError::Database {
                operation,
                source: copy_error(source),
            },
            other => StoreError::InvalidAppend(other.to_string()),
        }));
    }
}

/// The error of an append whose group-writing task ended without answering (it panicked):
/// whether the commit was written is unknown.
fn unanswered() -> StoreError {
    StoreError::Database {
        operation: "append",
        source: sqlx::Error::WorkerCrashed,
    }
}

pub(crate) use crate::error::copy_sqlx_error as copy_error;

pub(crate) mod consumers;
pub(crate) mod personal;

/// Which unique constraint an insert violated, if it violated one.
///
/// Recognised from the error kind (SQLSTATE 23505, SQLite extended codes 2067 and 1555),
/// never from the message text. The constraint name is known on PostgreSQL only.
pub(super) fn unique_violation(error: &sqlx::Error) -> Option<Option<&str>> {
    let error = error.as_database_error()?;
    (error.kind() == ErrorKind::UniqueViolation).then(|| error.constraint())
}

/// A `u64` as a `BIGINT` for a write; out of range is an invalid append.
pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::InvalidAppend(format!("{what} {value} is too large to store")))
}

/// A `usize` limit as a `BIGINT`, saturating.
pub(super) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A `u64` bound of a read as a `BIGINT`, saturating (nothing is stored beyond `i64::MAX`).
pub(super) fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(super) fn nanos(time: SystemTime) -> Result<i64, StoreError> {
    let out_of_range = || StoreError::InvalidAppend(format!("time {time:?} cannot be stored"));
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).map_err(|_| out_of_range()),
        Err(before) => i64::try_from(before.duration().as_nanos())
            .map(|n| -n)
            .map_err(|_| out_of_range()),
    }
}

/// The time `nanos` nanoseconds after (or before) the Unix epoch.
pub(crate) fn time(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Metadata as JSON text.
pub(super) fn metadata_json(metadata: &Metadata) -> Result<String, StoreError> {
    serde_json::to_string(metadata).map_err(|e| StoreError::InvalidAppend(format!("metadata: {e}")))
}

/// A command outcome as JSON text.
pub(super) fn outcome_json(outcome: &CommandOutcome) -> Result<String, StoreError> {
    serde_json::to_string(outcome)
        .map_err(|e| StoreError::InvalidAppend(format!("command outcome: {e}")))
}

/// A commit converted to column values, checked before any database work.
pub(super) struct PreparedCommit {
    /// Each stream and its expected version.
    pub(super) streams: Vec<(StreamId, i64)>,
    /// The events of all streams, in commit order.
    pub(super) events: Vec<PreparedEvent>,
    /// The command log entry.
    pub(super) command: Option<PreparedCommand>,
    /// The append time given to every event.
    pub(super) recorded_at: SystemTime,
    /// The same, in nanoseconds.
    pub(super) recorded_at_ns: i64,
}

/// One event of a [`PreparedCommit`].
pub(super) struct PreparedEvent {
    /// Index into [`PreparedCommit::streams`].
    pub(super) stream: usize,
    /// Its version in the stream.
    pub(super) stream_version: i64,
    /// The schema version as stored.
    pub(super) schema_version: i64,
    /// The payload as JSON text.
    pub(super) payload: String,
    /// The metadata as JSON text.
    pub(super) metadata: String,
    /// The event as given.
    pub(super) event: NewEvent,
}

/// The command log entry of a [`PreparedCommit`].
pub(super) struct PreparedCommand {
    /// The command id.
    pub(super) command_id: Uuid,
    /// The command name.
    pub(super) name: String,
    /// The payload as JSON text.
    pub(super) payload: String,
    /// The metadata as JSON text.
    pub(super) metadata: String,
    /// The short outcome name.
    pub(super) outcome: &'static str,
    /// The outcome as JSON text.
    pub(super) outcome_detail: String,
    /// When it was logged, in nanoseconds.
    pub(super) recorded_at_ns: i64,
}

impl PreparedCommit {
    /// Converts `commit` (already checked by `validate_commit`), rejecting what cannot be
    /// stored: an event id listed twice, a version or time out of range.
    pub(super) fn new(commit: Commit) -> Result<Self, StoreError> {
        let recorded_at = SystemTime::now();
        let mut ids = HashSet::new();
        let mut streams = Vec::with_capacity(commit.streams.len());
        let mut events = Vec::new();
        for (index, append) in commit.streams.into_iter().enumerate() {
            let expected = to_i64(append.expected_version, "expected version")?;
            for (offset, event) in append.events.into_iter().enumerate() {
                if !ids.insert(event.event_id) {
                    return Err(StoreError::InvalidAppend(format!(
                        "event id {} appears twice in one commit",
                        event.event_id
                    )));
                }
                let stream_version = expected
                    .checked_add(offset as i64 + 1)
                    .ok_or_else(|| StoreError::InvalidAppend("stream version overflows".into()))?;
                events.push(PreparedEvent {
                    stream: index,
                    stream_version,
                    schema_version: i64::from(event.schema_version),
                    payload: event.payload.to_string(),
                    metadata: metadata_json(&event.metadata)?,
                    event,
                });
            }
            streams.push((append.stream_id, expected));
        }
        let command = commit
            .command
            .map(|command| {
                Ok::<_, StoreError>(PreparedCommand {
                    command_id: command.command_id,
                    name: command.name,
                    payload: command.payload.to_string(),
                    metadata: metadata_json(&command.metadata)?,
                    outcome: command.outcome.as_str(),
                    outcome_detail: outcome_json(&command.outcome)?,
                    recorded_at_ns: nanos(command.recorded_at)?,
                })
            })
            .transpose()?;
        Ok(Self {
            streams,
            events,
            command,
            recorded_at,
            recorded_at_ns: nanos(recorded_at)?,
        })
    }

    /// The recorded events, the first at global position `first`.
    pub(super) fn into_recorded(self, first: u64) -> Vec<RecordedEvent> {
        let streams = self.streams;
        let recorded_at = self.recorded_at;
        self.events
            .into_iter()
            .zip(first..)
            .map(|(e, position)| RecordedEvent {
                position,
                event_id: e.event.event_id,
                stream_id: streams[e.stream].0.clone(),
                stream_version: e.stream_version as u64,
                event_name: e.event.event_name,
                schema_version: e.event.schema_version,
                payload: e.event.payload,
                metadata: e.event.metadata,
                recorded_at,
            })
            .collect()
    }

    /// The conflict of stream `index`, whose current version is `actual`.
    pub(super) fn conflict(&self, index: usize, actual: i64) -> StoreError {
        let (stream, expected) = &self.streams[index];
        StoreError::Conflict {
            stream: stream.clone(),
            expected: *expected as u64,
            actual: u64::try_from(actual).unwrap_or(0),
        }
    }
}

/// Reads a row's columns, each decoding failure a [`StoreError::Corrupt`] naming the row.
struct Columns<'r, R> {
    row: &'r R,
    table: &'static str,
    location: Location,
}

/// Where a row is, formatted only when an error names it (reads decode many rows).
enum Location {
    Text(String),
    Position(u64),
    Event {
        stream: String,
        version: u64,
        position: u64,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Position(position) => write!(f, "position {position}"),
            Self::Event {
                stream,
                version,
                position,
            } => {
                write!(
                    f,
                    "stream `{stream}` version {version} (position {position})"
                )
            }
        }
    }
}

impl From<String> for Location {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl<'r, R> Columns<'r, R>
where
    R: Row,
    usize: ColumnIndex<R>,
{
    fn new(row: &'r R, table: &'static str, location: impl Into<Location>) -> Self {
        Self {
            row,
            table,
            location: location.into(),
        }
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            table: self.table,
            location: self.location.to_string(),
            reason,
        }
    }

    fn get<T>(&self, index: usize, column: &str) -> Result<T, StoreError>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        self.row
            .try_get(index)
            .map_err(|e| self.corrupt(format!("column `{column}`: {e}")))
    }

    fn unsigned(&self, index: usize, column: &str) -> Result<u64, StoreError>
    where
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let value: i64 = self.get(index, column)?;
        u64::try_from(value)
            .map_err(|_| self.corrupt(format!("column `{column}` is negative: {value}")))
    }

    fn u32(&self, index: usize, column: &str) -> Result<u32, StoreError>
    where
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let value: i64 = self.get(index, column)?;
        u32::try_from(value)
            .map_err(|_| self.corrupt(format!("column `{column}` is out of range: {value}")))
    }

    fn uuid(&self, index: usize, column: &str) -> Result<Uuid, StoreError>
    where
        String: Decode<'r, R::Database> + Type<R::Database>,
    {
        let text: String = self.get(index, column)?;
        Uuid::parse_str(&text)
            .map_err(|e| self.corrupt(format!("column `{column}` is not a UUID: {e}")))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        column: &str,
    ) -> Result<T, StoreError>
    where
        String: Decode<'r, R::Database> + Type<R::Database>,
    {
        let text: String = self.get(index, column)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(format!("column `{column}`: {e}")))
    }
}

/// Decodes an event row selected as `position, event_id, stream_id, stream_version,
/// event_name, schema_version, payload, metadata, recorded_at_ns` (UUID and JSON as text).
pub(super) fn event_from_row<'r, R>(row: &'r R) -> Result<RecordedEvent, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    // Read the row's identity first, so every later error can say where the row is.
    let columns = Columns::new(row, EVENTS, "a row with an unreadable position".to_owned());
    let position = columns.unsigned(0, "position")?;
    let columns = Columns::new(row, EVENTS, Location::Position(position));
    let stream_id: String = columns.get(2, "stream_id")?;
    let stream_version = columns.unsigned(3, "stream_version")?;
    let location = Location::Event {
        stream: stream_id.clone(),
        version: stream_version,
        position,
    };
    let columns = Columns::new(row, EVENTS, location);
    Ok(RecordedEvent {
        position,
        event_id: columns.uuid(1, "event_id")?,
        stream_id: StreamId::new(stream_id),
        stream_version,
        event_name: columns.get(4, "event_name")?,
        schema_version: columns.u32(5, "schema_version")?,
        payload: columns.json::<Value>(6, "payload")?,
        metadata: columns.json::<Metadata>(7, "metadata")?,
        recorded_at: time(columns.get(8, "recorded_at_ns")?),
    })
}

/// Decodes a command row selected as `seq, command_id, name, payload, metadata,
/// outcome_detail, recorded_at_ns` (UUID and JSON as text).
pub(super) fn command_from_row<'r, R>(row: &'r R) -> Result<CommandRecord, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let columns = Columns::new(
        row,
        COMMANDS,
        "a row with an unreadable sequence number".to_owned(),
    );
    let seq: i64 = columns.get(0, "seq")?;
    let columns = Columns::new(row, COMMANDS, format!("command log entry {seq}"));
    Ok(CommandRecord {
        command_id: columns.uuid(1, "command_id")?,
        name: columns.get(2, "name")?,
        payload: columns.json::<Value>(3, "payload")?,
        metadata: columns.json::<Metadata>(4, "metadata")?,
        outcome: columns.json::<CommandOutcome>(5, "outcome_detail")?,
        recorded_at: time(columns.get(6, "recorded_at_ns")?),
    })
}

/// Decodes the snapshot of `stream` selected as `stream_version, snapshot_version, state`
/// (JSON as text).
pub(super) fn snapshot_from_row<'r, R>(
    stream: &StreamId,
    row: &'r R,
) -> Result<Snapshot, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let columns = Columns::new(row, SNAPSHOTS, format!("stream `{stream}`"));
    Ok(Snapshot {
        stream_id: stream.clone(),
        stream_version: columns.unsigned(0, "stream_version")?,
        snapshot_version: columns.u32(1, "snapshot_version")?,
        state: columns.json::<Value>(2, "state")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One failure reported to several callers keeps what a caller acts on: the variant where
    /// it carries no data, the I/O error kind, and the message.
    #[test]
    fn copied_errors_keep_their_kind_and_message() {
        assert!(matches!(
            copy_error(&sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolTimedOut
        ));
        assert!(matches!(
            copy_error(&sqlx::Error::PoolClosed),
            sqlx::Error::PoolClosed
        ));
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset by peer",
        ));
        match copy_error(&io) {
            sqlx::Error::Io(copy) => {
                assert_eq!(copy.kind(), std::io::ErrorKind::ConnectionReset);
                assert!(copy.to_string().contains("reset by peer"));
            }
            other => panic!("expected an I/O error, got {other}"),
        }
        let protocol = sqlx::Error::Protocol("unexpected message".into());
        assert_eq!(copy_error(&protocol).to_string(), protocol.to_string());
        let tls = sqlx::Error::Tls("handshake failed".into());
        assert!(copy_error(&tls).to_string().contains("handshake failed"));
    }

    #[test]
    fn times_round_trip_exactly() {
        let now = SystemTime::now();
        let before = UNIX_EPOCH - Duration::from_nanos(1_234_567_891);
        for t in [now, before, UNIX_EPOCH] {
            assert_eq!(nanos(t).map(time).ok(), Some(t));
        }
    }

    #[test]
    fn times_out_of_range_are_rejected() {
        let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 24 * 3600);
        assert!(matches!(nanos(far), Err(StoreError::InvalidAppend(_))));
    }

    #[test]
    fn a_newer_applied_version_is_schema_too_new() {
        let schema = Schema {
            database: "test",
            migrations: &[(1, "one", "SELECT 1")],
        };
        assert!(schema.check_applied(None).is_ok());
        assert!(schema.check_applied(Some(1)).is_ok());
        assert!(matches!(
            schema.check_applied(Some(2)),
            Err(StoreError::SchemaTooNew {
                found: 2,
                supported: 1,
                ..
            })
        ));
        assert!(matches!(
            schema.migrate_error(MigrateError::VersionMissing(7)),
            StoreError::SchemaTooNew { found: 7, .. }
        ));
    }
}
