//! `#[derive(Aggregate)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, LitInt, Path, Type};

use crate::attr::{self, Ctxt, Once};
use crate::case::snake_case;

struct AggregateAttrs {
    id: Option<Type>,
    events: Vec<Path>,
    name: Option<String>,
    snapshot: Option<(u64, u32)>,
    cache: bool,
}

fn parse(cx: &Ctxt, input: &DeriveInput) -> AggregateAttrs {
    let mut id = Once::new("id");
    let mut events = Once::new("events");
    let mut name = Once::new("name");
    let mut snapshot = Once::new("snapshot");
    let mut cache = Once::new("cache");
    let expected = ["id", "events", "name", "snapshot", "cache"];
    // A misspelled key is likely the `id` or `events` that then looks missing: say it once.
    let mut unknown_key = false;
    attr::each_nested(cx, &input.attrs, attr::AGGREGATE, |meta| {
        if meta.path.is_ident("id") {
            let ty: Type = meta.value()?.parse()?;
            id.set(cx, &meta.path, ty);
        } else if meta.path.is_ident("events") {
            let list = attr::path_list(meta)?;
            let mut seen: Vec<&Path> = Vec::new();
            for path in &list {
                if seen.contains(&path) {
                    cx.error(path, "event listed twice in `events(...)`");
                }
                seen.push(path);
            }
            events.set(cx, &meta.path, list.clone());
        } else if meta.path.is_ident("name") {
            let lit = attr::lit_str(meta)?;
            name.set(cx, &meta.path, attr::check_name(cx, &lit));
        } else if meta.path.is_ident("cache") {
            cache.set(cx, &meta.path, true);
        } else if meta.path.is_ident("snapshot") {
            let mut every = None;
            let mut version = 1;
            meta.parse_nested_meta(|inner| {
                if inner.path.is_ident("every") {
                    let lit: LitInt = inner.value()?.parse()?;
                    let n = lit.base10_parse::<u64>()?;
                    if n == 0 {
                        cx.error(&lit, "`every` must be at least 1");
                    }
                    every = Some(n);
                } else if inner.path.is_ident("version") {
                    version = attr::lit_u32(&inner)?.1;
                } else {
                    return Err(attr::unknown(&inner, "snapshot", &["every", "version"]));
                }
                Ok(())
            })?;
            match every {
                Some(every) => snapshot.set(cx, &meta.path, (every, version)),
                None => cx.error(&meta.path, "`snapshot(...)` needs `every = N`"),
            }
        } else {
            unknown_key = true;
            return Err(attr::unknown(meta, attr::AGGREGATE, &expected));
        }
        Ok(())
    });
    let attr = input
        .attrs
        .iter()
        .find(|a| a.path().is_ident(attr::AGGREGATE));
    let id = id.get();
    let events = events.get();
    match attr {
        None => cx.error(
            &input.ident,
            "missing `#[aggregate(id = ..., events(...))]`: name the id type and the events this aggregate applies",
        ),
        Some(_) if unknown_key => {}
        Some(attr) => {
            if id.is_none() {
                cx.error(
                    attr,
                    "missing `id = ...` in `#[aggregate(...)]`: name the aggregate's id type",
                );
            }
            if events.as_ref().is_none_or(Vec::is_empty) {
                cx.error(
                    attr,
                    "missing `events(...)` in `#[aggregate(...)]`: list the events this aggregate applies",
                );
            }
        }
    }
    AggregateAttrs {
        id,
        events: events.unwrap_or_default(),
        name: name.get(),
        snapshot: snapshot.get(),
        cache: cache.get().unwrap_or(false),
    }
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let ident = &input.ident;
    if !matches!(input.data, Data::Struct(_)) {
        cx.error(
            ident,
            "Aggregate can be derived for a struct only: its fields hold the aggregate's state",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error(
            &input.generics,
            "an aggregate cannot be generic: its stream name must name one type",
        );
    }
    let attrs = parse(&cx, input);
    let name = attrs.name.unwrap_or_else(|| snake_case(&ident.to_string()));
    let id = attrs.id;
    // Without an id, the stub names one that is a `SerializableValue`, so it adds no error.
    let stub_id = id.clone().map_or_else(
        || quote!(::eventsourcery::__private::NoId),
        |id| quote!(#id),
    );
    // The stub still makes each listed event raisable, so that `raise` adds no error.
    let mut listed: Vec<&Path> = Vec::new();
    for event in &attrs.events {
        if !listed.contains(&event) {
            listed.push(event);
        }
    }
    let stub_events = listed.iter().map(|event| {
        quote_spanned! {event.span()=>
            #[automatically_derived]
            impl ::eventsourcery::__private::EventOf<#ident> for #event {
                fn apply_to(&self, _: &mut #ident) { ::core::unimplemented!() }
            }
        }
    });
    let stub = quote! {
        #[automatically_derived]
        impl ::eventsourcery::Aggregate for #ident {
            type Id = #stub_id;
            const NAME: &'static str = #name;
            fn handles(_: &str) -> bool { false }
            fn apply_stored(&mut self, _: &str, _: ::eventsourcery::__private::serde_json::Value, _: &mut ::eventsourcery::__private::DecodeContext<'_>)
                -> ::core::result::Result<(), ::eventsourcery::__private::EventError>
            { ::core::unimplemented!() }
        }
        #(#stub_events)*
    };
    if let Err(error) = cx.check() {
        return attr::compile_errors(error, &input.generics, stub);
    }
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
            if <#event as ::eventsourcery::DomainEvent>::handles(name) {
                let event = <#event as ::eventsourcery::DomainEvent>::decode(name, payload, cx)?;
                #apply;
                return ::core::result::Result::Ok(());
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
    quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #(#event_of)*

            #[automatically_derived]
            impl ::eventsourcery::Aggregate for #ident {
                #cache
                type Id = #id;
                const NAME: &'static str = #name;
                #snapshot
                fn handles(name: &str) -> bool {
                    false #(|| <#events as ::eventsourcery::DomainEvent>::handles(name))*
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
            }
        };
    }
}
