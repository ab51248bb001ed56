//! The decoding of event store rows into API types: a column that does not decode is a
//! [`StoreError::Corrupt`] naming the table and the row.

use serde_json::Value;
use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use super::{COMMANDS, EVENTS, SNAPSHOTS, time};
use crate::event::Metadata;
use crate::store::{
    CommandOutcome, CommandRecord, RecordedEvent, Snapshot, StoreError, StreamEvent, StreamPayload,
};
use crate::value::StreamId;

/// Reads a row's columns, each decoding failure a [`StoreError::Corrupt`] naming the row.
pub(crate) struct StoreRow<'r, R> {
    row: &'r R,
    table: &'static str,
    location: Location,
}

/// Where a row is, formatted only when an error names it (reads decode many rows).
enum Location {
    Text(String),
    Position(u64),
    /// A row of a stream named by the caller.
    Version {
        version: u64,
        position: u64,
    },
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
            Self::Version { version, position } => {
                write!(f, "version {version} (position {position})")
            }
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

impl<'r, R> StoreRow<'r, R>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
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

    fn unsigned(&self, index: usize, column: &str) -> Result<u64, StoreError> {
        let value: i64 = self.get(index, column)?;
        u64::try_from(value)
            .map_err(|_| self.corrupt(format!("column `{column}` is negative: {value}")))
    }

    fn u32(&self, index: usize, column: &str) -> Result<u32, StoreError> {
        let value: i64 = self.get(index, column)?;
        u32::try_from(value)
            .map_err(|_| self.corrupt(format!("column `{column}` is out of range: {value}")))
    }

    fn uuid(&self, index: usize, column: &str) -> Result<Uuid, StoreError> {
        let text: String = self.get(index, column)?;
        Uuid::parse_str(&text)
            .map_err(|e| self.corrupt(format!("column `{column}` is not a UUID: {e}")))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        column: &str,
    ) -> Result<T, StoreError> {
        let text: String = self.get(index, column)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(format!("column `{column}`: {e}")))
    }

    /// A JSON column as its text, checked to parse (without building it) unless the database
    /// already refuses malformed JSON in it.
    fn json_text(
        &self,
        index: usize,
        column: &str,
        checked: bool,
    ) -> Result<StreamPayload, StoreError> {
        let text: String = self.get(index, column)?;
        if !checked {
            serde_json::from_str::<serde::de::IgnoredAny>(&text)
                .map_err(|e| self.corrupt(format!("column `{column}`: {e}")))?;
        }
        Ok(StreamPayload::Text(text))
    }

    /// Decodes an event row selected as `position, event_id, stream_id, stream_version,
    /// event_name, schema_version, payload, metadata, recorded_at_ns` (UUID and JSON as text).
    pub(crate) fn event(row: &'r R) -> Result<RecordedEvent, StoreError> {
        // Read the row's identity first, so every later error can say where the row is.
        let columns = Self::new(row, EVENTS, "a row with an unreadable position".to_owned());
        let position = columns.unsigned(0, "position")?;
        let columns = Self::new(row, EVENTS, Location::Position(position));
        let stream_id: String = columns.get(2, "stream_id")?;
        let stream_version = columns.unsigned(3, "stream_version")?;
        let location = Location::Event {
            stream: stream_id.clone(),
            version: stream_version,
            position,
        };
        let columns = Self::new(row, EVENTS, location);
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

    /// Decodes an event row of `stream` selected as `position, stream_version, event_name,
    /// schema_version, payload` (JSON as text): what a load needs. The stream's name goes into
    /// an error only, so a row allocates nothing for it. `checked`: the database refuses
    /// malformed JSON in the payload column, so its text is not parsed here.
    pub(crate) fn stream_event(
        stream: &StreamId,
        row: &'r R,
        checked: bool,
    ) -> Result<StreamEvent, StoreError> {
        Self::page_event(row, checked).map_err(|error| match error {
            StoreError::Corrupt {
                table,
                location,
                reason,
            } => StoreError::Corrupt {
                table,
                location: format!("stream `{stream}` {location}"),
                reason,
            },
            other => other,
        })
    }

    fn page_event(row: &'r R, checked: bool) -> Result<StreamEvent, StoreError> {
        let columns = Self::new(row, EVENTS, "a row with an unreadable position".to_owned());
        let position = columns.unsigned(0, "position")?;
        let columns = Self::new(row, EVENTS, Location::Position(position));
        let stream_version = columns.unsigned(1, "stream_version")?;
        let columns = Self::new(
            row,
            EVENTS,
            Location::Version {
                version: stream_version,
                position,
            },
        );
        Ok(StreamEvent::new(
            position,
            stream_version,
            columns.get(2, "event_name")?,
            columns.u32(3, "schema_version")?,
            columns.json_text(4, "payload", checked)?,
        ))
    }

    /// Decodes a command row selected as `seq, command_id, name, payload, metadata,
    /// outcome_detail, recorded_at_ns` (UUID and JSON as text).
    pub(crate) fn command(row: &'r R) -> Result<CommandRecord, StoreError> {
        let columns = Self::new(
            row,
            COMMANDS,
            "a row with an unreadable sequence number".to_owned(),
        );
        let seq: i64 = columns.get(0, "seq")?;
        let columns = Self::new(row, COMMANDS, format!("command log entry {seq}"));
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
    pub(crate) fn snapshot(stream: &StreamId, row: &'r R) -> Result<Snapshot, StoreError> {
        let columns = Self::new(row, SNAPSHOTS, format!("stream `{stream}`"));
        Ok(Snapshot {
            stream_id: stream.clone(),
            stream_version: columns.unsigned(0, "stream_version")?,
            snapshot_version: columns.u32(1, "snapshot_version")?,
            state: columns.json::<Value>(2, "state")?,
        })
    }
}
