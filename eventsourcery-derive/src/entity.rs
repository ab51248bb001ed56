//! `#[derive(Entity)]`: identity equality (`PartialEq`, `Eq`, `Hash` on the `#[entity(id)]`
//! field only), the `Entity` accessor, and serde through the same parts as a value's fields, so
//! that an entity never holds personal data in plain text.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Ident};

use crate::ast::{Container, Data};
use crate::attr::{self, Ctxt};
use crate::check;
use crate::fallback::Fallback;
use crate::value::{field_serde, part, part_traits, refuse_personal_parts};

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, Fallback> {
    let cx = Ctxt::new();
    let cont = Container::entity(&cx, input);
    check::entity(&cx, &cont);
    cx.check()
        .map_err(|errors| Fallback::stub(errors, cont.generics(), stub(&cont)))?;
    let ident = cont.ident;
    let Data::Struct(fields) = &cont.data else {
        unreachable!("an enum or a union is rejected by `check::entity`");
    };
    let id_field = cont.id_fields()[0];
    let (id, id_ty) = (id_field.ident, id_field.ty);
    let id_part = part(id_ty);
    let names = fields.names();
    let types = fields.types();
    let traits = part_traits();
    let refuse = refuse_personal_parts(&types, "refuse_in_entity");
    // An entity lives in event payloads, which ignore fields they do not know (an event's own
    // do too): an entity that lost a field still reads its old events.
    let serde = field_serde(fields, false);
    Ok(quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #traits
            #refuse
            #serde

            #[automatically_derived]
            impl ::eventsourcery::__private::serde::Serialize for #ident {
                fn serialize<S>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error>
                where
                    S: ::eventsourcery::__private::serde::Serializer,
                {
                    ::eventsourcery::__private::serde::Serialize::serialize(
                        &__Ser { #(#names: &self.#names,)* },
                        serializer,
                    )
                }
            }

            #[automatically_derived]
            impl<'de> ::eventsourcery::__private::serde::Deserialize<'de> for #ident {
                fn deserialize<D>(deserializer: D) -> ::core::result::Result<Self, D::Error>
                where
                    D: ::eventsourcery::__private::serde::Deserializer<'de>,
                {
                    let de = <__De as ::eventsourcery::__private::serde::Deserialize>::deserialize(deserializer)?;
                    ::core::result::Result::Ok(Self { #(#names: de.#names,)* })
                }
            }

            #[automatically_derived]
            impl ::core::cmp::PartialEq for #ident {
                fn eq(&self, other: &Self) -> bool {
                    #id_part.eq(&self.#id, &other.#id)
                }
            }

            #[automatically_derived]
            impl ::core::cmp::Eq for #ident {}

            #[automatically_derived]
            impl ::core::hash::Hash for #ident {
                fn hash<H: ::core::hash::Hasher>(&self, state: &mut H) {
                    #id_part.hash(&self.#id, state)
                }
            }

            #[automatically_derived]
            impl ::eventsourcery::__private::Entity for #ident {
                type Id = #id_ty;
                fn id(&self) -> &#id_ty {
                    &self.#id
                }
            }
        };
    })
}

/// What the derive provides, with no bodies: emitted after an error so that uses of the type
/// in events and aggregates add no errors of their own. The `Entity` impl needs the id's type,
/// so it is left out when no field is marked.
fn stub(cont: &Container<attr::Entity>) -> TokenStream {
    let ident: &Ident = cont.ident;
    let entity = cont.id_fields().first().map(|field| {
        let ty = field.ty;
        quote! {
            #[automatically_derived]
            impl ::eventsourcery::__private::Entity for #ident {
                type Id = #ty;
                fn id(&self) -> &#ty { ::core::unimplemented!() }
            }
        }
    });
    let common = crate::value::common_stub(ident);
    quote! {
        #common

        #entity
    }
}
