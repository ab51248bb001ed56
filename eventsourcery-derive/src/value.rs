//! `#[derive(SerializableValue)]`: a string form, serde through it, and value equality.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, LitStr};

use crate::ast::{self, Container, Data, Style};
use crate::attr::Ctxt;
use crate::check;
use crate::fallback::Fallback;

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, Fallback> {
    let cx = Ctxt::new();
    let cont = Container::value(&cx, input);
    check::value(&cx, &cont);
    cx.check()
        .map_err(|errors| Fallback::stub(errors, cont.generics(), stub(cont.ident)))?;
    let ident = cont.ident;
    let body = match &cont.data {
        Data::Struct(fields) if fields.style == Style::Newtype => newtype(ident, fields.all[0].ty),
        Data::Struct(fields) => named(ident, fields),
        Data::Enum(variants) => unit_enum(ident, variants),
        Data::Union(_) => unreachable!("a union is rejected by `check::value`"),
    };
    Ok(quote! {
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
            impl ::eventsourcery::__private::SerializableValue for #ident {}

        };
    })
}

/// What the derive provides, with no bodies: emitted after an error so that uses of the type
/// as an id or a field add no errors of their own.
fn stub(ident: &Ident) -> TokenStream {
    let common = common_stub(ident);
    quote! {
        #[automatically_derived]
        impl ::core::fmt::Display for #ident {
            fn fmt(&self, _: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result { ::core::unimplemented!() }
        }

        #[automatically_derived]
        impl ::core::str::FromStr for #ident {
            type Err = ::eventsourcery::__private::ValueError;
            fn from_str(_: &str) -> ::core::result::Result<Self, Self::Err> { ::core::unimplemented!() }
        }

        #common

        #[automatically_derived]
        impl ::eventsourcery::__private::SerializableValue for #ident {}
    }
}

/// The impls both derives of a type with a serde form provide (equality, hashing, serde),
/// with no bodies: the shared part of the stubs emitted after an error.
pub(crate) fn common_stub(ident: &Ident) -> TokenStream {
    quote! {
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
    }
}

/// The operations on a part of the value (`PersonalValuePart` in `eventsourcery::__private`),
/// spanned on its type. `Entity` goes through the same parts.
pub(crate) fn part(ty: &syn::Type) -> TokenStream {
    quote_spanned! {ty.span()=>
        (&&::eventsourcery::__private::Probe::<#ty>::new()).value_part()
    }
}

/// Brings the traits behind [`part`] into scope, once for the derive's whole `const _` block.
pub(crate) fn part_traits() -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use ::eventsourcery::__private::{PersonalValuePart as _, PlainValuePart as _};
    }
}

/// The one check that no part is personal data: an error per personal part, on its type.
/// `refuse` is the part's method that fails for personal data, worded for the derive.
pub(crate) fn refuse_personal_parts(types: &[&syn::Type], refuse: &str) -> TokenStream {
    let refusals = types.iter().map(|ty| {
        let part = part(ty);
        // Spanned on the type, as the error is reported on the method's name.
        let refuse = Ident::new(refuse, ty.span());
        quote_spanned!(ty.span()=> #part.#refuse();)
    });
    quote! {
        #[allow(dead_code)]
        fn __refuse_personal_parts() {
            #(#refusals)*
        }
    }
}

/// A serde form of named fields, each through its part: `__Ser<'a>`, borrowing them, and
/// `__De`, owning them. Each field goes through its part's `serialize` and `deserialize`, which
/// have no bounds for a personal part: the refusal is then its one error. `deny_unknown`: whether
/// `__De` rejects fields it does not know.
pub(crate) fn field_serde(fields: &ast::Fields, deny_unknown: bool) -> TokenStream {
    let names = fields.names();
    let types = fields.types();
    // Spanned on the type: a field that has no serde form (a `Personal<T>`) is reported there.
    let serialize_part: Vec<_> = types
        .iter()
        .map(|ty| {
            let part = part(ty);
            quote_spanned!(ty.span()=> #part.serialize(*value, serializer))
        })
        .collect();
    let deserialize_part: Vec<_> = types
        .iter()
        .map(|ty| {
            let part = part(ty);
            quote_spanned!(ty.span()=> #part.deserialize(deserializer))
        })
        .collect();
    let serialize: Vec<_> = names
        .iter()
        .map(|name| format_ident!("__serialize_{}", name.unraw()))
        .collect();
    let deserialize: Vec<_> = names
        .iter()
        .map(|name| format_ident!("__deserialize_{}", name.unraw()))
        .collect();
    let serialize_with: Vec<_> = serialize
        .iter()
        .map(|f| LitStr::new(&f.to_string(), Span::call_site()))
        .collect();
    let deserialize_with: Vec<_> = deserialize
        .iter()
        .map(|f| LitStr::new(&f.to_string(), Span::call_site()))
        .collect();
    let deny = deny_unknown.then(|| quote!(, deny_unknown_fields));
    quote! {
        #(
            fn #serialize<__S>(value: &&#types, serializer: __S) -> ::core::result::Result<__S::Ok, __S::Error>
            where
                __S: ::eventsourcery::__private::serde::Serializer,
            {
                #serialize_part
            }

            fn #deserialize<'de, __D>(deserializer: __D) -> ::core::result::Result<#types, __D::Error>
            where
                __D: ::eventsourcery::__private::serde::Deserializer<'de>,
            {
                #deserialize_part
            }
        )*

        #[derive(::eventsourcery::__private::serde::Serialize)]
        #[serde(crate = "::eventsourcery::__private::serde")]
        struct __Ser<'a> { #(#[serde(serialize_with = #serialize_with)] #names: &'a #types,)* }

        #[derive(::eventsourcery::__private::serde::Deserialize)]
        #[serde(crate = "::eventsourcery::__private::serde" #deny)]
        struct __De { #(#[serde(deserialize_with = #deserialize_with)] #names: #types,)* }
    }
}

fn newtype(ident: &Ident, inner: &syn::Type) -> TokenStream {
    let type_name = ident.to_string();
    let (part, traits) = (part(inner), part_traits());
    let refuse = refuse_personal_parts(&[inner], "refuse");
    quote! {
        #traits
        #refuse

        #[automatically_derived]
        impl ::core::fmt::Display for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #part.fmt(&self.0, f)
            }
        }

        #[automatically_derived]
        impl ::core::str::FromStr for #ident {
            type Err = ::eventsourcery::__private::ValueError;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                #part.parse(#type_name, s).map(Self)
            }
        }

        #[automatically_derived]
        impl ::core::cmp::PartialEq for #ident {
            fn eq(&self, other: &Self) -> bool {
                #part.eq(&self.0, &other.0)
            }
        }

        #[automatically_derived]
        impl ::core::cmp::Eq for #ident {}

        #[automatically_derived]
        impl ::core::hash::Hash for #ident {
            fn hash<H: ::core::hash::Hasher>(&self, state: &mut H) {
                #part.hash(&self.0, state)
            }
        }

        #[automatically_derived]
        impl ::eventsourcery::__private::Newtype for #ident {
            type Inner = #inner;
            fn from_inner(inner: #inner) -> Self { Self(inner) }
            fn as_inner(&self) -> &#inner { &self.0 }
        }
    }
}

/// The fields are checked to be named, at least one.
fn named(ident: &Ident, fields: &ast::Fields) -> TokenStream {
    let type_name = ident.to_string();
    let names = fields.names();
    let types = fields.types();
    let parts: Vec<_> = types.iter().map(|ty| part(ty)).collect();
    let traits = part_traits();
    let refuse = refuse_personal_parts(&types, "refuse");
    let serde = field_serde(fields, true);
    quote! {
        #traits
        #refuse
        #serde

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
            type Err = ::eventsourcery::__private::ValueError;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                let de: __De = ::eventsourcery::__private::serde_json::from_str(s)
                    .map_err(|e| ::eventsourcery::__private::ValueError::new(#type_name, e))?;
                ::core::result::Result::Ok(Self { #(#names: de.#names,)* })
            }
        }

        #[automatically_derived]
        impl ::core::cmp::PartialEq for #ident {
            fn eq(&self, other: &Self) -> bool {
                true #(&& #parts.eq(&self.#names, &other.#names))*
            }
        }

        #[automatically_derived]
        impl ::core::cmp::Eq for #ident {}

        #[automatically_derived]
        impl ::core::hash::Hash for #ident {
            fn hash<H: ::core::hash::Hasher>(&self, state: &mut H) {
                #(#parts.hash(&self.#names, state);)*
            }
        }
    }
}

/// The variants are checked to be units, at least one.
fn unit_enum(ident: &Ident, variants: &[ast::Variant]) -> TokenStream {
    let variants: Vec<_> = variants.iter().map(|variant| variant.ident).collect();
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
            type Err = ::eventsourcery::__private::ValueError;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                match s {
                    #(#strings => ::core::result::Result::Ok(Self::#variants),)*
                    _ => ::core::result::Result::Err(::eventsourcery::__private::ValueError::new(
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
