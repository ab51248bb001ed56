//! Publishing the event log to other services through NATS JetStream (feature `nats`).
//!
//! [`JetStreamPublisher`] is a built-in consumer: registered with
//! [`DispatcherBuilder::consumer`](crate::dispatch::DispatcherBuilder::consumer), it reads the
//! global log from its own checkpoint like any listener and publishes each event to a
//! JetStream stream, one message per event:
//!
//! - **subject** `{prefix}.{aggregate}.{event name}`, the aggregate being the part of the
//!   stream id before its first `-` (see [`StreamId`](crate::value::StreamId)); a `.`, `*`,
//!   `>`, whitespace or control character in a token becomes `_` (so the event name
//!   `guide.table_booked` is the token `guide_table_booked`);
//! - **body** the payload exactly as stored, as JSON, at its stored schema version: personal
//!   fields are references into the personal data store, never values, so what other
//!   services receive holds no personal data and needs no erasure. Nothing is decrypted for
//!   the publisher ([`Consumer::reads_personal_data`] is `false`): a process that only
//!   publishes needs no personal data vault and no master key;
//! - **headers** `Nats-Msg-Id` (the event id), `Es-Event-Id`, `Es-Event-Name`,
//!   `Es-Stream-Id`, `Es-Position`, `Es-Stream-Version`, `Es-Schema-Version`,
//!   `Es-Recorded-At` (milliseconds since the Unix epoch), `Es-Causation-Id`,
//!   `Es-Correlation-Id`, `Es-Command-Id`, the request metadata (`Es-Actor`, `Es-Tenant`,
//!   `Es-Request-Id`, the W3C `traceparent`, and each other key as `Es-Meta-{key}`) and
//!   `Content-Type: application/json`; headers without a value are left out.
//!
//! **Delivery.** Each event is published and its acknowledgement awaited before the next one
//! is sent, so the stream holds the events of each subject (and of the whole log) in log
//! order; the checkpoint moves after the batch's acknowledgements. A crash before it moves
//! publishes the batch again: the stream's duplicate window (`duplicate_window`, two minutes
//! by default) drops the repeats by their `Nats-Msg-Id`. The stream must exist and cover
//! `{prefix}.>`: the application creates it (as below), the publisher never changes it.
//! The application also makes the connection (TLS, credentials, reconnect policy), turning
//! on in its own `async-nats` dependency what it needs beyond JetStream (`nkeys` for
//! credentials files, say).
//!
//! **A broker outage** does not lose or reorder anything, and never parks the publisher: a
//! failed publish is retried in place with its own backoff (100 ms doubling to 5 s) for
//! [`retry_for`] (5 s by default; while the broker is down an attempt lasts as long as the
//! context's ack timeout, 5 s in async-nats unless its `ContextBuilder::timeout` says
//! otherwise), then the publisher reports the broker [`Unavailable`]: its checkpoint stays
//! just before the event, its round ends, and the next round (a worker's next wake-up or
//! poll) starts again from that event, for as long as the outage lasts. A stream that does not
//! exist yet is waited for the same way. An event the broker refuses for good (larger than
//! its `max_payload`) is an ordinary error: retried, then parked after
//! [`DispatchConfig`]`::max_attempts`, at that event, for `skip_parked` or `unpark`.
//!
//! Run it in a worker ([`Dispatcher::spawn`]), not inline, so that commands never wait for
//! the broker; a dispatcher of its own keeps an outage from slowing the other consumers'
//! rounds. If another process takes over its lease while it waits, both publish in log order
//! and the duplicate window drops the repeats.
//!
//! The window is the limit: an event that the broker stored but whose ack was lost, published
//! again after an outage longer than `duplicate_window`, is stored twice. Give the stream a
//! window that covers the outages you expect, and let readers that must see each event once
//! drop repeats by `Nats-Msg-Id`.
//!
//! [`retry_for`]: JetStreamPublisher::retry_for
//! [`DispatchConfig`]: crate::dispatch::DispatchConfig
//! [`Dispatcher::spawn`]: crate::dispatch::Dispatcher::spawn
//! [`Unavailable`]: crate::dispatch::Unavailable
//!
//! ```no_run
//! # use eventsourcery::{CommandBus, MemoryStore};
//! use std::sync::Arc;
//! use eventsourcery::dispatch::Dispatcher;
//! use eventsourcery::publish::JetStreamPublisher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let store = Arc::new(MemoryStore::new());
//! # let bus = CommandBus::builder(store.clone()).build()?;
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let jetstream = async_nats::jetstream::new(client);
//! jetstream
//!     .get_or_create_stream(async_nats::jetstream::stream::Config {
//!         name: "ACME_EVENTS".into(),
//!         subjects: vec!["acme.>".into()],
//!         ..Default::default()
//!     })
//!     .await?;
//!
//! // Every event; `.events([...])` would publish only the named ones.
//! let publisher = JetStreamPublisher::new("jetstream_publisher", jetstream, "acme")?;
//! let dispatcher = Dispatcher::builder(&bus, store)
//!     .without_registered()
//!     .consumer(publisher)
//!     .build()?;
//! let worker = dispatcher.spawn();
//! // ... until the application stops:
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument;

use crate::command::BoxError;
use crate::dispatch::{Consumer, ConsumerKind, EventContext, Unavailable};
use crate::store::RecordedEvent;

/// The first delay before a failed publish is tried again; it doubles per attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one event is retried in place by default.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// The publisher could not be set up, or an event could not be published.
///
/// Messages name the subject and the log position, never a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The subject prefix is empty, or has an empty token or one with a `*`, `>`, whitespace
    /// or control character.
    #[error(
        "the subject prefix `{prefix}` is not a NATS subject: it needs non-empty `.`-separated tokens without `*`, `>` or whitespace"
    )]
    InvalidPrefix {
        /// The prefix.
        prefix: String,
    },
    /// The stored payload could not be written as JSON.
    #[error("encoding the payload of the event at position {position}: {source}")]
    Encode {
        /// The event's position in the global log.
        position: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// JetStream did not acknowledge the event: within the retry time (the broker is down, no
    /// stream covers the subject; returned inside [`Unavailable`], so dispatch tries again
    /// on its next round), or at all (the message is too large, and the like).
    #[error(
        "publishing the event at position {position} to `{subject}` failed after {attempts} attempts: {source}"
    )]
    Publish {
        /// The subject.
        subject: String,
        /// The event's position in the global log.
        position: u64,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

/// A consumer that publishes the stored events to a NATS JetStream stream; see the
/// [module docs](self) for subjects, headers, delivery and outages.
pub struct JetStreamPublisher {
    name: String,
    jetstream: Context,
    prefix: String,
    events: Option<HashSet<String>>,
    retry_for: Duration,
}

crate::redact::debug_fields!(JetStreamPublisher {
    name,
    prefix,
    events,
    retry_for
});

impl JetStreamPublisher {
    /// A publisher named `name` (the key of its checkpoint: renaming it publishes the whole
    /// log again) that publishes every event through `jetstream` under the subject prefix
    /// `prefix` (one or more `.`-separated tokens, such as `acme` or `acme.orders`).
    pub fn new(
        name: impl Into<String>,
        jetstream: Context,
        prefix: impl Into<String>,
    ) -> Result<Self, PublishError> {
        let prefix = prefix.into();
        let valid = prefix
            .split('.')
            .all(|token| !token.is_empty() && !token.chars().any(is_special));
        if !valid {
            return Err(PublishError::InvalidPrefix { prefix });
        }
        Ok(Self {
            name: name.into(),
            jetstream,
            prefix,
            events: None,
            retry_for: RETRY_FOR,
        })
    }

    /// Publishes only the events with these stored names; the others just move the
    /// checkpoint on.
    #[must_use]
    pub fn events<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.events = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// How long a failing publish is retried in place before the dispatcher is told the
    /// broker is [`Unavailable`] (it ends the publisher's round and tries again on the next
    /// one); 5 s by default. A worker's shutdown waits at most this long, plus one ack
    /// timeout, for a publisher in an outage.
    #[must_use]
    pub fn retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// The subject `event` is published to: `{prefix}.{aggregate}.{event name}`.
    pub fn subject(&self, event: &RecordedEvent) -> String {
        let stream = event.stream_id.as_str();
        let aggregate = stream.split_once('-').map_or(stream, |(name, _)| name);
        format!(
            "{}.{}.{}",
            self.prefix,
            token(aggregate),
            token(&event.event_name)
        )
    }

    /// Publishes one message and awaits its acknowledgement, retrying until `retry_for`.
    async fn publish(
        &self,
        event: &RecordedEvent,
        body: Vec<u8>,
        headers: HeaderMap,
    ) -> Result<(), BoxError> {
        let subject = self.subject(event);
        let span = crate::telemetry::publish_span(&self.name, &subject, event);
        let result = self
            .send(event, &subject, body, headers)
            .instrument(span.clone())
            .await;
        if let Err(error) = &result {
            let kind = if error.is::<Unavailable>() {
                "unavailable"
            } else {
                "refused"
            };
            crate::telemetry::failed(&span, kind);
        }
        result
    }

    /// [`publish`](Self::publish), in its span.
    async fn send(
        &self,
        event: &RecordedEvent,
        subject: &str,
        body: Vec<u8>,
        headers: HeaderMap,
    ) -> Result<(), BoxError> {
        let started = Instant::now();
        let mut delay = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = match self
                .jetstream
                .publish_with_headers(subject.to_owned(), headers.clone(), body.clone().into())
                .await
            {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            };
            let error = match result {
                Ok(ack) => {
                    if ack.duplicate {
                        // A redelivery after a crash or a lost acknowledgement.
                        tracing::debug!(
                            publisher = %self.name,
                            position = event.position,
                            "already in the stream"
                        );
                    }
                    return Ok(());
                }
                Err(error) => error,
            };
            let permanent = matches!(
                error.kind(),
                PublishErrorKind::MaxPayloadExceeded
                    | PublishErrorKind::WrongLastMessageId
                    | PublishErrorKind::WrongLastSequence
            );
            if permanent || started.elapsed() >= self.retry_for {
                let error = PublishError::Publish {
                    subject: subject.to_owned(),
                    position: event.position,
                    attempts,
                    source: error,
                };
                // A broker that is down, or a stream not created yet, is waited for (never
                // parks); an event the broker refuses is an error like any other.
                return Err(if permanent {
                    error.into()
                } else {
                    Unavailable::new(error).into()
                });
            }
            tracing::debug!(
                publisher = %self.name,
                position = event.position,
                attempts,
                %error,
                "publish failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}

#[async_trait::async_trait]
impl Consumer for JetStreamPublisher {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ConsumerKind {
        ConsumerKind::Listener
    }

    fn subscribes_to(&self, event_name: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|names| names.contains(event_name))
    }

    /// It forwards stored payloads: nothing is decrypted for it.
    fn reads_personal_data(&self) -> bool {
        false
    }

    async fn handle(&self, cx: &mut EventContext<'_>) -> Result<(), BoxError> {
        let envelope = cx.envelope();
        let event = envelope.recorded();
        // The payload as stored, never a decoded event: its personal fields are references.
        let body = serde_json::to_vec(envelope.stored_payload()).map_err(|source| {
            PublishError::Encode {
                position: event.position,
                source,
            }
        })?;
        self.publish(event, body, headers(event)).await?;
        Ok(())
    }
}

/// Whether `c` may not appear in a subject token.
fn is_special(c: char) -> bool {
    matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control()
}

/// `s` as one subject token.
fn token(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.chars()
        .map(|c| if is_special(c) { '_' } else { c })
        .collect()
}

/// The headers of `event`'s message.
fn headers(event: &RecordedEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let metadata = &event.metadata;
    let request = &metadata.request;
    let recorded_at = event
        .recorded_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let fixed = [
        ("Nats-Msg-Id", Some(event.event_id.to_string())),
        ("Content-Type", Some("application/json".to_owned())),
        ("Es-Event-Id", Some(event.event_id.to_string())),
        ("Es-Event-Name", Some(event.event_name.clone())),
        ("Es-Stream-Id", Some(event.stream_id.to_string())),
        ("Es-Position", Some(event.position.to_string())),
        ("Es-Stream-Version", Some(event.stream_version.to_string())),
        ("Es-Schema-Version", Some(event.schema_version.to_string())),
        ("Es-Recorded-At", Some(recorded_at.to_string())),
        (
            "Es-Causation-Id",
            metadata.causation_id.map(|id| id.to_string()),
        ),
        (
            "Es-Correlation-Id",
            metadata.correlation_id.map(|id| id.to_string()),
        ),
        (
            "Es-Command-Id",
            metadata.command_id.map(|id| id.to_string()),
        ),
        ("Es-Actor", request.actor.clone()),
        ("Es-Tenant", request.tenant.clone()),
        ("Es-Request-Id", request.request_id.clone()),
        ("traceparent", request.traceparent.clone()),
    ];
    for (name, value) in fixed {
        if let (Ok(name), Some(value)) = (HeaderName::from_str(name), value) {
            headers.insert(name, header_value(&value));
        }
    }
    for (key, value) in &request.extra {
        // Keys were checked when the command ran (a-z, 0-9, `_`, `-`, `.`); one that is not a
        // header name anyway is left out rather than mangled.
        if let Ok(name) = HeaderName::from_str(&format!("Es-Meta-{key}")) {
            headers.insert(name, header_value(value));
        }
    }
    headers
}

/// `value` as a header value: control characters (a line break would end the header) become
/// spaces.
fn header_value(value: &str) -> HeaderValue {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    HeaderValue::from(clean.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_no_subject_wildcards_or_separators() {
        assert_eq!(token("guide.table_booked"), "guide_table_booked");
        assert_eq!(token("a*b>c d\te\n"), "a_b_c_d_e_");
        assert_eq!(token(""), "_");
        assert_eq!(token("ticket_sold"), "ticket_sold");
    }

    #[test]
    fn header_values_hold_no_line_break() {
        assert_eq!(header_value("a\r\nb").as_str(), "a  b");
    }
}
