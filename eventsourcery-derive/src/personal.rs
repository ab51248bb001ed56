//! `#[derive(PersonalData)]`: marks a value type as personal data. It gets a plaintext form for
//! the vault, a `Debug` that shows nothing, and deliberately no serde impls, so it cannot reach
//! a payload except through a `#[personal]` field.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{self, Ctxt, Once};
use crate::case::snake_case;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
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
                    fn to_plaintext(&self) -> ::eventsourcery::__private::Zeroizing<::std::string::String> {
                        ::eventsourcery::__private::Zeroizing::new(#display)
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
                    fn to_plaintext(&self) -> ::eventsourcery::__private::Zeroizing<::std::string::String> {
                        #[derive(::eventsourcery::__private::serde::Serialize)]
                        #[serde(crate = "::eventsourcery::__private::serde")]
                        struct __Ser<'a> { #(#names: &'a #types,)* }
                        ::eventsourcery::__private::Zeroizing::new(
                            ::eventsourcery::__private::serde_json::to_string(&__Ser { #(#names: &self.#names,)* })
                                .unwrap_or_default(),
                        )
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
    let stub = quote! {
        #[automatically_derived]
        impl ::eventsourcery::__private::PersonalData for #ident {
            const KIND: &'static str = #kind;
            fn to_plaintext(&self) -> ::eventsourcery::__private::Zeroizing<::std::string::String> {
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
        };
    }
}
