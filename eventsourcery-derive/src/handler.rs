//! `#[eventsourcery::handler]`: registers an `async fn` as a command handler.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ReturnType;
use syn::spanned::Spanned;

use crate::ast::{self, Function};
use crate::attr::Ctxt;
use crate::check;
use crate::fallback::Fallback;

const USAGE: &str = "`#[eventsourcery::handler]` goes on an `async fn` whose first parameter is the command it handles";

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Fallback> {
    let function = ast::item_fn(item, USAGE)?;
    let cx = Ctxt::new();
    let handler = Function::handler(&cx, &args, &function);
    check::handler(&cx, &handler);
    // Keep the user's function so editors and other errors still work.
    cx.check()
        .map_err(|errors| Fallback::item(errors, &function))?;
    Ok(expand_handler(&handler))
}

/// The function is checked: an `async fn` taking its command first.
fn expand_handler(handler: &Function<()>) -> TokenStream {
    let function = handler.item;
    let sig = &function.sig;
    let types = handler.types();
    let Some((command, parameters)) = types.split_first() else {
        unreachable!("a handler without parameters is rejected by `check::handler`");
    };
    let ident = &sig.ident;
    let locals: Vec<_> = (0..parameters.len())
        .map(|i| format_ident!("__p{}", i))
        .collect();
    // Each trait is named through `<T as Trait>` paths spanned on the user's type, and nothing
    // else requires it: the compiler then reports one identical error per mistake, which it
    // shows once, on the parameter or the command.
    let resolve = parameters.iter().zip(&locals).map(|(ty, local)| {
        quote_spanned! {ty.span()=>
            let #local = <#ty as ::eventsourcery::__private::HandlerParameter>::resolve(&cx)
                .map_err(::eventsourcery::__private::HandlerFailure::Resolve)?;
        }
    });
    let describe = parameters.iter().map(|ty| {
        quote_spanned!(ty.span()=> <#ty as ::eventsourcery::__private::HandlerParameter>::describe())
    });
    let command_name = quote_spanned! {command.span()=>
        <#command as ::eventsourcery::__private::Command>::NAME
    };
    let output_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    // The value is bound first so that a bad return type is reported on the return type.
    let output = quote_spanned!(output_span=> ::eventsourcery::__private::handler_output(__output));
    let handler_name = ident.to_string();
    quote! {
        #function

        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            fn __eventsourcery_call(
                cx: ::eventsourcery::__private::CommandContext,
                command: ::std::boxed::Box<dyn ::core::any::Any + ::core::marker::Send>,
            ) -> ::eventsourcery::__private::HandlerFuture {
                ::std::boxed::Box::pin(async move {
                    let command = ::eventsourcery::__private::downcast_command::<#command>(command)?;
                    #(#resolve)*
                    let __output = #ident(command #(, #locals)*).await;
                    #output
                })
            }

            fn __eventsourcery_parameters() -> ::std::vec::Vec<::eventsourcery::__private::Parameter> {
                ::std::vec![#(#describe),*]
            }

            ::eventsourcery::__private::inventory::submit! {
                ::eventsourcery::__private::HandlerRegistration {
                    command: ::eventsourcery::__private::TypeId::of::<#command>,
                    command_name: #command_name,
                    handler: ::core::concat!(::core::module_path!(), "::", #handler_name),
                    call: __eventsourcery_call,
                    parameters: __eventsourcery_parameters,
                }
            }
        };
    }
}
