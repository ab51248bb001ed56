//! `#[derive(DomainEvent)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{self, Ctxt};
use crate::case::snake_case;
use crate::fields;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        cx.error(
            &input.generics,
            "a domain event cannot be generic: its stored name must name one type",
        );
    }
    let body = match &input.data {
        Data::Struct(data) => expand_struct(&cx, input, &data.fields),
        Data::Enum(data) => {
            attr::reject(
                &cx,
                &input.attrs,
                attr::EVENT,
                "`#[event(...)]` goes on each event struct; an enum of events takes its names from its variants' types",
            );
            let variants = data.variants.iter().filter_map(|variant| match &variant.fields {
                Fields::Unnamed(f) if f.unnamed.len() == 1 => Some((&variant.ident, &f.unnamed[0].ty)),
                _ => {
                    cx.error(
                        variant,
                        "each variant of an event enum wraps one event struct: `Registered(CandidateRegistered)`",
                    );
                    None
                }
            });
            expand_enum(ident, variants.collect())
        }
        Data::Union(data) => {
            cx.error(
                data.union_token,
                "DomainEvent can be derived for a struct or an enum of event structs, not a union",
            );
            TokenStream::new()
        }
    };
    let stub = quote! {
        #[automatically_derived]
        impl ::eventsourcery::DomainEvent for #ident {
            fn event_name(&self) -> &'static str { ::core::unimplemented!() }
            fn event_version(&self) -> u32 { ::core::unimplemented!() }
            fn handles(_: &str) -> bool { false }
            fn event_names() -> ::std::vec::Vec<&'static str> { ::std::vec::Vec::new() }
            fn encode(&self, _: &mut ::eventsourcery::__private::EncodeContext)
                -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
            { ::core::unimplemented!() }
            fn decode(_: &str, _: ::eventsourcery::__private::serde_json::Value, _: &mut ::eventsourcery::__private::DecodeContext<'_>)
                -> ::core::result::Result<Self, ::eventsourcery::__private::EventError>
            { ::core::unimplemented!() }
        }
    };
    match cx.check() {
        Ok(()) => quote! {
            #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
            const _: () = { #body };
        },
        Err(error) => attr::compile_errors(error, &input.generics, stub),
    }
}

fn expand_struct(cx: &Ctxt, input: &DeriveInput, fields: &Fields) -> TokenStream {
    let ident = &input.ident;
    let attrs = attr::event_attrs(cx, &input.attrs);
    let name = attrs.name.unwrap_or_else(|| snake_case(&ident.to_string()));
    let version = attrs.version.unwrap_or(1);
    let name_expr = quote!(#name);
    let codec = fields::codec(cx, fields, attrs.subject.as_ref(), &name_expr, attr::EVENT);
    let (encode, decode, lookups) = (codec.encode, codec.decode, codec.lookups);
    let type_name = ident.to_string();
    quote! {
        #[automatically_derived]
        impl ::eventsourcery::DomainEvent for #ident {
            fn event_name(&self) -> &'static str { #name }
            fn event_version(&self) -> u32 { #version }
            fn handles(name: &str) -> bool { name == #name }
            fn event_names() -> ::std::vec::Vec<&'static str> { ::std::vec![#name] }
            fn encode(&self, cx: &mut ::eventsourcery::__private::EncodeContext)
                -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
            {
                let _ = &cx;
                #encode
            }
            fn decode(
                _name: &str,
                payload: ::eventsourcery::__private::serde_json::Value,
                cx: &mut ::eventsourcery::__private::DecodeContext<'_>,
            ) -> ::core::result::Result<Self, ::eventsourcery::__private::EventError> {
                let _ = &cx;
                #decode
            }
        }

        ::eventsourcery::__private::inventory::submit! {
            ::eventsourcery::__private::EventRegistration {
                name: #name,
                version: #version,
                type_name: ::core::concat!(::core::module_path!(), "::", #type_name),
            }
        }

        #lookups
    }
}

fn expand_enum(ident: &syn::Ident, variants: Vec<(&syn::Ident, &syn::Type)>) -> TokenStream {
    let idents: Vec<_> = variants.iter().map(|(v, _)| *v).collect();
    let types: Vec<_> = variants.iter().map(|(_, t)| *t).collect();
    quote! {
        #[automatically_derived]
        impl ::eventsourcery::DomainEvent for #ident {
            fn event_name(&self) -> &'static str {
                match self { #(Self::#idents(e) => ::eventsourcery::DomainEvent::event_name(e),)* }
            }
            fn event_version(&self) -> u32 {
                match self { #(Self::#idents(e) => ::eventsourcery::DomainEvent::event_version(e),)* }
            }
            fn handles(name: &str) -> bool {
                false #(|| <#types as ::eventsourcery::DomainEvent>::handles(name))*
            }
            fn event_names() -> ::std::vec::Vec<&'static str> {
                let mut names = ::std::vec::Vec::new();
                #(names.extend(<#types as ::eventsourcery::DomainEvent>::event_names());)*
                names
            }
            fn encode(&self, cx: &mut ::eventsourcery::__private::EncodeContext)
                -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
            {
                match self { #(Self::#idents(e) => ::eventsourcery::DomainEvent::encode(e, cx),)* }
            }
            fn decode(
                name: &str,
                payload: ::eventsourcery::__private::serde_json::Value,
                cx: &mut ::eventsourcery::__private::DecodeContext<'_>,
            ) -> ::core::result::Result<Self, ::eventsourcery::__private::EventError> {
                #(
                    if <#types as ::eventsourcery::DomainEvent>::handles(name) {
                        return <#types as ::eventsourcery::DomainEvent>::decode(name, payload, cx).map(Self::#idents);
                    }
                )*
                ::core::result::Result::Err(::eventsourcery::__private::EventError::NotHandled {
                    type_name: ::core::any::type_name::<Self>(),
                    name: ::std::borrow::ToOwned::to_owned(name),
                })
            }
        }
    }
}
