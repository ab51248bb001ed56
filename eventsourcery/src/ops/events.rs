//! `events show STREAM` and `events tail`: events as stored, personal fields as references, or
//! decrypted with `--decrypt` once the read is recorded in the audit log.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::args::Decrypt;
use super::{OpsError, Report};
use crate::codec::{Reference, Resolved, collect_references};
use crate::config::Stores;
use crate::personal::reference::parse_reference;
use crate::store::{AuditEntry, RecordedEvent};
use crate::value::StreamId;

/// The variable `--actor` falls back to.
pub const ACTOR_ENV: &str = "EVENTSOURCERY_ACTOR";

/// How long `tail` waits for an append before it looks again (PostgreSQL wakes it at once).
const TAIL_POLL: Duration = Duration::from_millis(200);

/// Events `tail` reads at once.
const TAIL_BATCH: usize = 500;

/// Who reads decrypted values and why: what `--decrypt` records before it prints.
pub(super) struct Reader {
    actor: String,
    reason: String,
}

/// The reader of a `--decrypt`, or `None` without it. The actor comes from `--actor`, else
/// from `EVENTSOURCERY_ACTOR`; both it and `--reason` are required, so that no read goes
/// unrecorded as to who and why.
pub(super) fn reader(decrypt: &Decrypt) -> Result<Option<Reader>, OpsError> {
    if !decrypt.decrypt {
        return Ok(None);
    }
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let actor = given(decrypt.actor.clone())
        .or_else(|| given(std::env::var(ACTOR_ENV).ok()))
        .ok_or(OpsError::DecryptNeeds {
            what: "--actor NAME (or EVENTSOURCERY_ACTOR)",
        })?;
    let reason = given(decrypt.reason.clone()).ok_or(OpsError::DecryptNeeds {
        what: "--reason REASON",
    })?;
    Ok(Some(Reader { actor, reason }))
}

/// The stream's events after version `after`. Payloads are shown as stored, where a personal
/// field is only a reference (`{"$personal": id, "subject": key}`), unless `reader` asks for
/// the values. Of the metadata, only the ids are shown (the request metadata is the
/// application's, and this command does not know what it holds).
pub(super) async fn show(
    stores: &Stores,
    stream: &str,
    after: u64,
    reader: Option<&Reader>,
) -> Result<Report, OpsError> {
    let stream = StreamId::new(stream);
    let mut events = stores.events.read_stream(&stream, after).await?;
    let audit = decrypt(stores, reader, Some(&stream), &mut events).await?;
    let mut text = String::new();
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            let _ = writeln!(text, "{}", line(e, false));
            event_json(e, false)
        })
        .collect();
    if events.is_empty() {
        let _ = write!(text, "no events in stream `{stream}` after version {after}");
    }
    let mut json = json!({ "stream": stream.to_string(), "events": events });
    if let Some(sequence) = audit {
        json["audit_sequence"] = json!(sequence);
    }
    Ok(Report::ok(json, text))
}

/// Follows the global log from position `from` (inclusive), or from the head: prints each
/// event as it comes (a line, or a JSON object a line), until `limit` events were printed or
/// the process is interrupted. Says on stderr where it starts, once it knows.
pub(super) async fn tail(
    stores: &Stores,
    from: Option<u64>,
    limit: Option<u64>,
    reader: Option<&Reader>,
    json: bool,
) -> Result<Report, OpsError> {
    let mut after = match from {
        Some(from) => from.saturating_sub(1),
        None => stores.events.head_position().await?,
    };
    eprintln!("following the log after position {after}");
    let mut printed = 0u64;
    let wanted = |printed: u64| limit.is_none_or(|limit| printed < limit);
    while wanted(printed) {
        let room = limit.map_or(TAIL_BATCH, |l| {
            usize::try_from(l - printed).map_or(TAIL_BATCH, |r| r.min(TAIL_BATCH))
        });
        let mut events = stores.events.read_all(after, room).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            stores.events.wait_for_append(TAIL_POLL).await?;
            continue;
        };
        decrypt(stores, reader, None, &mut events).await?;
        let mut out = std::io::stdout().lock();
        for event in &events {
            let written = if json {
                writeln!(out, "{}", event_json(event, true))
            } else {
                writeln!(out, "{}", line(event, true))
            };
            if written.and_then(|()| out.flush()).is_err() {
                // The reader went away (a closed pipe): nothing more to print to.
                return Ok(Report::printed());
            }
            printed += 1;
        }
        after = last;
    }
    Ok(Report::printed())
}

/// An event as a line of text: position, (stream), version, name, schema and payload.
fn line(e: &RecordedEvent, with_stream: bool) -> String {
    let stream = if with_stream {
        format!(" {}", e.stream_id)
    } else {
        String::new()
    };
    format!(
        "#{}{stream} v{} {} (schema {}) {}",
        e.position, e.stream_version, e.event_name, e.schema_version, e.payload
    )
}

/// An event as JSON: its place, its ids and its payload.
fn event_json(e: &RecordedEvent, with_stream: bool) -> Value {
    let mut json = json!({
        "position": e.position,
        "version": e.stream_version,
        "event_id": e.event_id.to_string(),
        "event": e.event_name,
        "schema_version": e.schema_version,
        "recorded_at_ms": millis(e.recorded_at),
        "command_id": e.metadata.command_id.map(|id| id.to_string()),
        "correlation_id": e.metadata.correlation_id.map(|id| id.to_string()),
        "causation_id": e.metadata.causation_id.map(|id| id.to_string()),
        "payload": e.payload,
    });
    if with_stream {
        json["stream"] = json!(e.stream_id.to_string());
    }
    json
}

pub(super) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// With a `reader`, records the read of the events' personal values in the audit log, then
/// replaces each reference in their payloads by its value (or says it was erased, or what is
/// wrong with it). Returns the audit entry's sequence number; `None` when nothing was to be
/// decrypted (no reader, or no personal field).
async fn decrypt(
    stores: &Stores,
    reader: Option<&Reader>,
    stream: Option<&StreamId>,
    events: &mut [RecordedEvent],
) -> Result<Option<u64>, OpsError> {
    let Some(reader) = reader else {
        return Ok(None);
    };
    let mut references = Vec::new();
    let mut positions = Vec::new();
    for event in events.iter() {
        let before = references.len();
        collect_references(&event.event_name, &event.payload, &mut references);
        if references.len() > before {
            positions.push(event.position);
        }
    }
    if references.is_empty() {
        return Ok(None);
    }
    let entry = entry(reader, stream, positions, &references);
    let (sequence, resolved) = stores.vault.resolve_audited(&entry, &references).await?;
    for event in events.iter_mut() {
        reveal(&mut event.payload, &resolved);
    }
    Ok(Some(sequence))
}

/// The audit entry of a read of `references`: subjects and fields, never values.
fn entry(
    reader: &Reader,
    stream: Option<&StreamId>,
    positions: Vec<u64>,
    references: &[Reference],
) -> AuditEntry {
    let mut subjects: Vec<_> = references.iter().map(|r| r.subject).collect();
    subjects.sort_unstable();
    subjects.dedup();
    let mut fields: Vec<String> = references.iter().map(|r| r.field.clone()).collect();
    fields.sort_unstable();
    fields.dedup();
    AuditEntry {
        at: SystemTime::now(),
        actor: reader.actor.clone(),
        action: "decrypt".to_owned(),
        reason: reader.reason.clone(),
        stream: stream.map(ToString::to_string),
        positions,
        subjects,
        fields,
    }
}

/// Replaces the references of a stored payload (in a field, or in a list field, where
/// [`collect_references`] finds them) by what they resolved to: the reference with its
/// `value`, with `erased: true`, or with the `error` that kept it from decrypting.
fn reveal(payload: &mut Value, resolved: &Resolved) {
    let Some(object) = payload.as_object_mut() else {
        return;
    };
    let one = |value: &mut Value| {
        let Some((id, _)) = parse_reference(value) else {
            return;
        };
        let Some(reference) = value.as_object_mut() else {
            return;
        };
        if let Some((_, plaintext)) = resolved.values.get(&id) {
            reference.insert("value".into(), Value::String(plaintext.as_str().to_owned()));
        } else if let Some(error) = resolved.failed.get(&id) {
            reference.insert("error".into(), Value::String(error.to_string()));
        } else {
            // Erased, or an erased value written as such (the nil reference).
            reference.insert("erased".into(), Value::Bool(true));
        }
    };
    for value in object.values_mut() {
        match value {
            Value::Array(items) => items.iter_mut().for_each(&one),
            value => one(value),
        }
    }
}
