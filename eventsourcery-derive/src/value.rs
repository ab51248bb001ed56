//! `#[derive(SerializableValue)]`: a string form, serde through it, and value equality.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{self, Ctxt};

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let ident = &input.ident;
    attr::each_nested(&cx, &input.attrs, attr::VALUE, |meta| {
        Err(meta.error("`#[value(...)]` takes no options"))
    });
    if !input.generics.params.is_empty() {
        cx.error(&input.generics, "a serializable value cannot be generic");
    }
    let body = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Unnamed(f) if f.unnamed.len() == 1 => newtype(input, &f.unnamed[0].ty),
            Fields::Named(f) if !f.named.is_empty() => named(input, f),
            fields => {
                let message = "SerializableValue needs a newtype (`struct VoucherId(Uuid)`) or a struct with named fields";
                match fields {
                    // A unit struct has no field tokens to point at.
                    Fields::Unit => cx.error(ident, message),
                    _ => cx.error(fields, message),
                }
                TokenStream::new()
            }
        },
        Data::Enum(data) => {
            let mut variants = Vec::new();
            for variant in &data.variants {
                if matches!(variant.fields, Fields::Unit) {
                    variants.push(&variant.ident);
                } else {
                    cx.error(
                        variant,
                        "a value enum has unit variants only; its string form is the variant name",
                    );
                }
            }
            if data.variants.is_empty() {
                cx.error(ident, "a value enum needs at least one variant");
            }
            unit_enum(input, &variants)
        }
        Data::Union(data) => {
            cx.error(
                data.union_token,
                "SerializableValue cannot be derived for a union",
            );
            TokenStream::new()
        }
    };
    if let Err(error) = cx.check() {
        return attr::compile_errors(error, &input.generics, stub(ident));
    }
    quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #body

            #[automatically_derived]
            impl ::eventsourcery::__private::serde::Serialize for #ident {
                fn serialize<S>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error>
                where
                    S: ::eventsourcery::__private::serde::Serializer,
                {
                    serializer.collect_str(self)
                }
            }

            #[automatically_derived]
            impl<'de> ::eventsourcery::__private::serde::Deserialize<'de> for #ident {
                fn deserialize<D>(deserializer: D) -> ::core::result::Result<Self, D::Error>
                where
                    D: ::eventsourcery::__private::serde::Deserializer<'de>,
                {
                    ::eventsourcery::__private::deserialize_from_str(deserializer)
                }
            }

            #[automatically_derived]
            impl ::eventsourcery::SerializableValue for #ident {}

        };
    }
}

/// What the derive provides, with no bodies: emitted after an error so that uses of the type
/// as an id or a field add no errors of their own.
fn stub(ident: &syn::Ident) -> TokenStream {
    quote! {
        #[automatically_derived]
        impl ::core::fmt::Display for #ident {
            fn fmt(&self, _: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result { ::core::unimplemented!() }
        }

        #[automatically_derived]
        impl ::core::str::FromStr for #ident {
            type Err = ::eventsourcery::ValueError;
            fn from_str(_: &str) -> ::core::result::Result<Self, Self::Err> { ::core::unimplemented!() }
        }

        #[automatically_derived]
        impl ::core::cmp::PartialEq for #ident {
            fn eq(&self, _: &Self) -> bool { ::core::unimplemented!() }
        }

        #[automatically_derived]
        impl ::core::cmp::Eq for #ident {}

        #[automatically_derived]
        impl ::core::hash::Hash for #ident {
            fn hash<H: ::core::hash::Hasher>(&self, _: &mut H) { ::core::unimplemented!() }
        }

        #[automatically_derived]
        impl ::eventsourcery::__private::serde::Serialize for #ident {
            fn serialize<S>(&self, _: S) -> ::core::result::Result<S::Ok, S::Error>
            where
                S: ::eventsourcery::__private::serde::Serializer,
            {
                ::core::unimplemented!()
            }
        }

        #[automatically_derived]
        impl<'de> ::eventsourcery::__private::serde::Deserialize<'de> for #ident {
            fn deserialize<D>(_: D) -> ::core::result::Result<Self, D::Error>
            where
                D: ::eventsourcery::__private::serde::Deserializer<'de>,
            {
                ::core::unimplemented!()
            }
        }

        #[automatically_derived]
        impl ::eventsourcery::SerializableValue for #ident {}
    }
}

fn newtype(input: &DeriveInput, inner: &syn::Type) -> TokenStream {
    let ident = &input.ident;
    let type_name = ident.to_string();
    let display = quote_spanned!(inner.span()=> ::core::fmt::Display::fmt(&self.0, f));
    let parse = quote_spanned!(inner.span()=> ::eventsourcery::__private::parse_inner::<#inner>(#type_name, s));
    quote! {
        #[automatically_derived]
        impl ::core::fmt::Display for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result { #display }
        }

        #[automatically_derived]
        impl ::core::str::FromStr for #ident {
            type Err = ::eventsourcery::ValueError;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> { #parse.map(Self) }
        }

        #[automatically_derived]
        impl ::core::cmp::PartialEq for #ident {
            fn eq(&self, other: &Self) -> bool { self.0 == other.0 }
        }

        #[automatically_derived]
        impl ::core::cmp::Eq for #ident {}

        #[automatically_derived]
        impl ::core::hash::Hash for #ident {
            fn hash<H: ::core::hash::Hasher>(&self, state: &mut H) { ::core::hash::Hash::hash(&self.0, state) }
        }

        #[automatically_derived]
        impl ::eventsourcery::__private::Newtype for #ident {
            type Inner = #inner;
            fn from_inner(inner: #inner) -> Self { Self(inner) }
            fn as_inner(&self) -> &#inner { &self.0 }
        }
    }
}

fn named(input: &DeriveInput, fields: &syn::FieldsNamed) -> TokenStream {
    let ident = &input.ident;
    let type_name = ident.to_string();
    let names: Vec<_> = fields
        .named
        .iter()
        .filter_map(|f| f.ident.as_ref())
        .collect();
    let types: Vec<_> = fields.named.iter().map(|f| &f.ty).collect();
    quote! {
        #[derive(::eventsourcery::__private::serde::Serialize)]
        #[serde(crate = "::eventsourcery::__private::serde")]
        struct __Ser<'a> { #(#names: &'a #types,)* }

        #[derive(::eventsourcery::__private::serde::Deserialize)]
        #[serde(crate = "::eventsourcery::__private::serde", deny_unknown_fields)]
        struct __De { #(#names: #types,)* }

        #[automatically_derived]
        impl ::core::fmt::Display for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                let json = ::eventsourcery::__private::serde_json::to_string(&__Ser { #(#names: &self.#names,)* })
                    .map_err(|_| ::core::fmt::Error)?;
                f.write_str(&json)
            }
        }

        #[automatically_derived]
        impl ::core::str::FromStr for #ident {
            type Err = ::eventsourcery::ValueError;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                let de: __De = ::eventsourcery::__private::serde_json::from_str(s)
                    .map_err(|e| ::eventsourcery::ValueError::new(#type_name, e))?;
                ::core::result::Result::Ok(Self { #(#names: de.#names,)* })
            }
        }

        #[automatically_derived]
        impl ::core::cmp::PartialEq for #ident {
            fn eq(&self, other: &Self) -> bool { true #(&& self.#names == other.#names)* }
        }

        #[automatically_derived]
        impl ::core::cmp::Eq for #ident {}

        #[automatically_derived]
        impl ::core::hash::Hash for #ident {
            fn hash<H: ::core::hash::Hasher>(&self, state: &mut H) { #(::core::hash::Hash::hash(&self.#names, state);)* }
        }
    }
}

fn unit_enum(input: &DeriveInput, variants: &[&syn::Ident]) -> TokenStream {
    let ident = &input.ident;
    let type_name = ident.to_string();
    let strings: Vec<String> = variants.iter().map(|v| v.to_string()).collect();
    let expected = strings.join("`, `");
    quote! {
        #[automatically_derived]
        impl ::core::fmt::Display for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(match self { #(Self::#variants => #strings,)* })
            }
        }

        #[automatically_derived]
        impl ::core::str::FromStr for #ident {
            type Err = ::eventsourcery::ValueError;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                match s {
                    #(#strings => ::core::result::Result::Ok(Self::#variants),)*
                    _ => ::core::result::Result::Err(::eventsourcery::ValueError::new(
                        #type_name,
                        ::core::concat!("expected one of `", #expected, "`"),
                    )),
                }
            }
        }

        #[automatically_derived]
        impl ::core::cmp::PartialEq for #ident {
            fn eq(&self, other: &Self) -> bool {
                ::core::mem::discriminant(self) == ::core::mem::discriminant(other)
            }
        }

        #[automatically_derived]
        impl ::core::cmp::Eq for #ident {}

        #[automatically_derived]
        impl ::core::hash::Hash for #ident {
            fn hash<H: ::core::hash::Hasher>(&self, state: &mut H) {
                ::core::hash::Hash::hash(&::core::mem::discriminant(self), state)
            }
        }
    }
}
