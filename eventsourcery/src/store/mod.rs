//! The event store: one trait, with in-memory, SQLite and PostgreSQL implementations that
//! behave identically.
//!
//! This module holds the storage traits and their records only: [`EventStore`] (streams with
//! optimistic concurrency, the global log, snapshots, the command log), [`ConsumerStore`]
//! (checkpoints, parked consumers, leases), and the [`KeyStore`] and [`PersonalStore`] behind
//! the vault, with one error, [`StoreError`]. The implementations live in
//! [`backend`](crate::backend), so everything above this layer depends on the traits, never on
//! a database. Guide: [choosing a store](crate::docs::choosing_a_store).

use std::time::SystemTime;

use serde_json::Value;
use uuid::Uuid;

use crate::event::{EventError, Metadata};
use crate::personal::PersonalError;
use crate::value::StreamId;

/// The attribute for implementing [`EventStore`], [`KeyStore`], [`PersonalStore`] and the
/// other async traits by hand: `#[eventsourcery::store::async_trait]`.
pub use async_trait::async_trait;

mod audit;
pub(crate) mod consumer;
pub(crate) mod personal;
mod shared;

pub use audit::{AuditEntry, AuditRecord};
pub use consumer::{
    ConsumerEntry, ConsumerState, ConsumerStore, Parked, ProjectionTx, RETIRED, TxWork,
};
pub use personal::{Erasure, IndexEntry, KeyStore, PersonalRecord, PersonalStore, WrappedKey};
pub use shared::Shared;

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id of the event: the idempotency key of its consumers.
    pub event_id: Uuid,
    /// The stored event name.
    pub event_name: String,
    /// The schema version of the payload.
    pub schema_version: u32,
    /// The payload; never holds personal data.
    pub payload: Value,
    /// Causation and correlation.
    pub metadata: Metadata,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Position in the global log, starting at 1 and strictly increasing.
    pub position: u64,
    /// Unique id of the event.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in that stream, starting at 1 with no gaps.
    pub stream_version: u64,
    /// The stored event name.
    pub event_name: String,
    /// The schema version it was written at.
    pub schema_version: u32,
    /// The payload; never holds personal data.
    pub payload: Value,
    /// Causation and correlation.
    pub metadata: Metadata,
    /// When it was appended.
    pub recorded_at: SystemTime,
}

/// What loading an aggregate reads of a stored event: its place, its name and schema version,
/// and its payload, without the metadata, ids and time a consumer gets in a [`RecordedEvent`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamEvent {
    /// Position in the global log.
    pub position: u64,
    /// Its version in its stream.
    pub stream_version: u64,
    /// The stored event name.
    pub event_name: String,
    /// The schema version it was written at.
    pub schema_version: u32,
    /// The payload; never holds personal data.
    pub payload: StreamPayload,
}

impl StreamEvent {
    /// A stream event from its parts.
    pub fn new(
        position: u64,
        stream_version: u64,
        event_name: String,
        schema_version: u32,
        payload: impl Into<StreamPayload>,
    ) -> Self {
        Self {
            position,
            stream_version,
            event_name,
            schema_version,
            payload: payload.into(),
        }
    }
}

/// A payload as a load reads it: parsed, or as the JSON text the store holds, which a load
/// decodes straight into the event type when no upcaster applies.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamPayload {
    /// Parsed.
    Json(Value),
    /// The stored JSON text; the store checked that it parses.
    Text(String),
}

impl StreamPayload {
    /// The payload parsed.
    ///
    /// # Errors
    /// When the text is not JSON.
    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        match self {
            Self::Json(value) => Ok(value),
            Self::Text(text) => serde_json::from_str(&text),
        }
    }
}

impl From<Value> for StreamPayload {
    fn from(value: Value) -> Self {
        Self::Json(value)
    }
}

/// Payloads are equal when they are the same JSON, whichever form each is in.
impl PartialEq for StreamPayload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Json(a), Self::Json(b)) => a == b,
            (Self::Text(a), Self::Text(b)) if a == b => true,
            _ => match (self.parsed(), other.parsed()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl StreamPayload {
    /// The payload parsed, borrowed where it already is.
    fn parsed(&self) -> Option<std::borrow::Cow<'_, Value>> {
        match self {
            Self::Json(value) => Some(std::borrow::Cow::Borrowed(value)),
            Self::Text(text) => serde_json::from_str(text).ok().map(std::borrow::Cow::Owned),
        }
    }
}

impl From<RecordedEvent> for StreamEvent {
    fn from(event: RecordedEvent) -> Self {
        Self::new(
            event.position,
            event.stream_version,
            event.event_name,
            event.schema_version,
            event.payload,
        )
    }
}

/// The events appended to one stream, and the version the writer last saw.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// The stream.
    pub stream_id: StreamId,
    /// The stream's version when the writer loaded it (0 for a new stream); a store with a
    /// different current version rejects the append with [`StoreError::Conflict`].
    pub expected_version: u64,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

/// What one command writes, all or nothing: its events and its log entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commit {
    /// Events to append, per stream.
    pub streams: Vec<StreamAppend>,
    /// The command log entry, if this commit is a command's.
    pub command: Option<CommandRecord>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[non_exhaustive]
pub enum CommandOutcome {
    /// The handler succeeded and its events were appended.
    Succeeded {
        /// How many events it appended.
        events: u64,
    },
    /// The handler returned an error; nothing was appended.
    Failed {
        /// The error's message.
        error: String,
    },
    /// Every attempt lost an optimistic-concurrency race.
    Conflicted {
        /// How many attempts were made.
        attempts: u32,
    },
}

impl CommandOutcome {
    /// The short name stored in the log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Conflicted { .. } => "conflicted",
        }
    }
}

/// An entry of the command log.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    /// The command's unique id; events it raised carry it as causation id.
    pub command_id: Uuid,
    /// The command's name.
    pub name: String,
    /// The payload; never holds personal data.
    pub payload: Value,
    /// Causation and correlation of the command itself.
    pub metadata: Metadata,
    /// How it ended.
    pub outcome: CommandOutcome,
    /// When it was logged.
    pub recorded_at: SystemTime,
}

/// A saved aggregate state, so loading need not replay its whole history.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream.
    pub stream_id: StreamId,
    /// The stream version the state includes.
    pub stream_version: u64,
    /// The aggregate's snapshot schema version; a different one is ignored.
    pub snapshot_version: u32,
    /// The state.
    pub state: Value,
}

/// An event store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream moved on since the writer loaded it.
    #[error(
        "concurrency conflict on stream `{stream}`: expected version {expected}, found {actual}"
    )]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// The version the writer expected.
        expected: u64,
        /// The version found (may be a lower bound when the database reports only the clash).
        actual: u64,
    },
    /// A stored event could not be decoded.
    #[error("stream `{stream}` version {version} (global position {position}): {source}")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The event's version in the stream.
        version: u64,
        /// The event's global position.
        position: u64,
        /// What went wrong.
        #[source]
        source: Box<EventError>,
    },
    /// An event or command could not be encoded.
    #[error(transparent)]
    Encode(#[from] Box<EventError>),
    /// A stored row is not what this program wrote (bad column value, bad metadata).
    #[error("corrupt row in `{table}` at {location}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// Which row (stream and version, or position).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The database schema is newer than this program.
    #[error(
        "the {database} schema is at version {found}, newer than version {supported} that this program knows; upgrade eventsourcery"
    )]
    SchemaTooNew {
        /// Which database.
        database: &'static str,
        /// The version found.
        found: i64,
        /// The newest version this program has.
        supported: i64,
    },
    /// The database failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("database error during {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("migrating the {database} schema: {source}")]
    Migrate {
        /// Which database.
        database: &'static str,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A consumer's checkpoint was moved by another instance.
    #[error(
        "the checkpoint of consumer `{consumer}` is at {actual}, not {expected}: another instance moved it"
    )]
    CheckpointMoved {
        /// The consumer.
        consumer: String,
        /// Where this instance expected it.
        expected: u64,
        /// Where it is.
        actual: u64,
    },
    /// A repository given to a listener, process manager or projection only loads: what an
    /// event causes is a command.
    #[error(
        "this repository only loads (it was given to a consumer); execute a command to change stream `{stream}`"
    )]
    ReadOnly {
        /// The stream a save was tried on.
        stream: StreamId,
    },
    /// An append was not well formed (an empty stream id, an event listed twice).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The personal values of a stream's events could not be read or stored: the personal
    /// data vault failed, or has no key for them.
    #[error("personal data of stream `{stream}`: {source}")]
    Personal {
        /// The stream.
        stream: StreamId,
        /// The vault's error.
        #[source]
        source: PersonalError,
    },
}

impl From<EventError> for StoreError {
    fn from(error: EventError) -> Self {
        Self::Encode(Box::new(error))
    }
}

impl StoreError {
    /// Whether this is an optimistic-concurrency conflict, which a command bus retries.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// [`StoreError::CheckpointMoved`]: `consumer`'s checkpoint is at `actual`, not `expected`.
    pub(crate) fn checkpoint_moved(consumer: &str, expected: u64, actual: u64) -> Self {
        Self::CheckpointMoved {
            consumer: consumer.to_owned(),
            expected,
            actual,
        }
    }

    /// A copy of this error, for a failure reported both to the handler that met it and to
    /// the caller of its command. Driver and serde errors are copied with their message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Conflict {
                stream,
                expected,
                actual,
            } => Self::Conflict {
                stream: stream.clone(),
                expected: *expected,
                actual: *actual,
            },
            Self::Decode {
                stream,
                version,
                position,
                source,
            } => Self::Decode {
                stream: stream.clone(),
                version: *version,
                position: *position,
                source: Box::new(source.duplicate()),
            },
            Self::Encode(source) => Self::Encode(Box::new(source.duplicate())),
            Self::Corrupt {
                table,
                location,
                reason,
            } => Self::Corrupt {
                table,
                location: location.clone(),
                reason: reason.clone(),
            },
            Self::SchemaTooNew {
                database,
                found,
                supported,
            } => Self::SchemaTooNew {
                database,
                found: *found,
                supported: *supported,
            },
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::Database { operation, source } => Self::Database {
                operation,
                source: crate::error::copy_sqlx_error(source),
            },
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::Migrate { database, source } => Self::Migrate {
                database,
                source: sqlx::migrate::MigrateError::Source(source.to_string().into()),
            },
            Self::ReadOnly { stream } => Self::ReadOnly {
                stream: stream.clone(),
            },
            Self::CheckpointMoved {
                consumer,
                expected,
                actual,
            } => Self::CheckpointMoved {
                consumer: consumer.clone(),
                expected: *expected,
                actual: *actual,
            },
            Self::InvalidAppend(reason) => Self::InvalidAppend(reason.clone()),
            Self::Personal { stream, source } => Self::Personal {
                stream: stream.clone(),
                source: source.duplicate(),
            },
        }
    }
}

/// The event store.
///
/// Every implementation appends atomically, checks the expected version per stream, assigns
/// strictly increasing global positions that a reader of the global log can follow without
/// ever skipping an event that commits late, and never changes what it stored.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends the commit's events and its command log entry in one transaction.
    ///
    /// Returns the recorded events, in order. Fails with [`StoreError::Conflict`], changing
    /// nothing, when any stream's version differs from its expected version.
    async fn append(&self, commit: Commit) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The events of `stream` with a version greater than `after_version`, in order, and
    /// exactly `limit` of them unless fewer remain (a shorter page is the end of the stream):
    /// one page, so that [`Repository::load`](crate::Repository::load) applies a long stream
    /// as it reads it, in bounded memory.
    async fn read_stream_page(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The same page as [`read_stream_page`](Self::read_stream_page), with only what
    /// [`Repository::load`](crate::Repository::load) needs of each event. The SQL backends
    /// select less of each row (no metadata, ids or times), so loads read and decode less; the
    /// default reads the whole page.
    async fn load_stream_page(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let page = self.read_stream_page(stream, after_version, limit).await?;
        Ok(page.into_iter().map(StreamEvent::from).collect())
    }

    /// The events of `stream` with a version greater than `after_version`, in order: one page
    /// without a limit.
    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_page(stream, after_version, usize::MAX)
            .await
    }

    /// At most `limit` events of the global log with a position greater than `after_position`,
    /// in position order.
    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the last event in the global log (0 when empty), for progress reports.
    ///
    /// The default reads the log through; the stores answer from an index.
    async fn head_position(&self) -> Result<u64, StoreError> {
        let mut position = 0;
        loop {
            let batch = self.read_all(position, 10_000).await?;
            match batch.last() {
                Some(last) => position = last.position,
                None => return Ok(position),
            }
        }
    }

    /// At most `limit` command log entries, oldest first, skipping the first `offset`.
    async fn read_commands(
        &self,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError>;

    /// The latest snapshot of `stream`, if any.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError>;

    /// Saves a snapshot, replacing an older one of the same stream.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;
}

/// Checks what every store checks before writing: no empty append, versions in range.
pub(crate) fn validate_commit(commit: &Commit) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for append in &commit.streams {
        if append.stream_id.as_str().is_empty() {
            return Err(StoreError::InvalidAppend("empty stream id".into()));
        }
        if !seen.insert(&append.stream_id) {
            return Err(StoreError::InvalidAppend(format!(
                "stream `{}` appears twice in one commit",
                append.stream_id
            )));
        }
    }
    Ok(())
}
