//! The parameters of handler and consumer functions, in the spirit of axum's extractors.
//!
//! A function registered with [`handler`](crate::handler), [`listener`](crate::listener),
//! [`process_manager`](crate::process_manager) or [`projection`](crate::projection) takes, after
//! its command or event, any number of parameters whose types implement [`FromContext`] for the
//! context the function runs in: [`CommandContext`] for a command handler,
//! [`EventContext`](crate::dispatch::EventContext) for a consumer. [`Dep`] (a registered service)
//! works in both; [`Repository`] and [`CommandMeta`] in handlers; the event's parameters are in
//! [`dispatch`](crate::dispatch).
//!
//! Guide: [commands and handlers](crate::docs::commands_and_handlers) and
//! [consumers](crate::docs::consumers#consumer-parameters).

use std::any::TypeId;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::engine::{Engine, UnitOfWork};
use crate::event::RequestMetadata;
use crate::repository::Repository;

pub use crate::engine::Services;
use crate::store::EventStore;

/// What a handler parameter needs from the container, for start-up checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    /// The parameter's type, for messages.
    pub type_name: &'static str,
    /// The registered service it needs, if any.
    pub service: Option<(TypeId, &'static str)>,
}

/// A handler parameter could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The service is not registered.
    #[error(
        "parameter of type `{parameter}` needs service `{service}`, which is not registered; call `.service(...)` on the bus builder (or on the dispatcher, for a consumer)"
    )]
    MissingService {
        /// The parameter type.
        parameter: &'static str,
        /// The service type.
        service: &'static str,
    },
    /// The command passed to the handler was not the type it takes (a registration bug).
    #[error("the handler was given a command of another type than `{expected}`")]
    WrongCommand {
        /// The type the handler takes.
        expected: &'static str,
    },
}

/// What a command handler's parameters are resolved from: the bus and the command being
/// executed.
#[derive(Clone)]
pub struct CommandContext {
    pub(crate) engine: Arc<Engine>,
    pub(crate) uow: Arc<UnitOfWork>,
}

impl CommandContext {
    /// The event store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.engine.store
    }

    /// The registered services.
    pub fn services(&self) -> &Services {
        &self.engine.services
    }

    /// The id of the command being executed.
    pub fn command_id(&self) -> Uuid {
        self.uow.command_id
    }

    /// The correlation id of the command being executed.
    pub fn correlation_id(&self) -> Uuid {
        self.uow.correlation_id
    }

    /// What the caller told about the request (actor, tenant, request id, ...).
    pub fn request(&self) -> &RequestMetadata {
        &self.uow.metadata.request
    }
}

impl fmt::Debug for CommandContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandContext")
            .field("command_id", &self.uow.command_id)
            .field("correlation_id", &self.uow.correlation_id)
            .finish_non_exhaustive()
    }
}

/// A type that a handler or consumer function can take as a parameter, resolved from the
/// context `Cx` the function runs in.
///
/// `Cx` is [`CommandContext`] for a command handler and
/// [`EventContext`](crate::dispatch::EventContext) for a listener, process manager or
/// projection. Implement it for your own types to take them as parameters:
///
/// ```
/// use eventsourcery::service::{CommandContext, FromContext, ResolveError};
///
/// /// The correlation id of the command, as a parameter.
/// struct Correlation(uuid::Uuid);
///
/// impl FromContext<CommandContext> for Correlation {
///     fn from_context(cx: &CommandContext) -> Result<Self, ResolveError> {
///         Ok(Correlation(cx.correlation_id()))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be resolved from `{Cx}`",
    label = "not a parameter for `{Cx}`",
    note = "a command handler takes `Repository<YourAggregate>`, `Arc<dyn EventStore>`, `CommandMeta`, or a registered service as `Dep<T>`",
    note = "a listener, process manager or projection takes `EventMeta`, `Commands`, `Once`, `PersonalRefs`, `Repository<A>` (read-only), `Dep<T>`, or `&mut ProjectionTx<'_>` in a projection"
)]
pub trait FromContext<Cx>: Sized {
    /// Resolves the parameter for one command or event.
    fn from_context(cx: &Cx) -> Result<Self, ResolveError>;

    /// What the parameter needs, checked by [`CommandBus::check`](crate::CommandBus::check).
    fn parameter() -> Parameter {
        Parameter {
            type_name: std::any::type_name::<Self>(),
            service: None,
        }
    }
}

/// A service registered with the bus, shared by reference count.
///
/// ```
/// # use eventsourcery::Dep;
/// #[derive(Debug)]
/// struct Mailer { from: String }
/// // In a handler: `async fn notify(cmd: Notify, mailer: Dep<Mailer>) -> Result<(), Error>`
/// ```
pub struct Dep<T: ?Sized>(Arc<T>);

impl<T: ?Sized> Dep<T> {
    /// Wraps a shared service.
    pub fn new(service: Arc<T>) -> Self {
        Self(service)
    }

    /// The shared service.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Deref for Dep<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> Clone for Dep<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Dep<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Send + Sync + 'static> Dep<T> {
    /// The service from `services`, or the error naming what is missing.
    /// The parameter: the service it needs.
    pub(crate) fn describe() -> Parameter {
        Parameter {
            type_name: std::any::type_name::<Self>(),
            service: Some((TypeId::of::<T>(), std::any::type_name::<T>())),
        }
    }

    pub(crate) fn from_services(services: &[&Services]) -> Result<Self, ResolveError> {
        services
            .iter()
            .find_map(|services| services.get::<T>())
            .map(Dep)
            .ok_or(ResolveError::MissingService {
                parameter: std::any::type_name::<Self>(),
                service: std::any::type_name::<T>(),
            })
    }
}

impl<T: Send + Sync + 'static> FromContext<CommandContext> for Dep<T> {
    fn from_context(cx: &CommandContext) -> Result<Self, ResolveError> {
        Self::from_services(&[cx.services()])
    }

    fn parameter() -> Parameter {
        Self::describe()
    }
}

impl<A: Aggregate> FromContext<CommandContext> for Repository<A> {
    fn from_context(cx: &CommandContext) -> Result<Self, ResolveError> {
        Ok(Repository::in_unit_of_work(
            Arc::clone(&cx.engine),
            Arc::clone(&cx.uow),
        ))
    }
}

/// The event store, for reads (writes go through repositories).
impl FromContext<CommandContext> for Arc<dyn EventStore> {
    fn from_context(cx: &CommandContext) -> Result<Self, ResolveError> {
        Ok(Arc::clone(cx.store()))
    }
}

/// The ids and request metadata of the command being handled, as a handler parameter: the
/// actor, to decide whether they may, say.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandMeta {
    /// The command's id.
    pub command_id: Uuid,
    /// Its correlation id.
    pub correlation_id: Uuid,
    /// What the caller told about the request.
    pub request: RequestMetadata,
}

impl FromContext<CommandContext> for CommandMeta {
    fn from_context(cx: &CommandContext) -> Result<Self, ResolveError> {
        Ok(Self {
            command_id: cx.command_id(),
            correlation_id: cx.correlation_id(),
            request: cx.request().clone(),
        })
    }
}
