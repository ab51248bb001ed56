//! Derive and attribute macros for [eventsourcery](https://docs.rs/eventsourcery).
//!
//! Depend on `eventsourcery`, which re-exports these; this crate is an implementation detail
//! and its generated code reaches the runtime only through `::eventsourcery::__private`.

mod aggregate;
mod attr;
mod case;
mod command;
mod consumer;
mod event;
mod fields;
mod handler;
mod personal;
mod value;

use proc_macro::TokenStream;
use syn::{DeriveInput, ItemFn, parse_macro_input};

/// Derives `eventsourcery::SerializableValue`.
#[proc_macro_derive(SerializableValue, attributes(value))]
pub fn derive_serializable_value(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    value::expand(&input).into()
}

/// Derives `eventsourcery::DomainEvent`.
#[proc_macro_derive(DomainEvent, attributes(event, personal))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input).into()
}

/// Derives `eventsourcery::Aggregate`.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::expand(&input).into()
}

/// Derives `eventsourcery::Command`.
#[proc_macro_derive(Command, attributes(command, personal))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    command::expand(&input).into()
}

/// Derives `eventsourcery::personal::PersonalData`, and a `Debug` that shows no content.
///
/// `#[derive(PersonalData, Debug)]` is therefore rustc's E0119, "conflicting implementations of
/// trait `Debug`", pointing at the two derives: it does not say that this one is the redacted
/// `Debug`, so the user-facing docs (on the re-export in `eventsourcery`) say it.
#[proc_macro_derive(PersonalData, attributes(personal_data))]
pub fn derive_personal_data(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    personal::expand(&input).into()
}

/// Registers a command handler.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    on_function(
        item,
        "`#[eventsourcery::handler]` goes on an `async fn` whose first parameter is the command it handles",
        |function| handler::expand(args.into(), function),
    )
}

/// Expands an attribute macro on a function. On anything else, gives the user's tokens back
/// with the error, so editors keep working.
fn on_function(
    item: TokenStream,
    usage: &str,
    expand: impl FnOnce(&ItemFn) -> proc_macro2::TokenStream,
) -> TokenStream {
    let item_tokens = proc_macro2::TokenStream::from(item.clone());
    match syn::parse::<ItemFn>(item) {
        Ok(function) => expand(&function).into(),
        Err(error) => {
            let error = match syn::parse2::<syn::Item>(item_tokens.clone()) {
                // Another kind of item: say what the attribute goes on, rather than "expected `fn`".
                Ok(other) => syn::Error::new_spanned(other, usage),
                // Not an item at all: syn's error points at the syntax.
                Err(_) => error,
            };
            let error = error.to_compile_error();
            quote::quote!(#item_tokens #error).into()
        }
    }
}

fn consumer_attribute(kind: consumer::Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let usage = format!(
        "`#[eventsourcery::{}]` goes on an `async fn` whose first parameter is the event it handles",
        kind.attr()
    );
    on_function(item, &usage, |function| {
        consumer::expand(kind, args.into(), function)
    })
}

/// Registers an event listener (at-least-once delivery).
#[proc_macro_attribute]
pub fn listener(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer_attribute(consumer::Kind::Listener, args, item)
}

/// Registers a process manager: a listener that executes commands.
#[proc_macro_attribute]
pub fn process_manager(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer_attribute(consumer::Kind::ProcessManager, args, item)
}

/// Registers a projection (exactly-once in the store's database).
#[proc_macro_attribute]
pub fn projection(args: TokenStream, item: TokenStream) -> TokenStream {
    consumer_attribute(consumer::Kind::Projection, args, item)
}
