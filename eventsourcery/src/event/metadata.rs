//! What is stored beside every event and command log entry: the ids that link them, and what
//! the application said about the request that started them.

use std::collections::BTreeMap;

use uuid::Uuid;

/// Metadata stored beside every event and every command log entry.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The command (or event) that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The id shared by everything that flows from one original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The command that recorded this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// What the application told about the request (actor, tenant, request id, trace, other
    /// key/values), carried on to everything the request causes.
    #[serde(default, skip_serializing_if = "RequestMetadata::is_empty")]
    pub request: RequestMetadata,
}

impl Metadata {
    /// Metadata for events recorded by command `command_id` within `correlation_id`.
    pub fn for_command(command_id: Uuid, correlation_id: Uuid, causation_id: Uuid) -> Self {
        Self {
            causation_id: Some(causation_id),
            correlation_id: Some(correlation_id),
            command_id: Some(command_id),
            request: RequestMetadata::default(),
        }
    }

    /// The same, with `request`.
    pub fn with_request(mut self, request: RequestMetadata) -> Self {
        self.request = request;
        self
    }
}

/// What an application says about a request, stored in plain text with its command log entry
/// and every event it records, handed to consumers ([`EventMeta::request`]) and carried on by
/// process managers to the commands they execute.
///
/// **Never personal data.** These values are stored as they are, in the event and command
/// tables, and are not erased with a data subject: an actor is an opaque id (`user:8f14e45f`,
/// `service:billing`), never a name or an email; a request id is the header's token. Personal
/// data goes in a command's `#[personal]` fields.
///
/// The common keys are typed; [`with`](Self::with) adds others. Limits, checked when the
/// command is executed ([`MetadataError`]): keys of 1 to 64 characters of `a-z`, `0-9`, `_`,
/// `-` and `.`; values of at most 256 characters without control characters; at most 16 other
/// keys; a trace context in the W3C `traceparent` form.
///
/// ```
/// use eventsourcery::event::RequestMetadata;
///
/// let request = RequestMetadata::new()
///     .actor("user:8f14e45f")
///     .tenant("acme")
///     .request_id("req-7Yc2")
///     .with("channel", "web");
/// assert_eq!(request.actor_id(), Some("user:8f14e45f"));
/// assert_eq!(request.get("channel"), Some("web"));
/// assert!(request.validate().is_ok());
/// ```
///
/// [`EventMeta::request`]: crate::dispatch::EventMeta::request
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RequestMetadata {
    /// Who asked: an opaque id of a user or a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The tenant the request is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The request id of the caller (an `X-Request-Id` header, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C trace context (`traceparent`) of the caller's span, for tracing systems to
    /// join the command and its consumers to the request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Other keys and values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// The longest key of [`RequestMetadata::extra`].
const MAX_KEY: usize = 64;
/// The longest value.
const MAX_VALUE: usize = 256;
/// The most keys in [`RequestMetadata::extra`].
const MAX_EXTRA: usize = 16;

impl RequestMetadata {
    /// No metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.actor.is_none()
            && self.tenant.is_none()
            && self.request_id.is_none()
            && self.traceparent.is_none()
            && self.extra.is_empty()
    }

    /// Sets who asked (an opaque id, never a name or an email).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the caller's request id.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the W3C `traceparent` of the caller's span
    /// (`00-{32 hex trace id}-{16 hex parent id}-{2 hex flags}`).
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Adds the key `key` with `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The actor, if set.
    pub fn actor_id(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// The value of the other key `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra.get(key).map(String::as_str)
    }

    /// Checks the limits. The error names the key, never the value.
    pub fn validate(&self) -> Result<(), MetadataError> {
        for (key, value) in [
            ("actor", &self.actor),
            ("tenant", &self.tenant),
            ("request_id", &self.request_id),
        ] {
            if let Some(value) = value {
                check_value(key, value)?;
            }
        }
        if let Some(traceparent) = &self.traceparent
            && !is_traceparent(traceparent)
        {
            return Err(MetadataError {
                key: "traceparent".into(),
                problem: "is not a W3C traceparent (00-{32 hex}-{16 hex}-{2 hex})",
            });
        }
        if self.extra.len() > MAX_EXTRA {
            return Err(MetadataError {
                key: "extra".into(),
                problem: "holds more than 16 keys",
            });
        }
        for (key, value) in &self.extra {
            let valid_key = (1..=MAX_KEY).contains(&key.len())
                && key.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                });
            if !valid_key {
                return Err(MetadataError {
                    key: key.chars().take(MAX_KEY).collect(),
                    problem: "is not a key of 1 to 64 characters of a-z, 0-9, _, - and .",
                });
            }
            check_value(key, value)?;
        }
        Ok(())
    }
}

fn check_value(key: &str, value: &str) -> Result<(), MetadataError> {
    let problem = if value.chars().count() > MAX_VALUE {
        "is longer than 256 characters"
    } else if value.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(MetadataError {
        key: key.to_owned(),
        problem,
    })
}

/// Whether `value` is a W3C `traceparent` of version 00, with non-zero ids.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    let nonzero = |part: &str| part.chars().any(|c| c != '0');
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if *version == "00"
            && hex(trace, 32) && nonzero(trace)
            && hex(parent, 16) && nonzero(parent)
            && hex(flags, 2))
}

/// A [`RequestMetadata`] value broke a limit. It names the key, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request metadata `{key}` {problem}")]
#[non_exhaustive]
pub struct MetadataError {
    /// The key.
    pub key: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn limits_are_checked_and_values_never_shown() {
        assert!(RequestMetadata::new().traceparent(TRACE).validate().is_ok());
        let secret = "ann@example.com\n";
        let error = RequestMetadata::new()
            .actor(secret)
            .validate()
            .expect_err("a control character");
        assert_eq!(error.key, "actor");
        assert!(!error.to_string().contains("ann"), "{error}");
        for bad in [
            RequestMetadata::new().traceparent("00-0af7651916cd43dd8448eb211c80319c"),
            RequestMetadata::new()
                .traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            RequestMetadata::new().with("Bad Key", "x"),
            RequestMetadata::new().with("", "x"),
            RequestMetadata::new().request_id("x".repeat(257)),
            (0..17).fold(RequestMetadata::new(), |m, i| m.with(format!("k{i}"), "v")),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_metadata_adds_nothing_to_the_stored_json() {
        let metadata = Metadata::for_command(Uuid::nil(), Uuid::nil(), Uuid::nil());
        let json = serde_json::to_string(&metadata).expect("serializes");
        assert!(!json.contains("request"), "{json}");
        let with = metadata.with_request(RequestMetadata::new().actor("user:1").with("k", "v"));
        let json = serde_json::to_string(&with).expect("serializes");
        let back: Metadata = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, with);
    }
}
