//! Encoding and decoding of named fields, shared by `DomainEvent` and `Command`: ordinary
//! fields go into the JSON payload, `#[personal]` fields through the personal data context.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::{ast, attr};

/// The generated bodies of `encode` and `decode` for a struct's fields.
pub(crate) struct Codec {
    pub(crate) encode: TokenStream,
    pub(crate) decode: TokenStream,
    /// The registrations of the fields marked `#[personal(lookup)]`.
    pub(crate) lookups: TokenStream,
}

/// The body of `decode_text` for an event struct without personal fields: a visitor of the
/// payload's keys that reads each field straight from the text, through the field's
/// `EventField` impl (spanned on its type, as `decode` is, so a field that cannot be stored is
/// one error). `None` for a struct with a personal field, which always decodes through `Value`.
pub(crate) fn text_decoder(fields: &ast::Fields, ident: &Ident) -> Option<TokenStream> {
    if fields.all.iter().any(|field| field.personal.is_some()) {
        return None;
    }
    let mut slots = Vec::new();
    let mut arms = Vec::new();
    let mut init = Vec::new();
    for field in &fields.all {
        let name = field.ident?;
        let key = name.unraw().to_string();
        let local = format_ident!("__field_{}", name.unraw());
        let ty = field.ty;
        slots.push(quote! {
            let mut #local: ::core::option::Option<#ty> = ::core::option::Option::None;
        });
        arms.push(quote_spanned! {ty.span()=>
            #key => ::eventsourcery::__private::put(
                &mut #local,
                <#ty as ::eventsourcery::__private::EventField>::next_value(&mut __map)?,
            )?,
        });
        let missing =
            quote_spanned!(ty.span()=> <#ty as ::eventsourcery::__private::EventField>::missing);
        init.push(quote!(#name: ::eventsourcery::__private::take(#local, #missing)?));
    }
    Some(quote! {
        struct __Visitor;
        impl<'de> ::eventsourcery::__private::serde::de::Visitor<'de> for __Visitor {
            type Value = #ident;
            fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str("an event payload")
            }
            fn visit_map<__A: ::eventsourcery::__private::serde::de::MapAccess<'de>>(
                self,
                mut __map: __A,
            ) -> ::core::result::Result<#ident, __A::Error> {
                #(#slots)*
                while let ::core::option::Option::Some(__key) =
                    __map.next_key::<::eventsourcery::__private::FieldKey<'de>>()?
                {
                    match __key.as_str() {
                        #(#arms)*
                        _ => {
                            __map.next_value::<::eventsourcery::__private::serde::de::IgnoredAny>()?;
                        }
                    }
                }
                ::core::result::Result::Ok(#ident { #(#init),* })
            }
        }
        ::eventsourcery::__private::decode_text(payload, __Visitor)
    })
}

/// `name` is an expression of type `&str` naming the event or command in errors; `attr_name`
/// is the type's own attribute. The fields are checked (`check::payload`): named, and each
/// personal one with a subject among them.
pub(crate) fn codec(
    fields: &ast::Fields,
    default_subject: Option<&Ident>,
    name: &TokenStream,
    attr_name: &str,
) -> Codec {
    let mut encode = Vec::new();
    let mut plain = Vec::new();
    let mut personal = Vec::new();
    let mut init = Vec::new();
    let mut lookups = Vec::new();
    for field in &fields.all {
        let Some(ident) = field.ident else { continue };
        let key = ident.unraw().to_string();
        let local = format_ident!("__field_{}", ident.unraw());
        let ty = field.ty;
        init.push(quote!(#ident: #local));
        match &field.personal {
            None => {
                encode.push(quote_spanned! {ty.span()=>
                    __map.insert(
                        ::core::convert::From::from(#key),
                        <#ty as ::eventsourcery::__private::EventField>::encode_field(&self.#ident, #name, #key)?,
                    );
                });
                plain.push(quote_spanned! {ty.span()=>
                    let #local = <#ty as ::eventsourcery::__private::EventField>::decode_field(#name, &mut __map, #key)?;
                });
            }
            Some(personal_attr) => {
                let Some(subject) = field.subject(default_subject) else {
                    unreachable!(
                        "a personal field without a subject is rejected by `check::payload`"
                    );
                };
                let subject_local =
                    format_ident!("__field_{}", subject.unraw(), span = subject.span());
                let lookup = personal_attr.lookup;
                // The codec's bound checks the field's type, and `subject`'s the subject's: each
                // is spanned on what it checks, and called alike in `encode` and `decode`, so that
                // each mistake is one error, on the user's token.
                let codec = if attr_name == attr::EVENT {
                    quote_spanned!(ty.span()=> ::eventsourcery::__private::event_personal::<#ty>())
                } else {
                    quote_spanned!(ty.span()=> ::eventsourcery::__private::command_personal::<#ty>())
                };
                let encode_subject = quote_spanned!(subject.span()=> ::eventsourcery::__private::subject(&self.#subject));
                let decode_subject = quote_spanned!(subject.span()=> ::eventsourcery::__private::subject(&#subject_local));
                encode.push(quote! {
                    __map.insert(
                        ::core::convert::From::from(#key),
                        #codec.encode(cx, #name, #key, #encode_subject, &self.#ident, #lookup)?,
                    );
                });
                personal.push(quote! {
                    let #local = #codec.decode(cx, #name, #key, #decode_subject, &mut __map)?;
                });
                if attr_name == attr::EVENT {
                    lookups.push(quote! {
                        ::eventsourcery::__private::inventory::submit! {
                            #codec.field(::core::concat!(#name, ".", #key))
                        }
                    });
                }
                if lookup {
                    lookups.push(quote! {
                        ::eventsourcery::__private::inventory::submit! {
                            #codec.lookup(::core::concat!(#name, ".", #key))
                        }
                    });
                }
            }
        }
    }

    Codec {
        encode: quote! {
            let mut __map = ::eventsourcery::__private::serde_json::Map::new();
            #(#encode)*
            ::core::result::Result::Ok(::eventsourcery::__private::serde_json::Value::Object(__map))
        },
        decode: quote! {
            #[allow(unused_mut)]
            let mut __map = ::eventsourcery::__private::object(#name, payload)?;
            #(#plain)*
            #(#personal)*
            ::core::result::Result::Ok(Self { #(#init),* })
        },
        lookups: quote!(#(#lookups)*),
    }
}
