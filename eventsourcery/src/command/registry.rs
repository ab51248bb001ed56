//! What `#[derive(Command)]` and `#[eventsourcery::handler]` register, and how the bus calls a
//! handler: code-generation plumbing, reached by generated code through `__private` only.

use std::any::{Any, TypeId};

use crate::error::{BoxError, BoxFuture};
use crate::service::{CommandContext, Parameter, ResolveError};

/// A command handler, submitted by `#[eventsourcery::handler]`.
#[derive(Debug)]
pub struct HandlerRegistration {
    /// The command's type.
    pub command: fn() -> TypeId,
    /// The command's name.
    pub command_name: &'static str,
    /// The handler function's path, for messages.
    pub handler: &'static str,
    /// Calls the handler.
    pub call: HandlerFn,
    /// What its parameters need from the service container.
    pub parameters: fn() -> Vec<Parameter>,
}

inventory::collect!(HandlerRegistration);

/// A command type of the program, registered by `#[derive(Command)]`, so that
/// [`CommandBus::check`](crate::CommandBus::check) can tell the commands without a handler.
#[derive(Debug)]
pub struct CommandRegistration {
    /// The command's type.
    pub command: fn() -> TypeId,
    /// The command's name.
    pub name: &'static str,
}

inventory::collect!(CommandRegistration);

/// The type-erased entry point of a handler.
pub(crate) type HandlerFn =
    fn(CommandContext, Box<dyn Any + Send>) -> BoxFuture<'static, Result<(), HandlerFailure>>;

/// Why a handler call did not succeed.
#[derive(Debug)]
pub enum HandlerFailure {
    /// A parameter could not be resolved.
    Resolve(ResolveError),
    /// The handler returned an error.
    Failed(BoxError),
}
