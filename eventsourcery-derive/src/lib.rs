//! Derive and attribute macros for [eventsourcery](https://docs.rs/eventsourcery).
//!
//! Depend on `eventsourcery`, which re-exports these; this crate is an implementation detail
//! and its generated code reaches the runtime only through `::eventsourcery::__private`.
//!
//! Each macro goes through the same three steps, as serde's and thiserror's derives do: a model
//! of the input is built (`ast`, with the attributes parsed by `attr`), then checked as a whole
//! (`check`), then expanded by the macro's own module from the checked model. Errors are
//! collected in a context that must be checked before it is dropped (`attr::Ctxt`), so the user
//! sees them all at once; an input with errors expands to them and a `fallback`.

mod aggregate;
mod ast;
mod attr;
mod case;
mod check;
mod command;
mod consumer;
mod entity;
mod event;
mod fallback;
mod fields;
mod handler;
mod personal;
mod value;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

use crate::attr::ConsumerKind;
use crate::fallback::Fallback;

/// Derives `eventsourcery::SerializableValue`.
#[proc_macro_derive(SerializableValue, attributes(value))]
pub fn derive_serializable_value(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    value::expand(&input)
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Derives `eventsourcery::value::Entity`.
#[proc_macro_derive(Entity, attributes(entity))]
pub fn derive_entity(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    entity::expand(&input)
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Derives `eventsourcery::DomainEvent`.
#[proc_macro_derive(DomainEvent, attributes(event, personal))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input)
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Derives `eventsourcery::Aggregate`.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::expand(&input)
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Derives `eventsourcery::Command`.
#[proc_macro_derive(Command, attributes(command, personal))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    command::expand(&input)
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Derives `eventsourcery::personal::PersonalData`, and a `Debug` that shows no content.
///
/// `#[derive(PersonalData, Debug)]` is therefore rustc's E0119, "conflicting implementations of
/// trait `Debug`", pointing at the two derives: it does not say that this one is the redacted
/// `Debug`, so the user-facing docs (on the re-export in `eventsourcery`) say it.
#[proc_macro_derive(PersonalData, attributes(personal_data))]
pub fn derive_personal_data(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    personal::expand(&input)
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Registers a command handler.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into())
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Registers an event listener (at-least-once delivery).
#[proc_macro_attribute]
pub fn listener(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer::expand(ConsumerKind::Listener, args.into(), item.into())
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Registers a process manager: a listener that executes commands.
#[proc_macro_attribute]
pub fn process_manager(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer::expand(ConsumerKind::ProcessManager, args.into(), item.into())
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}

/// Registers a projection (exactly-once in the store's database).
#[proc_macro_attribute]
pub fn projection(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer::expand(ConsumerKind::Projection, args.into(), item.into())
        .unwrap_or_else(Fallback::into_compile_error)
        .into()
}
