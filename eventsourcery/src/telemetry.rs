//! The spans of commands, appends, loads, consumers and the publisher, named after one
//! convention: the OpenTelemetry semantic conventions where one applies (messaging for
//! consumers and the publisher, database for the event store, `error.type` and the span status
//! for failures), and `eventsourcery.{object}.{property}` otherwise, as those conventions ask
//! of a system's own attributes (`messaging.system` is `eventsourcery`). Fields named `otel.*`
//! are the ones the `tracing-opentelemetry` layer reads: the span's name, kind and status.
//!
//! `tracing` has no span links: the W3C `traceparent` of the request that caused a command
//! (what [`RequestMetadata::traceparent`](crate::event::RequestMetadata) carries, into every
//! event the command records) is the field `eventsourcery.link.traceparent`, on the command's
//! span and on each consumer's and the publisher's span for such an event. See
//! [operating](crate::docs::operating) for the table of spans and fields.

use tracing::Span;
use tracing::field::Empty;

use uuid::Uuid;

use crate::event::RequestMetadata;
use crate::store::RecordedEvent;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::store::StoreError;

/// The system name of the messaging conventions' `messaging.system`, and the namespace of the
/// fields that no convention defines.
pub(crate) const SYSTEM: &str = "eventsourcery";

/// `messaging.destination.name` of a consumer's spans: the global log it reads.
pub(crate) const LOG: &str = "events";

/// A span that [`failed`] can mark: after its name, its `otel.name` and its `otel.kind`, it
/// declares `otel.status_code` and `error.type` (`Empty` until a failure), then `$fields`.
macro_rules! failable_span {
    ($span:ident, $name:literal, name = { $($otel_name:tt)+ }, kind = $kind:literal, $($fields:tt)*) => {
        tracing::$span!(
            $name,
            otel.name = $($otel_name)+,
            otel.kind = $kind,
            otel.status_code = Empty,
            error.type = Empty,
            $($fields)*
        )
    };
}

/// Marks `span` failed: status `ERROR`, and `error.type` (declared `Empty` on the span).
pub(crate) fn failed(span: &Span, error_type: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type);
}

/// The `error.type` of an event store failure.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn store_error_type(error: &StoreError) -> &'static str {
    match error {
        StoreError::Conflict { .. } => "conflict",
        StoreError::Decode { .. } | StoreError::Corrupt { .. } => "corrupt",
        StoreError::Encode(_) | StoreError::InvalidAppend(_) => "invalid",
        StoreError::Database { .. } => "database",
        StoreError::CheckpointMoved { .. } => "checkpoint_moved",
        StoreError::Personal { .. } => "personal_data",
        _ => "store",
    }
}

/// `db.system.name` of a SQL event store (its `SqlStore::NAME`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn db_system(store: &'static str) -> &'static str {
    match store {
        "postgres" => "postgresql",
        other => other,
    }
}

/// The span of one command on the bus, with the request's metadata; its attempts and its
/// failure are recorded when it ends.
pub(crate) fn command_span(
    command: &'static str,
    command_id: Uuid,
    correlation_id: Uuid,
    request: &RequestMetadata,
) -> Span {
    failable_span!(
        info_span,
        "command",
        name = { %format_args!("execute {command}") },
        kind = "internal",
        eventsourcery.command.name = command,
        eventsourcery.command.id = %command_id,
        eventsourcery.command.correlation_id = %correlation_id,
        eventsourcery.command.attempts = Empty,
        enduser.id = request.actor.as_deref(),
        eventsourcery.tenant.id = request.tenant.as_deref(),
        eventsourcery.request.id = request.request_id.as_deref(),
        eventsourcery.link.traceparent = request.traceparent.as_deref(),
    )
}

/// The span of a SQL event store's append of one commit (a database client span).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn append_span(store: &'static str, streams: usize, events: usize) -> Span {
    failable_span!(
        debug_span,
        "append",
        name = { "append events" },
        kind = "client",
        db.system.name = db_system(store),
        db.operation.name = "append",
        db.collection.name = "eventsourcery_events",
        eventsourcery.append.streams = streams,
        eventsourcery.append.events = events,
    )
}

/// The span of one group commit: several appends written in one transaction.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn append_group_span(store: &'static str, commits: usize) -> Span {
    tracing::debug_span!(
        "append_group",
        otel.name = "append events",
        otel.kind = "client",
        db.system.name = db_system(store),
        db.operation.name = "append",
        db.collection.name = "eventsourcery_events",
        db.operation.batch.size = commits,
    )
}

/// The span of one consumer batch: the events after `from` up to `to` that the consumer
/// subscribes to, in its `partition` if it is partitioned (a messaging "process" span of a
/// batch).
pub(crate) fn batch_span(
    consumer: &str,
    partition: Option<impl std::fmt::Display>,
    from: u64,
    to: u64,
    events: usize,
) -> Span {
    tracing::info_span!(
        "consumer_batch",
        otel.name = "process events",
        otel.kind = "consumer",
        messaging.system = SYSTEM,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = LOG,
        messaging.consumer.group.name = consumer,
        messaging.destination.partition.id = partition.map(tracing::field::display),
        messaging.batch.message_count = events,
        eventsourcery.batch.after_position = from,
        eventsourcery.batch.last_position = to,
    )
}

/// The span of one event handled by a consumer (a messaging "process" span of one message),
/// inside its batch's span; it carries the `traceparent` of the request that caused the event.
pub(crate) fn event_span(consumer: &str, event: &RecordedEvent) -> Span {
    let metadata = &event.metadata;
    failable_span!(
        info_span,
        "consumer_event",
        name = { "process events" },
        kind = "consumer",
        messaging.system = SYSTEM,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = LOG,
        messaging.consumer.group.name = consumer,
        messaging.message.id = %event.event_id,
        messaging.message.conversation_id = metadata.correlation_id.map(tracing::field::display),
        eventsourcery.event.name = event.event_name.as_str(),
        eventsourcery.event.position = event.position,
        eventsourcery.stream.id = event.stream_id.as_str(),
        eventsourcery.command.id = metadata.command_id.map(tracing::field::display),
        eventsourcery.link.traceparent = metadata.request.traceparent.as_deref(),
    )
}

/// Runs `work`, a consumer handling `event`, in its [`event_span`]; a failure marks the span.
pub(crate) async fn handling<T, E>(
    consumer: &str,
    event: &RecordedEvent,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use tracing::Instrument;

    let span = event_span(consumer, event);
    let result = work.instrument(span.clone()).await;
    if result.is_err() {
        failed(&span, "handler");
    }
    result
}

/// The span of the publisher sending one event (a messaging "send" span), with the
/// `traceparent` of the request that caused it.
#[cfg(feature = "nats")]
pub(crate) fn publish_span(publisher: &str, subject: &str, event: &RecordedEvent) -> Span {
    let metadata = &event.metadata;
    failable_span!(
        info_span,
        "publish",
        name = { %format!("send {subject}") },
        kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = subject,
        messaging.message.id = %event.event_id,
        messaging.message.conversation_id = metadata.correlation_id.map(tracing::field::display),
        eventsourcery.publisher.name = publisher,
        eventsourcery.event.name = event.event_name.as_str(),
        eventsourcery.event.position = event.position,
        eventsourcery.link.traceparent = metadata.request.traceparent.as_deref(),
    )
}
