//! `#[eventsourcery::listener]`, `#[eventsourcery::process_manager]` and
//! `#[eventsourcery::projection]`: register an `async fn` taking an event as a consumer.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, ReturnType, Type};

use crate::attr::{self, Ctxt, Once};

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Listener,
    ProcessManager,
    Projection,
}

impl Kind {
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::ProcessManager => "process_manager",
            Self::Projection => "projection",
        }
    }

    fn variant(self) -> Ident {
        Ident::new(
            match self {
                Self::Listener => "Listener",
                Self::ProcessManager => "ProcessManager",
                Self::Projection => "Projection",
            },
            Span::call_site(),
        )
    }
}

pub(crate) fn expand(kind: Kind, args: TokenStream, function: &ItemFn) -> TokenStream {
    let cx = Ctxt::new();
    let attr_name = kind.attr();
    let mut consumer = Once::<LitStr>::new("consumer");
    let mut reset = Once::<Ident>::new("reset");
    let expected: &[&str] = match kind {
        Kind::Projection => &["consumer", "reset"],
        _ => &["consumer"],
    };
    // Whether `consumer` was written, even wrongly: then it is not also reported missing.
    let mut named = false;
    let parser = syn::meta::parser(|meta: ParseNestedMeta| {
        let result = (|| {
            if meta.path.is_ident("consumer") {
                named = true;
                let lit = attr::lit_str(&meta)?;
                attr::check_name(&cx, &lit);
                consumer.set(&cx, &meta.path, lit);
            } else if meta.path.is_ident("reset") {
                if !matches!(kind, Kind::Projection) {
                    return Err(meta.error(format!(
                        "`reset` is for projections, which have a read model to clear on a rebuild; a {attr_name} takes only `consumer = \"...\"`"
                    )));
                }
                reset.set(&cx, &meta.path, attr::ident(&meta, "function")?);
            } else {
                return Err(attr::unknown(&meta, attr_name, expected));
            }
            Ok(())
        })();
        attr::recover(&cx, &meta, result)
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(error);
    }
    let consumer = consumer.get();
    let sig = &function.sig;
    if !named {
        // On the attribute, where it goes.
        cx.error_at(
            Span::call_site(),
            format!("missing `consumer = \"...\"`: `#[eventsourcery::{attr_name}(consumer = \"name\")]` names the checkpoint"),
        );
    }
    if sig.asyncness.is_none() {
        cx.error(sig.fn_token, format!("a {attr_name} must be an `async fn`"));
    }
    if !sig.generics.params.is_empty() {
        cx.error(&sig.generics, format!("a {attr_name} cannot be generic"));
    }
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => cx.error(
                receiver,
                format!("a {attr_name} is a free function, not a method"),
            ),
            FnArg::Typed(typed) => types.push(&*typed.ty),
        }
    }
    if sig.inputs.is_empty() {
        cx.error(
            &sig.ident,
            format!("a {attr_name} takes the event it handles as its first parameter"),
        );
    }
    if let Err(error) = cx.check() {
        let error = error.to_compile_error();
        return quote!(#function #error);
    }

    let ident = &sig.ident;
    let event = types[0];
    let mut resolve = Vec::new();
    let mut args = Vec::new();
    for (i, ty) in types[1..].iter().enumerate() {
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
            let #local = <#ty as ::eventsourcery::__private::FromEvent>::from_event(cx)?;
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
    let variant = kind.variant();
    let handler_name = ident.to_string();
    let (reset_fn, reset_field) = match reset.get() {
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
                cx: &'a mut ::eventsourcery::__private::HandleContext<'b>,
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

            ::eventsourcery::__private::inventory::submit! {
                ::eventsourcery::__private::ConsumerRegistration {
                    consumer: #consumer,
                    kind: ::eventsourcery::__private::ConsumerKind::#variant,
                    handler: ::core::concat!(::core::module_path!(), "::", #handler_name),
                    event_names: #names,
                    call: __eventsourcery_call,
                    reset: #reset_field,
                }
            }
        };
    }
}
