//! The options of one execution: correlation, causation and the request's metadata.

use uuid::Uuid;

use crate::event::RequestMetadata;

/// Options for one command execution: its correlation and causation, and what the
/// application tells about the request ([`RequestMetadata`]: actor, tenant, request id,
/// trace context, other key/values), stored with the command's log entry and its events and
/// carried on to the commands its events cause.
///
/// ```
/// use eventsourcery::bus::ExecuteOptions;
///
/// // In an HTTP handler: the caller's `X-Request-Id` names the correlation.
/// let options = ExecuteOptions::correlated_by("req-7Yc2")
///     .actor("user:8f14e45f")
///     .tenant("acme")
///     .with("channel", "web");
/// assert_eq!(options.request.request_id.as_deref(), Some("req-7Yc2"));
/// // The same header always names the same correlation.
/// assert_eq!(
///     options.correlation_id,
///     ExecuteOptions::correlated_by("req-7Yc2").correlation_id
/// );
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExecuteOptions {
    /// Continue this correlation (by default the command starts its own).
    pub correlation_id: Option<Uuid>,
    /// What caused the command (by default the command itself).
    pub causation_id: Option<Uuid>,
    /// What the application tells about the request. Never personal data: see
    /// [`RequestMetadata`].
    pub request: RequestMetadata,
}

/// The namespace of correlation ids named after a caller's string (RFC 9562 name-based ids).
const CORRELATION_NAMESPACE: Uuid = Uuid::from_u128(0x6c3f_0c1e_8a4b_4d2e_9f1a_e5b7_c0d3_a241);

/// Builder methods of [`ExecuteOptions`] that each set one key of the request metadata through
/// [`RequestMetadata`]'s method of the same name.
macro_rules! request_setters {
    ($($(#[$doc:meta])+ $key:ident;)+) => {
        $(
            $(#[$doc])+
            pub fn $key(mut self, $key: impl Into<String>) -> Self {
                self.request = self.request.$key($key);
                self
            }
        )+
    };
}

impl ExecuteOptions {
    /// No options: a fresh correlation, no request metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options for a command caused by an event or command `causation_id` within
    /// `correlation_id`.
    pub fn caused_by(correlation_id: Uuid, causation_id: Uuid) -> Self {
        Self {
            correlation_id: Some(correlation_id),
            causation_id: Some(causation_id),
            request: RequestMetadata::default(),
        }
    }

    /// Options whose correlation a caller's string names, such as an `X-Request-Id` or
    /// `X-Correlation-Id` header: the UUID itself if it is one, otherwise a name-based UUID
    /// (v5) of it, the same for the same string. The string is kept as the request id.
    pub fn correlated_by(header: &str) -> Self {
        let correlation = Uuid::parse_str(header.trim())
            .unwrap_or_else(|_| Uuid::new_v5(&CORRELATION_NAMESPACE, header.as_bytes()));
        Self {
            correlation_id: Some(correlation),
            causation_id: None,
            request: RequestMetadata::new().request_id(header),
        }
    }

    /// Continues the correlation `correlation_id`.
    pub fn correlation(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Replaces the request metadata.
    pub fn request(mut self, request: RequestMetadata) -> Self {
        self.request = request;
        self
    }

    request_setters! {
        /// Sets who asked: an opaque id, never a name or an email.
        actor;
        /// Sets the tenant.
        tenant;
        /// Sets the caller's request id.
        request_id;
        /// Sets the W3C `traceparent` of the caller's span.
        traceparent;
    }

    /// Adds the key `key` with `value` to the request metadata.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.request = self.request.with(key, value);
        self
    }
}
