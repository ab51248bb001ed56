//! A commit on its way into a SQL event store: converted to column values and checked before
//! any database work, then queued with the commits made at the same time (group commit).

use std::collections::HashSet;
use std::time::SystemTime;

use uuid::Uuid;

use super::{copy_error, nanos, to_i64};
use crate::event::Metadata;
use crate::store::{CommandOutcome, Commit, NewEvent, RecordedEvent, StoreError};
use crate::value::StreamId;

/// A commit waiting for its group (see `crate::batch`), and where its result goes.
pub(crate) type PendingAppend =
    crate::batch::Queued<PreparedCommit, Result<Vec<RecordedEvent>, StoreError>>;

/// The append queue of one store and its clones: commits made at the same time are written
/// as one group (group commit).
pub(crate) type AppendQueue =
    crate::batch::Batcher<PreparedCommit, Result<Vec<RecordedEvent>, StoreError>>;

/// Queues `commit` on `queue` together with whatever else is queued, and returns its own
/// result; `write` writes one group of `store`, answering each of its commits.
///
/// If the caller stops waiting before its commit left the queue, the commit is dropped
/// unwritten; after that, it is written (or not) with its group, as a statement already sent
/// would be.
pub(crate) async fn append_in_group<S, W, Fut>(
    queue: &AppendQueue,
    store: &S,
    commit: PreparedCommit,
    write: W,
) -> Result<Vec<RecordedEvent>, StoreError>
where
    S: super::SqlStore + Clone,
    W: Fn(S, Vec<PendingAppend>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;

    queue
        .submit(commit, |group| {
            let span = crate::telemetry::append_group_span(S::NAME, group.len());
            write(store.clone(), group).instrument(span)
        })
        .await
        .unwrap_or_else(|| Err(unanswered()))
}

/// Answers every commit of `group` with `error`, which failed them all.
pub(crate) fn fail_group(group: Vec<PendingAppend>, error: &StoreError) {
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
/// Metadata as JSON text.
pub(crate) fn metadata_json(metadata: &Metadata) -> Result<String, StoreError> {
    serde_json::to_string(metadata).map_err(|e| StoreError::InvalidAppend(format!("metadata: {e}")))
}

/// A command outcome as JSON text.
pub(crate) fn outcome_json(outcome: &CommandOutcome) -> Result<String, StoreError> {
    serde_json::to_string(outcome)
        .map_err(|e| StoreError::InvalidAppend(format!("command outcome: {e}")))
}

/// A commit converted to column values, checked before any database work.
pub(crate) struct PreparedCommit {
    /// Each stream and its expected version.
    pub(crate) streams: Vec<(StreamId, i64)>,
    /// The events of all streams, in commit order.
    pub(crate) events: Vec<PreparedEvent>,
    /// The command log entry.
    pub(crate) command: Option<PreparedCommand>,
    /// The append time given to every event.
    pub(crate) recorded_at: SystemTime,
    /// The same, in nanoseconds.
    pub(crate) recorded_at_ns: i64,
}

/// One event of a [`PreparedCommit`].
pub(crate) struct PreparedEvent {
    /// Index into [`PreparedCommit::streams`].
    pub(crate) stream: usize,
    /// Its version in the stream.
    pub(crate) stream_version: i64,
    /// The schema version as stored.
    pub(crate) schema_version: i64,
    /// The payload as JSON text.
    pub(crate) payload: String,
    /// The metadata as JSON text.
    pub(crate) metadata: String,
    /// The event as given.
    pub(crate) event: NewEvent,
}

/// The command log entry of a [`PreparedCommit`].
pub(crate) struct PreparedCommand {
    /// The command id.
    pub(crate) command_id: Uuid,
    /// The command name.
    pub(crate) name: String,
    /// The payload as JSON text.
    pub(crate) payload: String,
    /// The metadata as JSON text.
    pub(crate) metadata: String,
    /// The short outcome name.
    pub(crate) outcome: &'static str,
    /// The outcome as JSON text.
    pub(crate) outcome_detail: String,
    /// When it was logged, in nanoseconds.
    pub(crate) recorded_at_ns: i64,
}

impl PreparedCommit {
    /// Converts `commit` (already checked by `validate_commit`), rejecting what cannot be
    /// stored: an event id listed twice, a version or time out of range.
    pub(crate) fn new(commit: Commit) -> Result<Self, StoreError> {
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
    pub(crate) fn into_recorded(self, first: u64) -> Vec<RecordedEvent> {
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
    pub(crate) fn conflict(&self, index: usize, actual: i64) -> StoreError {
        let (stream, expected) = &self.streams[index];
        StoreError::Conflict {
            stream: stream.clone(),
            expected: *expected as u64,
            actual: u64::try_from(actual).unwrap_or(0),
        }
    }
}
