//! Commands, their handlers, and the errors of executing them.
//!
//! A command derives [`Command`](macro@Command) and is handled by one
//! `#[eventsourcery::handler]` function, which returns [`Error`] or an error of its own;
//! the bus reports every failure as a [`CommandError`], whose [`kind`](CommandError::kind)
//! ([`ErrorKind`]) tells a domain rejection from a conflict, invalid input, an erased subject or
//! a failing store, so that services can map failures (to HTTP statuses, say) without reading
//! source chains. Guide: [commands and handlers](crate::docs::commands_and_handlers).

use serde_json::Value;
use uuid::Uuid;

use crate::codec::EncodeContext;
pub use crate::error::{BoxError, BoxFuture};
use crate::event::{EventError, RegistryError};
use crate::personal::{PersonalError, PersonalKey};
use crate::service::ResolveError;
use crate::store::{RecordedEvent, StoreError};

pub(crate) mod registry;

pub(crate) use registry::{CommandRegistration, HandlerFailure, HandlerRegistration};

/// Derives [`Command`], with `#[command(name = "...")]` to set its log name.
pub use eventsourcery_derive::Command;

/// A request to change the system, derived with `#[derive(Command)]` and handled by one
/// `#[eventsourcery::handler]` function.
///
/// Commands are cloned when the bus retries one after a concurrency conflict.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command",
    label = "not a command",
    note = "add `#[derive(Command, Clone)]` to `{Self}`; a handler's first parameter is its command"
)]
pub trait Command: Clone + Send + Sync + 'static {
    /// The command's name in the command log (`#[command(name = "...")]`, by default the type
    /// name in snake case).
    const NAME: &'static str;

    /// Encodes the command for the log, routing personal fields into `cx`.
    fn encode(&self, cx: &mut EncodeContext) -> Result<Value, EventError>;
}

/// What the command log stores instead of a handler's error message when the command touched
/// personal data (it carries some, or its handler read or raised some): the message could hold
/// personal values, and the command log is never erased. The caller still gets the handler's
/// own error.
pub const WITHHELD: &str =
    "rejected by the handler; message withheld: the command touched personal data";

/// What a command's execution produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CommandReceipt {
    /// The command's id, the causation id of its events.
    pub command_id: Uuid,
    /// The correlation id shared with what caused the command.
    pub correlation_id: Uuid,
    /// The events appended, in order.
    pub events: Vec<RecordedEvent>,
    /// How many attempts it took (more than 1 after concurrency conflicts).
    pub attempts: u32,
}

/// A command could not be executed.
///
/// [`kind`](Self::kind) sorts the variants for callers that map them (to an HTTP status, say):
/// a rejection by the handler, a conflict that retries did not resolve, invalid input, an
/// erased subject, a failure of the stores (the infrastructure), or a program that is set up
/// wrong. A store or vault failure that the handler passed on with `?` is reported as such,
/// never as a rejection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No handler is registered for the command.
    #[error(
        "no handler is registered for command `{command}`; add `#[eventsourcery::handler]` to an `async fn` taking it as its first parameter"
    )]
    NoHandler {
        /// The command name.
        command: &'static str,
    },
    /// A handler parameter could not be resolved from the service container.
    #[error("handler `{handler}` for command `{command}`: {source}")]
    Unresolved {
        /// The command name.
        command: &'static str,
        /// The handler.
        handler: &'static str,
        /// What is missing.
        #[source]
        source: ResolveError,
    },
    /// The handler rejected the command with its own error; nothing was appended.
    #[error("command `{command}` was rejected: {source}")]
    Rejected {
        /// The command name.
        command: &'static str,
        /// The handler's error.
        #[source]
        source: BoxError,
    },
    /// Every attempt lost an optimistic-concurrency race.
    #[error("command `{command}` conflicted with concurrent writers {attempts} times in a row")]
    Conflict {
        /// The command name.
        command: &'static str,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The command, or an event its handler raised, could not be encoded (a value that does
    /// not serialize, say); nothing was stored.
    #[error("command `{command}` is invalid: {source}")]
    Invalid {
        /// The command name.
        command: &'static str,
        /// What could not be encoded, and where.
        #[source]
        source: EventError,
    },
    /// The request metadata given with the command breaks a limit (a key, a length, a
    /// control character, a malformed trace context); nothing was stored. The message names
    /// the key, never the value.
    #[error("command `{command}`: {source}")]
    InvalidMetadata {
        /// The command name.
        command: &'static str,
        /// Which key, and what is wrong.
        #[source]
        source: crate::event::MetadataError,
    },
    /// The command carries or raises personal data of a subject that was erased (and not
    /// re-enrolled); nothing was stored.
    #[error("command `{command}`: data subject {subject} was erased; its personal data is refused")]
    SubjectErased {
        /// The command name.
        command: &'static str,
        /// The erased subject.
        subject: PersonalKey,
    },
    /// The event store failed, or holds an event it cannot read (during the handler or the
    /// commit).
    #[error("command `{command}`: {source}")]
    Store {
        /// The command name.
        command: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The personal data vault failed while the command's values were stored.
    #[error("command `{command}`: personal data: {source}")]
    Personal {
        /// The command name.
        command: &'static str,
        /// The vault's error.
        #[source]
        source: PersonalError,
    },
    /// The program's registrations are inconsistent.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What kind of failure a [`CommandError`] is, for callers that map failures (to HTTP
/// statuses, retries, alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The handler said no: a domain rule (HTTP 422 or 409, as the domain means it).
    Rejected,
    /// Concurrent writers won every attempt (HTTP 409; trying again later may succeed).
    Conflict,
    /// The request could not be encoded (HTTP 400 or 422).
    Invalid,
    /// The data subject was erased (HTTP 410).
    SubjectErased,
    /// A store or the vault failed or is unreachable (HTTP 503, or 500 for a corrupt row).
    Unavailable,
    /// The program is set up wrong: no handler, a missing service, clashing registrations
    /// (HTTP 500).
    Misconfigured,
}

impl ErrorKind {
    /// The kind's name in snake case (`subject_erased`), as metrics and problem details use
    /// it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::SubjectErased => "subject_erased",
            Self::Unavailable => "unavailable",
            Self::Misconfigured => "misconfigured",
        }
    }
}

impl CommandError {
    /// The handler's error, if the command was rejected with an error of type `E`.
    pub fn rejection<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::Rejected { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Whether the command gave up after concurrency conflicts.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Rejected { .. } => ErrorKind::Rejected,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::Invalid { .. } | Self::InvalidMetadata { .. } => ErrorKind::Invalid,
            Self::SubjectErased { .. } => ErrorKind::SubjectErased,
            Self::Store { .. } | Self::Personal { .. } => ErrorKind::Unavailable,
            Self::NoHandler { .. } | Self::Unresolved { .. } | Self::Registry(_) => {
                ErrorKind::Misconfigured
            }
        }
    }

    /// The error for a command whose run met `failure`, a store error (of its handler's
    /// repository calls, or of its commit).
    pub(crate) fn from_store(command: &'static str, failure: StoreError) -> Self {
        match failure {
            StoreError::Conflict { .. } => Self::Conflict {
                command,
                attempts: 1,
            },
            StoreError::Encode(source) => Self::Invalid {
                command,
                source: *source,
            },
            StoreError::Personal { source, .. } => Self::from_personal(command, source),
            source => Self::Store { command, source },
        }
    }

    /// The error for a command whose personal values the vault did not store.
    pub(crate) fn from_personal(command: &'static str, failure: PersonalError) -> Self {
        match failure {
            PersonalError::SubjectErased { subject } => Self::SubjectErased { command, subject },
            source => Self::Personal { command, source },
        }
    }
}

/// A general error for command handlers: the store's errors plus the domain's own.
///
/// Handlers may return any error type; this one is there for convenience, with `?` working on
/// repository calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The domain rejected the command, with a message.
    #[error("{0}")]
    Rejected(String),
    /// The domain rejected the command with its own error.
    #[error(transparent)]
    Domain(BoxError),
}

impl Error {
    /// A rejection with a message for the caller.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected(message.into())
    }

    /// Wraps a domain error.
    pub fn domain(error: impl Into<BoxError>) -> Self {
        Self::Domain(error.into())
    }
}

/// What a handler may return: `()` or `Result<(), E>` for any error type `E`.
#[diagnostic::on_unimplemented(
    message = "a command handler must return `Result<(), E>` (or `()`), not `{Self}`",
    label = "unsupported return type",
    note = "return `Result<(), eventsourcery::Error>` or `Result<(), YourError>` where `YourError: std::error::Error + Send + Sync`"
)]
pub trait HandlerOutput {
    /// Converts into the bus's result.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> HandlerOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}
