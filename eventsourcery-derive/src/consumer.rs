//! `#[eventsourcery::listener]`, `#[eventsourcery::process_manager]` and
//! `#[eventsourcery::projection]`: register an `async fn` taking an event as a consumer.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ReturnType, Type};

use crate::ast::{self, Function};
use crate::attr::{self, ConsumerKind, Ctxt};
use crate::check;
use crate::fallback::Fallback;

pub(crate) fn expand(
    kind: ConsumerKind,
    args: TokenStream,
    item: TokenStream,
) -> Result<TokenStream, Fallback> {
    let usage = format!(
        "`#[eventsourcery::{}]` goes on an `async fn` whose first parameter is the event it handles",
        kind.attr()
    );
    let function = ast::item_fn(item, &usage)?;
    let cx = Ctxt::new();
    let consumer = Function::consumer(&cx, kind, args, &function);
    check::consumer(&cx, &consumer);
    // Keep the user's function so editors and other errors still work.
    cx.check()
        .map_err(|errors| Fallback::item(errors, &function))?;
    Ok(expand_consumer(&consumer))
}

/// The variant of the runtime's `ConsumerKind`.
fn variant(kind: ConsumerKind) -> Ident {
    Ident::new(
        match kind {
            ConsumerKind::Listener => "Listener",
            ConsumerKind::ProcessManager => "ProcessManager",
            ConsumerKind::Projection => "Projection",
        },
        Span::call_site(),
    )
}

/// The function is checked: an `async fn` taking its event first, under a consumer name.
fn expand_consumer(consumer: &Function<attr::Consumer>) -> TokenStream {
    let function = consumer.item;
    let sig = &function.sig;
    let types = consumer.types();
    let Some((event, parameters)) = types.split_first() else {
        unreachable!("a consumer without parameters is rejected by `check::consumer`");
    };
    let Some(name) = &consumer.args.consumer else {
        unreachable!("a consumer without a name is rejected by `check::consumer`");
    };
    let ident = &sig.ident;
    let mut resolve = Vec::new();
    let mut describe = Vec::new();
    let mut args = Vec::new();
    for (i, ty) in parameters.iter().enumerate() {
        if let Type::Reference(reference) = ty
            && reference.mutability.is_some()
        {
            // Through a trait rather than `&mut cx.tx` as is, so that another `&mut` type is
            // reported as a parameter we cannot give, not as mismatched types.
            let inner = &reference.elem;
            args.push(quote_spanned! {inner.span()=>
                <#inner as ::eventsourcery::__private::TxParam<'_>>::from_tx(&mut cx.tx)
            });
            continue;
        }
        let local = format_ident!("__p{}", i);
        resolve.push(quote_spanned! {ty.span()=>
            let #local = <#ty as ::eventsourcery::__private::ConsumerParameter>::resolve(cx)?;
        });
        describe.push(quote_spanned! {ty.span()=>
            <#ty as ::eventsourcery::__private::ConsumerParameter>::describe()
        });
        args.push(quote!(#local));
    }
    let output_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    // The value is bound first so that a bad return type is reported on the return type.
    let output =
        quote_spanned!(output_span=> ::eventsourcery::__private::consumer_output(__output));
    // Every use of the event type is a `<E as DomainEvent>` path spanned on it, and nothing else
    // requires it: an event type that is not a `DomainEvent` is then one error, on the type.
    let event_trait =
        quote_spanned!(event.span()=> <#event as ::eventsourcery::__private::DomainEvent>);
    let decode = quote_spanned! {event.span()=>
        ::eventsourcery::__private::consumer_event::<#event>(cx, #event_trait::handles, #event_trait::decode)?
    };
    let names = quote_spanned!(event.span()=> #event_trait::event_names);
    let variant = variant(consumer.args.kind);
    let handler_name = ident.to_string();
    let partitions = consumer.args.partitions.unwrap_or(1);
    let (reset_fn, reset_field) = match &consumer.args.reset {
        Some(reset) => (
            quote! {
                fn __eventsourcery_reset<'a, 'b>(
                    tx: &'a mut ::eventsourcery::__private::ProjectionTx<'b>,
                ) -> ::eventsourcery::__private::ConsumerFuture<'a> {
                    ::std::boxed::Box::pin(async move {
                        ::eventsourcery::__private::consumer_output(#reset(tx).await)
                    })
                }
            },
            quote!(::core::option::Option::Some(__eventsourcery_reset)),
        ),
        None => (TokenStream::new(), quote!(::core::option::Option::None)),
    };
    quote! {
        #function

        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            fn __eventsourcery_call<'a, 'b>(
                cx: &'a mut ::eventsourcery::__private::EventContext<'b>,
            ) -> ::eventsourcery::__private::ConsumerFuture<'a> {
                ::std::boxed::Box::pin(async move {
                    let ::core::option::Option::Some(event) = #decode else {
                        return ::core::result::Result::Ok(());
                    };
                    #(#resolve)*
                    let __output = #ident(event #(, #args)*).await;
                    #output
                })
            }

            #reset_fn

            fn __eventsourcery_parameters() -> ::std::vec::Vec<::eventsourcery::__private::Parameter> {
                ::std::vec![#(#describe),*]
            }

            ::eventsourcery::__private::inventory::submit! {
                ::eventsourcery::__private::ConsumerRegistration {
                    consumer: #name,
                    kind: ::eventsourcery::__private::ConsumerKind::#variant,
                    handler: ::core::concat!(::core::module_path!(), "::", #handler_name),
                    event_names: #names,
                    call: __eventsourcery_call,
                    reset: #reset_field,
                    parameters: __eventsourcery_parameters,
                    partitions: #partitions,
                }
            }
        };
    }
}
