//! `#[derive(DomainEvent)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Ident};

use crate::ast::{self, Container, Data};
use crate::attr::{self, Ctxt};
use crate::fallback::Fallback;
use crate::{check, fields};

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, Fallback> {
    let cx = Ctxt::new();
    let cont = Container::event(&cx, input);
    check::event(&cx, &cont);
    cx.check()
        .map_err(|errors| Fallback::stub(errors, cont.generics(), stub(cont.ident)))?;
    let body = match &cont.data {
        Data::Struct(fields) => expand_struct(&cont, fields),
        Data::Enum(variants) => expand_enum(cont.ident, variants),
        Data::Union(_) => unreachable!("a union is rejected by `check::event`"),
    };
    Ok(quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = { #body };
    })
}

/// What the derive provides, with no bodies: emitted after an error so that uses of the type
/// add no errors of their own.
fn stub(ident: &Ident) -> TokenStream {
    quote! {
        #[automatically_derived]
        impl ::eventsourcery::__private::DomainEvent for #ident {
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
    }
}

fn expand_struct(cont: &Container<attr::Event>, fields: &ast::Fields) -> TokenStream {
    let ident = cont.ident;
    let name = cont.name();
    let version = cont.version();
    let name_expr = quote!(#name);
    let codec = fields::codec(fields, cont.attrs.subject.as_ref(), &name_expr, attr::EVENT);
    let (encode, decode, lookups) = (codec.encode, codec.decode, codec.lookups);
    let decode_text = fields::text_decoder(fields, ident).map(|body| {
        quote! {
            fn decode_text(_name: &str, payload: &str) -> ::core::option::Option<Self> {
                #body
            }
        }
    });
    let type_name = ident.to_string();
    quote! {
        #[automatically_derived]
        impl ::eventsourcery::__private::DomainEvent for #ident {
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
            #decode_text
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

/// Each variant is checked to wrap one event struct.
fn expand_enum(ident: &Ident, variants: &[ast::Variant]) -> TokenStream {
    let idents: Vec<_> = variants.iter().map(|variant| variant.ident).collect();
    let types: Vec<_> = variants
        .iter()
        .flat_map(|variant| variant.fields.types())
        .collect();
    quote! {
        #[automatically_derived]
        impl ::eventsourcery::__private::DomainEvent for #ident {
            fn event_name(&self) -> &'static str {
                match self { #(Self::#idents(e) => ::eventsourcery::__private::DomainEvent::event_name(e),)* }
            }
            fn event_version(&self) -> u32 {
                match self { #(Self::#idents(e) => ::eventsourcery::__private::DomainEvent::event_version(e),)* }
            }
            fn handles(name: &str) -> bool {
                false #(|| <#types as ::eventsourcery::__private::DomainEvent>::handles(name))*
            }
            fn event_names() -> ::std::vec::Vec<&'static str> {
                let mut names = ::std::vec::Vec::new();
                #(names.extend(<#types as ::eventsourcery::__private::DomainEvent>::event_names());)*
                names
            }
            fn encode(&self, cx: &mut ::eventsourcery::__private::EncodeContext)
                -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
            {
                match self { #(Self::#idents(e) => ::eventsourcery::__private::DomainEvent::encode(e, cx),)* }
            }
            fn decode(
                name: &str,
                payload: ::eventsourcery::__private::serde_json::Value,
                cx: &mut ::eventsourcery::__private::DecodeContext<'_>,
            ) -> ::core::result::Result<Self, ::eventsourcery::__private::EventError> {
                #(
                    if <#types as ::eventsourcery::__private::DomainEvent>::handles(name) {
                        return <#types as ::eventsourcery::__private::DomainEvent>::decode(name, payload, cx).map(Self::#idents);
                    }
                )*
                ::core::result::Result::Err(::eventsourcery::__private::EventError::NotHandled {
                    type_name: ::core::any::type_name::<Self>(),
                    name: ::std::borrow::ToOwned::to_owned(name),
                })
            }
            fn decode_text(name: &str, payload: &str) -> ::core::option::Option<Self> {
                #(
                    if <#types as ::eventsourcery::__private::DomainEvent>::handles(name) {
                        return <#types as ::eventsourcery::__private::DomainEvent>::decode_text(name, payload).map(Self::#idents);
                    }
                )*
                ::core::option::Option::None
            }
        }
    }
}
