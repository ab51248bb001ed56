//! `#[derive(PersonalData)]`: marks a value type as personal data. It gets a plaintext form for
//! the vault, a `Debug` that shows nothing, and serde impls that refuse to compile, so it cannot
//! reach a payload except through a `#[personal]` field.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{self, Ctxt, Once};
use crate::case::snake_case;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let ident = &input.ident;
    let mut name = Once::new("name");
    attr::each_nested(&cx, &input.attrs, attr::PERSONAL_DATA, |meta| {
        if meta.path.is_ident("name") {
            let lit = attr::lit_str(meta)?;
            name.set(&cx, &meta.path, attr::check_name(&cx, &lit));
            Ok(())
        } else {
            Err(attr::unknown(meta, attr::PERSONAL_DATA, &["name"]))
        }
    });
    let kind = name.get().unwrap_or_else(|| snake_case(&ident.to_string()));
    if !input.generics.params.is_empty() {
        cx.error(&input.generics, "a personal data type cannot be generic");
    }
    let type_name = ident.to_string();
    let body = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Unnamed(f) if f.unnamed.len() == 1 => {
                let inner = &f.unnamed[0].ty;
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
            Fields::Named(f) if !f.named.is_empty() => {
                let names: Vec<_> = f.named.iter().filter_map(|f| f.ident.as_ref()).collect();
                let types: Vec<_> = f.named.iter().map(|f| &f.ty).collect();
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
            fields => {
                cx.error(
                    fields,
                    "PersonalData needs a newtype (`struct Email(String)`) or a struct with named fields",
                );
                TokenStream::new()
            }
        },
        _ => {
            cx.error(
                ident,
                "PersonalData can be derived for a struct only: a newtype (`struct Email(String)`) or a struct with named fields",
            );
            TokenStream::new()
        }
    };
    // The derive's own `Debug`, which shows no content: in the stub too, so that a type whose
    // derive failed is still debuggable where its uses need it.
    let debug = quote! {
        #[automatically_derived]
        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::concat!(#type_name, "(<redacted>)"))
            }
        }
    };
    let refusals = refusals(ident);
    let stub = quote! {
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
    };
    if let Err(error) = cx.check() {
        return attr::compile_errors(error, &input.generics, stub);
    }
    quote! {
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
    }
}

/// What keeps the type out of plain payloads (see the refusals in `eventsourcery::__private`).
///
/// A `Serialize` and a `Deserialize` whose bound never holds: every serde path to the type
/// fails on that bound, whose message says to use a `#[personal]` field. Then a probe, spanned
/// on the type's name, that fails if the type is also a `SerializableValue` or has a serde
/// impl of its own (which overlaps the refused one).
fn refusals(ident: &syn::Ident) -> TokenStream {
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
