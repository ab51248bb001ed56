//! Command errors as HTTP responses: RFC 9457 problem details for axum 0.8 (feature `axum`).
//!
//! [`CommandError`] implements axum's [`IntoResponse`], so a handler can return the bus's result
//! with `?` and every failure becomes an `application/problem+json` response with `type`,
//! `title`, `status`, `detail` and an extension member `kind` (the [`ErrorKind`] in snake case),
//! without walking the error's `source()` chain:
//!
//! ```
//! // cargo test -p eventsourcery --features axum --doc http
//! use std::sync::Arc;
//!
//! use axum::extract::State;
//! use axum::routing::post;
//! use axum::Router;
//! use eventsourcery::http::PublicRejection;
//! use eventsourcery::{Command, CommandBus, CommandError, MemoryStore};
//!
//! #[derive(Command, Clone)]
//! struct CloseWard;
//!
//! #[eventsourcery::handler]
//! async fn close(_: CloseWard) -> Result<(), PublicRejection> {
//!     // A fixed text: it is shown to the client as the problem's `detail`.
//!     Err(PublicRejection::conflict("the ward still has patients"))
//! }
//!
//! async fn close_ward(State(bus): State<Arc<CommandBus>>) -> Result<(), CommandError> {
//!     bus.execute(CloseWard).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let bus = Arc::new(CommandBus::builder(MemoryStore::new()).build().unwrap());
//! let app: Router = Router::new()
//!     .route("/ward/close", post(close_ward))
//!     .with_state(bus);
//! # }
//! ```
//!
//! # The mapping
//!
//! | [`ErrorKind`] | status | `type` | `title` |
//! | --- | --- | --- | --- |
//! | `Rejected` | 422 Unprocessable Content, or 409 Conflict for [`PublicRejection::conflict`] | [`#rejected`](#rejected) | Command rejected |
//! | `Conflict` | 409 Conflict | [`#conflict`](#conflict) | Concurrent update |
//! | `Invalid` | 400 Bad Request | [`#invalid`](#invalid) | Invalid command |
//! | `SubjectErased` | 410 Gone | [`#subject-erased`](#subject-erased) | Data subject erased |
//! | `Unavailable` | 503 Service Unavailable | [`#unavailable`](#unavailable) | Service unavailable |
//! | `Misconfigured` | 500 Internal Server Error | [`#misconfigured`](#misconfigured) | Internal server error |
//!
//! Each `type` is this page with the kind's anchor, `https://docs.rs/eventsourcery/latest/eventsourcery/http/#rejected`
//! and so on. To use types of your own, take the [`Problem`] of an error, change it, and return
//! that.
//!
//! ## rejected
//! The handler said no to the command: a rule of the domain. 422 by default (the request is
//! understood, and refused); a handler that means "the state does not allow it now" returns
//! [`PublicRejection::conflict`] for a 409.
//!
//! ## conflict
//! Concurrent writers changed the same aggregate on every attempt the bus made; sending the
//! request again may succeed.
//!
//! ## invalid
//! The command, or an event its handler raised, could not be encoded; nothing was stored.
//!
//! ## subject-erased
//! The command carries or raises personal data of a data subject who was erased (and not
//! re-enrolled); nothing was stored.
//!
//! ## unavailable
//! The event store or the personal data vault failed or could not be reached. The whole kind is
//! a 503, a corrupt row too: the client cannot act on the difference, and must not learn it.
//!
//! ## misconfigured
//! The program is set up wrong (no handler for the command, a service that was not registered,
//! clashing registrations): not a problem of the request.
//!
//! # What the client sees, and what it never sees
//!
//! A handler's error message can hold personal data ("x@example.org is already registered"),
//! and the library cannot tell; store errors name tables, files and SQL. So the `detail` is
//! always a fixed text of the library's, chosen by kind, with one exception: a rejection whose
//! error is a [`PublicRejection`] (returned by the handler, wrapped in
//! [`Error::domain`](crate::Error::domain), or found in the `source()` chain of the handler's
//! error) shows that rejection's message. Its message is a `&'static str`, written in the
//! source code, so it cannot be formatted from a command's values. An `Error::rejected(...)`
//! message or an error of your own is never shown: it stays with the error on the server.
//!
//! The `detail` of a conflict also says how many attempts were made (a number). Nothing else
//! of the error goes into the response: no command name, no subject's key, no store text.
//! Failures of the service itself (5xx) are logged with the full error at `error` level
//! (`tracing` target `eventsourcery::http`), since the response carries none of it.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::command::{CommandError, ErrorKind};

/// The media type of a problem details body (RFC 9457, section 3).
pub const PROBLEM_JSON: &str = "application/problem+json";

const TYPE_BASE: &str = "https://docs.rs/eventsourcery/latest/eventsourcery/http/";

/// A rejection whose message the client may read: the `detail` of its problem response.
///
/// The message is a `&'static str`, a text written in the source code, so that it holds no
/// personal data from a command (see the [module docs](self)). Return it from a handler, or
/// wrap it with [`Error::domain`](crate::Error::domain) (`?` does, through `From`); anywhere in
/// the handler error's `source()` chain, it is found.
///
/// ```
/// use eventsourcery::http::PublicRejection;
///
/// fn check_capacity(free_beds: u32) -> Result<(), eventsourcery::Error> {
///     if free_beds == 0 {
///         Err(PublicRejection::new("the ward has no free bed"))?;
///     }
///     Ok(())
/// }
/// # assert!(check_capacity(0).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRejection {
    message: &'static str,
    status: StatusCode,
}

impl PublicRejection {
    /// A rejection by a domain rule, answered with 422 Unprocessable Content and `message` as
    /// its detail.
    pub const fn new(message: &'static str) -> Self {
        Self {
            message,
            status: StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// A rejection because of the current state ("the voucher was already redeemed"), answered
    /// with 409 Conflict and `message` as its detail.
    pub const fn conflict(message: &'static str) -> Self {
        Self {
            message,
            status: StatusCode::CONFLICT,
        }
    }

    /// The message shown to the client.
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// The response's status: 422 or 409.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for PublicRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl StdError for PublicRejection {}

impl From<PublicRejection> for crate::command::Error {
    fn from(rejection: PublicRejection) -> Self {
        Self::domain(rejection)
    }
}

/// An RFC 9457 problem details object, as [`CommandError`]'s response sends it.
///
/// Take one from an error with `Problem::from(&error)` to change it (a `type` of your own, say)
/// before returning it: it implements [`IntoResponse`] too.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// A URI naming the problem type.
    pub type_uri: Cow<'static, str>,
    /// A short summary of the problem type, the same for every occurrence.
    pub title: Cow<'static, str>,
    /// The HTTP status.
    pub status: StatusCode,
    /// What happened, for the client: never personal data nor internals (see the
    /// [module docs](self)).
    pub detail: Cow<'static, str>,
    /// The kind of the error, sent as the extension member `kind`.
    pub kind: ErrorKind,
}

impl Problem {
    /// The problem of a failure of kind `kind`, with the kind's fixed texts.
    pub fn of_kind(kind: ErrorKind) -> Self {
        let (status, anchor, title, detail) = match kind {
            ErrorKind::Rejected => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected",
                "Command rejected",
                "The command was rejected by a rule of the domain.",
            ),
            ErrorKind::Conflict => (
                StatusCode::CONFLICT,
                "conflict",
                "Concurrent update",
                "Other requests changed the same data at the same time; send the request again.",
            ),
            ErrorKind::Invalid => (
                StatusCode::BAD_REQUEST,
                "invalid",
                "Invalid command",
                "The command, or an event it raised, could not be encoded; nothing was stored.",
            ),
            ErrorKind::SubjectErased => (
                StatusCode::GONE,
                "subject-erased",
                "Data subject erased",
                "The data subject of this request was erased; their personal data is no longer accepted.",
            ),
            ErrorKind::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "A store the service depends on failed or could not be reached; try again later.",
            ),
            ErrorKind::Misconfigured => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "misconfigured",
                "Internal server error",
                "The service is set up wrong; this is not a problem of the request.",
            ),
        };
        Self {
            type_uri: Cow::Owned(format!("{TYPE_BASE}#{anchor}")),
            title: Cow::Borrowed(title),
            status,
            detail: Cow::Borrowed(detail),
            kind,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.type_uri,
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "kind": ErrorKind::as_str(self.kind),
        })
    }
}

impl From<&CommandError> for Problem {
    fn from(error: &CommandError) -> Self {
        let mut problem = Self::of_kind(error.kind());
        match error {
            CommandError::Rejected { source, .. } => {
                if let Some(public) = public_rejection(source.as_ref()) {
                    problem.status = public.status;
                    problem.detail = Cow::Borrowed(public.message);
                }
            }
            CommandError::Conflict { attempts, .. } => {
                problem.detail = Cow::Owned(format!(
                    "Other requests changed the same data at the same time, on each of {attempts} attempts; send the request again."
                ));
            }
            _ => {}
        }
        problem
    }
}

/// The first [`PublicRejection`] in the handler's error or its `source()` chain, looking
/// inside [`crate::command::Error::Domain`] too (which, being transparent, skips its own error in
/// `source()`).
fn public_rejection<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a PublicRejection> {
    let mut next = Some(error);
    // Bounded, in case a chain loops.
    for _ in 0..32 {
        let error = next?;
        if let Some(public) = error.downcast_ref::<PublicRejection>() {
            return Some(public);
        }
        next = match error.downcast_ref::<crate::command::Error>() {
            Some(crate::command::Error::Domain(inner)) => Some(inner.as_ref()),
            _ => error.source(),
        };
    }
    None
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.to_json().to_string();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// RFC 9457 problem details, mapped by [`CommandError::kind`]: see the [module docs](self).
impl IntoResponse for CommandError {
    fn into_response(self) -> Response {
        let problem = Problem::from(&self);
        if problem.status.is_server_error() {
            // The response says nothing of it: the server's log is where it goes.
            tracing::error!(target: "eventsourcery::http", kind = ErrorKind::as_str(problem.kind), error = %self, "command failed");
        }
        problem.into_response()
    }
}
