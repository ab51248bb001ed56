//! `#[derive(PersonalData)]`: marks a value type as personal data. It gets a plaintext form for
//! the vault, a `Debug` that shows nothing, and serde impls that refuse to compile, so it cannot
//! reach a payload except through a `#[personal]` field.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

use crate::ast::{self, Container, Data, Style};
use crate::attr::{self, Ctxt};
use crate::check;
use crate::fallback::Fallback;

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, Fallback> {
    let cx = Ctxt::new();
    let cont = Container::personal_data(&cx, input);
    check::personal_data(&cx, &cont);
    cx.check()
        .map_err(|errors| Fallback::stub(errors, cont.generics(), stub(&cont)))?;
    let ident = cont.ident;
    let kind = cont.kind();
    let Data::Struct(fields) = &cont.data else {
        unreachable!("an enum or a union is rejected by `check::personal_data`");
    };
    let body = if fields.style == Style::Newtype {
        newtype(ident, fields.all[0].ty)
    } else {
        named(ident, fields)
    };
    let debug = debug(ident);
    let refusals = refusals(ident);
    Ok(quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl ::eventsourcery::__private::PersonalData for #ident {
                const KIND: &'static str = #kind;
                #body
            }

            #debug

            #refusals
        };
    })
}

/// What the derive provides, with no bodies: emitted after an error so that uses of the type
/// add no errors of their own.
fn stub(cont: &Container<attr::PersonalData>) -> TokenStream {
    let ident = cont.ident;
    let kind = cont.kind();
    let refusals = refusals(ident);
    let debug = debug(ident);
    quote! {
        #refusals
        #[automatically_derived]
        impl ::eventsourcery::__private::PersonalData for #ident {
            const KIND: &'static str = #kind;
            fn to_plaintext(&self) -> ::core::result::Result<::eventsourcery::__private::Zeroizing<::std::string::String>, ::eventsourcery::__private::ValueError> {
                ::core::unimplemented!()
            }
            fn from_plaintext(_: &str) -> ::core::result::Result<Self, ::eventsourcery::__private::ValueError> {
                ::core::unimplemented!()
            }
        }
        #debug
    }
}

/// The derive's own `Debug`, which shows no content: in the stub too, so that a type whose
/// derive failed is still debuggable where its uses need it.
fn debug(ident: &Ident) -> TokenStream {
    let type_name = ident.to_string();
    quote! {
        #[automatically_derived]
        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::concat!(#type_name, "(<redacted>)"))
            }
        }
    }
}

/// The plaintext form of a newtype: its inner value's string form.
fn newtype(ident: &Ident, inner: &syn::Type) -> TokenStream {
    let type_name = ident.to_string();
    let parse = quote_spanned! {inner.span()=>
        ::eventsourcery::__private::parse_inner::<#inner>(#type_name, plaintext).map(Self)
    };
    let display = quote_spanned! {inner.span()=>
        ::std::string::ToString::to_string(&self.0)
    };
    quote! {
        fn to_plaintext(&self) -> ::core::result::Result<::eventsourcery::__private::Zeroizing<::std::string::String>, ::eventsourcery::__private::ValueError> {
            ::core::result::Result::Ok(::eventsourcery::__private::Zeroizing::new(#display))
        }
        fn from_plaintext(plaintext: &str) -> ::core::result::Result<Self, ::eventsourcery::__private::ValueError> {
            #parse
        }
    }
}

/// The plaintext form of a struct with named fields (checked: at least one): a JSON object.
fn named(ident: &Ident, fields: &ast::Fields) -> TokenStream {
    let type_name = ident.to_string();
    let names = fields.names();
    let types = fields.types();
    quote! {
        fn to_plaintext(&self) -> ::core::result::Result<::eventsourcery::__private::Zeroizing<::std::string::String>, ::eventsourcery::__private::ValueError> {
            #[derive(::eventsourcery::__private::serde::Serialize)]
            #[serde(crate = "::eventsourcery::__private::serde")]
            struct __Ser<'a> { #(#names: &'a #types,)* }
            ::eventsourcery::__private::serde_json::to_string(&__Ser { #(#names: &self.#names,)* })
                .map(::eventsourcery::__private::Zeroizing::new)
                .map_err(|_| ::eventsourcery::__private::ValueError::new(#type_name, "a part does not serialize"))
        }
        fn from_plaintext(plaintext: &str) -> ::core::result::Result<Self, ::eventsourcery::__private::ValueError> {
            #[derive(::eventsourcery::__private::serde::Deserialize)]
            #[serde(crate = "::eventsourcery::__private::serde")]
            struct __De { #(#names: #types,)* }
            let de: __De = ::eventsourcery::__private::serde_json::from_str(plaintext)
                .map_err(|_| ::eventsourcery::__private::ValueError::new(#type_name, "not the stored form"))?;
            ::core::result::Result::Ok(Self { #(#names: de.#names,)* })
        }
    }
}

/// What keeps the type out of plain payloads (see the refusals in `eventsourcery::__private`).
///
/// A `Serialize` and a `Deserialize` whose bound never holds: every serde path to the type
/// fails on that bound, whose message says to use a `#[personal]` field. Then a probe, spanned
/// on the type's name, that fails if the type is also a `SerializableValue` or has a serde
/// impl of its own (which overlaps the refused one).
fn refusals(ident: &Ident) -> TokenStream {
    // Spanned on the type's name, as if the user had written them: of an impl that a derive
    // wrote, rustc says that its bound is "undesired" and suggests implementing the trait by
    // hand, which is the one thing not to do here.
    let span = ident.span();
    let private = quote_spanned!(span=> ::eventsourcery::__private);
    // `for<'__a>`: rustc rejects a trivially false bound on a concrete type at the impl, but
    // leaves a bound with a binder to its uses.
    let never = quote_spanned! {span=>
        where for<'__a> #private::Plaintext: #private::PersonalDataIsNeverSerialized<#ident>
    };
    quote_spanned! {span=>
        #[automatically_derived]
        #[doc(hidden)]
        impl #private::serde::Serialize for #ident #never {
            fn serialize<__S>(&self, _: __S) -> ::core::result::Result<__S::Ok, __S::Error>
            where
                __S: #private::serde::Serializer,
            {
                ::core::unreachable!()
            }
        }

        #[automatically_derived]
        #[doc(hidden)]
        impl<'de> #private::serde::Deserialize<'de> for #ident #never {
            fn deserialize<__D>(_: __D) -> ::core::result::Result<Self, __D::Error>
            where
                __D: #private::serde::Deserializer<'de>,
            {
                ::core::unreachable!()
            }
        }

        #[allow(dead_code)]
        fn __refuse_serialization() {
            #[allow(unused_imports)]
            use #private::{RefuseDeserialize as _, RefuseNothing as _, RefuseSerialize as _, RefuseValue as _};
            (&&&&#private::Probe::<#ident>::new()).refusal().check();
        }
    }
}
