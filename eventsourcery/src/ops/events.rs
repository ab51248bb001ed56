//! `events show STREAM`: a stream's events as stored, personal fields as references.

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use super::{OpsError, Report};
use crate::config::Stores;
use crate::value::StreamId;

/// The stream's events after version `after`. Payloads are shown as stored, where a personal
/// field is only a reference (`{"$personal": id, "subject": key}`): nothing is decrypted. Of
/// the metadata, only the ids are shown (the request metadata is the application's, and this
/// command does not know what it holds).
pub(super) async fn show(stores: &Stores, stream: &str, after: u64) -> Result<Report, OpsError> {
    let stream = StreamId::new(stream);
    let events = stores.events.read_stream(&stream, after).await?;
    let mut text = String::new();
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            let _ = writeln!(
                text,
                "#{} v{} {} (schema {}) {}",
                e.position, e.stream_version, e.event_name, e.schema_version, e.payload
            );
            json!({
                "position": e.position,
                "version": e.stream_version,
                "event_id": e.event_id.to_string(),
                "event": e.event_name,
                "schema_version": e.schema_version,
                "recorded_at_ms": e.recorded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                "command_id": e.metadata.command_id.map(|id| id.to_string()),
                "correlation_id": e.metadata.correlation_id.map(|id| id.to_string()),
                "causation_id": e.metadata.causation_id.map(|id| id.to_string()),
                "payload": e.payload,
            })
        })
        .collect();
    if events.is_empty() {
        let _ = write!(text, "no events in stream `{stream}` after version {after}");
    }
    Ok(Report::ok(
        json!({ "stream": stream.to_string(), "events": events }),
        text,
    ))
}
