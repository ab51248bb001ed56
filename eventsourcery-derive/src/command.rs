//! `#[derive(Command)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::ast::{Container, Data};
use crate::attr::{self, Ctxt};
use crate::fallback::Fallback;
use crate::{check, fields};

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, Fallback> {
    let cx = Ctxt::new();
    let cont = Container::command(&cx, input);
    check::command(&cx, &cont);
    cx.check()
        .map_err(|errors| Fallback::stub(errors, cont.generics(), stub(&cont)))?;
    let Data::Struct(fields) = &cont.data else {
        unreachable!("an enum or a union is rejected by `check::command`");
    };
    let ident = cont.ident;
    let name = cont.name();
    let name_expr = quote!(#name);
    let codec = fields::codec(
        fields,
        cont.attrs.subject.as_ref(),
        &name_expr,
        attr::COMMAND,
    );
    let (encode, lookups) = (codec.encode, codec.lookups);
    Ok(quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl ::eventsourcery::__private::Command for #ident {
                const NAME: &'static str = #name;
                fn encode(&self, cx: &mut ::eventsourcery::__private::EncodeContext)
                    -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
                {
                    let _ = &cx;
                    #encode
                }
            }

            #lookups

            ::eventsourcery::__private::inventory::submit! {
                ::eventsourcery::__private::CommandRegistration {
                    command: ::core::any::TypeId::of::<#ident>,
                    name: #name,
                }
            }
        };
    })
}

/// What the derive provides, with no bodies: emitted after an error so that uses of the type
/// add no errors of their own.
fn stub(cont: &Container<attr::Command>) -> TokenStream {
    let ident = cont.ident;
    let name = cont.name();
    quote! {
        #[automatically_derived]
        impl ::eventsourcery::__private::Command for #ident {
            const NAME: &'static str = #name;
            fn encode(&self, _: &mut ::eventsourcery::__private::EncodeContext)
                -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
            { ::core::unimplemented!() }
        }
    }
}
