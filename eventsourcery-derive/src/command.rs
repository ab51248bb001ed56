//! `#[derive(Command)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Ident};

use crate::attr::{self, Ctxt, Once};
use crate::case::snake_case;
use crate::fields;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        cx.error(
            &input.generics,
            "a command cannot be generic: its logged name must name one type",
        );
    }
    let mut name = Once::new("name");
    let mut subject = Once::<Ident>::new("subject");
    attr::each_nested(&cx, &input.attrs, attr::COMMAND, |meta| {
        if meta.path.is_ident("name") {
            let lit = attr::lit_str(meta)?;
            name.set(&cx, &meta.path, attr::check_name(&cx, &lit));
        } else if meta.path.is_ident("subject") {
            subject.set(&cx, &meta.path, attr::ident(meta, "field")?);
        } else {
            return Err(attr::unknown(meta, attr::COMMAND, &["name", "subject"]));
        }
        Ok(())
    });
    let name = name.get().unwrap_or_else(|| snake_case(&ident.to_string()));
    let subject = subject.get();
    let name_expr = quote!(#name);
    let (encode, lookups) = match &input.data {
        Data::Struct(data) => {
            let codec = fields::codec(
                &cx,
                &data.fields,
                subject.as_ref(),
                &name_expr,
                attr::COMMAND,
            );
            (codec.encode, codec.lookups)
        }
        _ => {
            cx.error(ident, "Command can be derived for a struct only");
            (TokenStream::new(), TokenStream::new())
        }
    };
    let stub = quote! {
        #[automatically_derived]
        impl ::eventsourcery::Command for #ident {
            const NAME: &'static str = #name;
            fn encode(&self, _: &mut ::eventsourcery::__private::EncodeContext)
                -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
            { ::core::unimplemented!() }
        }
    };
    if let Err(error) = cx.check() {
        return attr::compile_errors(error, &input.generics, stub);
    }
    quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl ::eventsourcery::Command for #ident {
                const NAME: &'static str = #name;
                fn encode(&self, cx: &mut ::eventsourcery::__private::EncodeContext)
                    -> ::core::result::Result<::eventsourcery::__private::serde_json::Value, ::eventsourcery::__private::EventError>
                {
                    let _ = &cx;
                    #encode
                }
            }

            #lookups
        };
    }
}
