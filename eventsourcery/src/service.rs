//! The service container and the handler parameters resolved from it, in the spirit of axum's
//! extractors.

use std::any::TypeId;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::engine::{Engine, UnitOfWork};
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
        "parameter of type `{parameter}` needs service `{service}`, which is not registered; call `.service(...)` on the bus builder"
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

/// What a handler parameter is resolved from: the bus and the command being executed.
#[derive(Clone)]
pub struct HandlerContext {
    pub(crate) engine: Arc<Engine>,
    pub(crate) uow: Arc<UnitOfWork>,
}

impl HandlerContext {
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
}

impl fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerContext")
            .field("command_id", &self.uow.command_id)
            .field("correlation_id", &self.uow.correlation_id)
            .finish_non_exhaustive()
    }
}

/// A type that a command handler can take as a parameter.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a command handler parameter",
    label = "not resolvable from the service container",
    note = "take `Repository<YourAggregate>`, `Store`, `CommandMeta`, or a registered service as `Dep<{Self}>` (register it with `CommandBus::builder(..).service(..)`)"
)]
pub trait FromServices: Sized + Send + 'static {
    /// Resolves the parameter for one command execution.
    fn from_services(cx: &HandlerContext) -> Result<Self, ResolveError>;

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

impl<T: Send + Sync + 'static> FromServices for Dep<T> {
    fn from_services(cx: &HandlerContext) -> Result<Self, ResolveError> {
        cx.services()
            .get::<T>()
            .map(Dep)
            .ok_or(ResolveError::MissingService {
                parameter: std::any::type_name::<Self>(),
                service: std::any::type_name::<T>(),
            })
    }

    fn parameter() -> Parameter {
        Parameter {
            type_name: std::any::type_name::<Self>(),
            service: Some((TypeId::of::<T>(), std::any::type_name::<T>())),
        }
    }
}

impl<A: Aggregate> FromServices for Repository<A> {
    fn from_services(cx: &HandlerContext) -> Result<Self, ResolveError> {
        Ok(Repository::in_unit_of_work(
            Arc::clone(&cx.engine),
            Arc::clone(&cx.uow),
        ))
    }
}

/// The event store, as a handler parameter (reads; writes go through repositories).
#[derive(Clone)]
pub struct Store(pub Arc<dyn EventStore>);

impl Deref for Store {
    type Target = dyn EventStore;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Store")
    }
}

impl FromServices for Store {
    fn from_services(cx: &HandlerContext) -> Result<Self, ResolveError> {
        Ok(Store(Arc::clone(cx.store())))
    }
}

/// The ids of the command being handled, as a handler parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandMeta {
    /// The command's id.
    pub command_id: Uuid,
    /// Its correlation id.
    pub correlation_id: Uuid,
}

impl FromServices for CommandMeta {
    fn from_services(cx: &HandlerContext) -> Result<Self, ResolveError> {
        Ok(Self {
            command_id: cx.command_id(),
            correlation_id: cx.correlation_id(),
        })
    }
}
