//! `#[derive(Aggregate)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Path};

use crate::ast::Container;
use crate::attr::{self, Ctxt};
use crate::check;
use crate::fallback::Fallback;

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, Fallback> {
    let cx = Ctxt::new();
    let cont = Container::aggregate(&cx, input);
    check::aggregate(&cx, &cont);
    cx.check()
        .map_err(|errors| Fallback::stub(errors, cont.generics(), stub(&cont)))?;
    let ident = cont.ident;
    let attrs = &cont.attrs;
    let name = cont.name();
    let Some(id) = &attrs.id else {
        unreachable!("a missing id is rejected by `check::aggregate`");
    };
    let events = &attrs.events;
    // The one place that names `Apply<E>`: a missing impl is one error, spanned on the event in
    // `events(...)`, and the dispatch below and `AggregateRoot::raise` go through it.
    let event_of = events.iter().map(|event| {
        quote_spanned! {event.span()=>
            #[automatically_derived]
            impl ::eventsourcery::__private::EventOf<#ident> for #event {
                fn apply_to(&self, state: &mut #ident) {
                    ::eventsourcery::__private::Apply::<#event>::apply(state, self)
                }
            }
        }
    });
    let dispatch = events.iter().map(|event| {
        let apply = quote_spanned! {event.span()=>
            <#event as ::eventsourcery::__private::EventOf<Self>>::apply_to(&event, self)
        };
        quote! {
            if <#event as ::eventsourcery::__private::DomainEvent>::handles(name) {
                let event = <#event as ::eventsourcery::__private::DomainEvent>::decode(name, payload, cx)?;
                #apply;
                return ::core::result::Result::Ok(());
            }
        }
    });
    let dispatch_text = events.iter().map(|event| {
        let apply = quote_spanned! {event.span()=>
            <#event as ::eventsourcery::__private::EventOf<Self>>::apply_to(&event, self)
        };
        quote! {
            if <#event as ::eventsourcery::__private::DomainEvent>::handles(name) {
                let ::core::option::Option::Some(event) =
                    <#event as ::eventsourcery::__private::DomainEvent>::decode_text(name, payload)
                else {
                    return false;
                };
                #apply;
                return true;
            }
        }
    });
    let snapshot = attrs.snapshot.map(|(every, version)| {
        quote! {
            const SNAPSHOT_EVERY: ::core::option::Option<u64> = ::core::option::Option::Some(#every);
            const SNAPSHOT_VERSION: u32 = #version;
            fn to_snapshot(&self) -> ::core::option::Option<::eventsourcery::__private::serde_json::Value> {
                ::eventsourcery::__private::serde_json::to_value(self).ok()
            }
            fn from_snapshot(state: ::eventsourcery::__private::serde_json::Value) -> ::core::option::Option<Self> {
                ::eventsourcery::__private::serde_json::from_value(state).ok()
            }
        }
    });
    let cache = attrs.cache.then(|| {
        quote! {
            const CACHED: bool = true;
            fn cached_clone(&self) -> ::core::option::Option<Self> {
                ::core::option::Option::Some(::core::clone::Clone::clone(self))
            }
        }
    });
    Ok(quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #(#event_of)*

            #[automatically_derived]
            impl ::eventsourcery::__private::Aggregate for #ident {
                #cache
                type Id = #id;
                const NAME: &'static str = #name;
                #snapshot
                fn handles(name: &str) -> bool {
                    false #(|| <#events as ::eventsourcery::__private::DomainEvent>::handles(name))*
                }
                fn apply_stored(
                    &mut self,
                    name: &str,
                    payload: ::eventsourcery::__private::serde_json::Value,
                    cx: &mut ::eventsourcery::__private::DecodeContext<'_>,
                ) -> ::core::result::Result<(), ::eventsourcery::__private::EventError> {
                    #(#dispatch)*
                    let _ = (payload, cx);
                    ::core::result::Result::Err(::eventsourcery::__private::EventError::NotHandled {
                        type_name: ::core::any::type_name::<Self>(),
                        name: ::std::borrow::ToOwned::to_owned(name),
                    })
                }
                fn apply_stored_text(&mut self, name: &str, payload: &str) -> bool {
                    #(#dispatch_text)*
                    let _ = payload;
                    false
                }
            }
        };
    })
}

/// What the derive provides, with no bodies: emitted after an error so that uses of the type
/// add no errors of their own.
fn stub(cont: &Container<attr::Aggregate>) -> TokenStream {
    let ident = cont.ident;
    let name = cont.name();
    // Without an id, the stub names one that is a `SerializableValue`, so it adds no error.
    let id = cont.attrs.id.as_ref().map_or_else(
        || quote!(::eventsourcery::__private::NoId),
        |id| quote!(#id),
    );
    // The stub still makes each listed event raisable, so that `raise` adds no error.
    let mut listed: Vec<&Path> = Vec::new();
    for event in &cont.attrs.events {
        if !listed.contains(&event) {
            listed.push(event);
        }
    }
    let events = listed.iter().map(|event| {
        quote_spanned! {event.span()=>
            #[automatically_derived]
            impl ::eventsourcery::__private::EventOf<#ident> for #event {
                fn apply_to(&self, _: &mut #ident) { ::core::unimplemented!() }
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl ::eventsourcery::__private::Aggregate for #ident {
            type Id = #id;
            const NAME: &'static str = #name;
            fn handles(_: &str) -> bool { false }
            fn apply_stored(&mut self, _: &str, _: ::eventsourcery::__private::serde_json::Value, _: &mut ::eventsourcery::__private::DecodeContext<'_>)
                -> ::core::result::Result<(), ::eventsourcery::__private::EventError>
            { ::core::unimplemented!() }
        }
        #(#events)*
    }
}
