//! `#[eventsourcery::handler]`: registers an `async fn` as a command handler.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

use crate::attr::Ctxt;

pub(crate) fn expand(args: TokenStream, function: &ItemFn) -> TokenStream {
    let cx = Ctxt::new();
    if !args.is_empty() {
        cx.error(&args, "`handler` takes no arguments");
    }
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        cx.error(sig.fn_token, "a command handler must be an `async fn`");
    }
    if !sig.generics.params.is_empty() {
        cx.error(
            &sig.generics,
            "a command handler cannot be generic: the bus calls it for one command type",
        );
    }
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                cx.error(
                    receiver,
                    "a command handler is a free function, not a method",
                );
            }
            FnArg::Typed(typed) => types.push(&*typed.ty),
        }
    }
    if types.is_empty() && sig.inputs.is_empty() {
        cx.error(
            &sig.ident,
            "a command handler takes its command as its first parameter: `async fn handle(command: MyCommand, ...)`",
        );
    }
    if let Err(error) = cx.check() {
        // Keep the user's function so editors and other errors still work.
        let error = error.to_compile_error();
        return quote!(#function #error);
    }

    let ident = &sig.ident;
    let command = types[0];
    let parameters = &types[1..];
    let locals: Vec<_> = (0..parameters.len())
        .map(|i| format_ident!("__p{}", i))
        .collect();
    // Each trait is named through `<T as Trait>` paths spanned on the user's type, and nothing
    // else requires it: the compiler then reports one identical error per mistake, which it
    // shows once, on the parameter or the command.
    let resolve = parameters.iter().zip(&locals).map(|(ty, local)| {
        quote_spanned! {ty.span()=>
            let #local = <#ty as ::eventsourcery::__private::FromServices>::from_services(&cx)
                .map_err(::eventsourcery::__private::HandlerFailure::Resolve)?;
        }
    });
    let describe = parameters.iter().map(|ty| {
        quote_spanned!(ty.span()=> <#ty as ::eventsourcery::__private::FromServices>::parameter())
    });
    let command_name = quote_spanned! {command.span()=>
        <#command as ::eventsourcery::Command>::NAME
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
                cx: ::eventsourcery::__private::HandlerContext,
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
