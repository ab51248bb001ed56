//! What an input that failed its checks expands to (thiserror's `fallback`): its errors, and
//! beside them what keeps them the only errors the user sees.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

/// The errors of a rejected input, and what goes with them.
pub(crate) struct Fallback {
    errors: syn::Error,
    with: With,
}

enum With {
    /// After a derive: a stub impl, so that uses of the type add no "trait not implemented"
    /// errors of their own.
    Stub(TokenStream),
    /// After a derive on a generic type: nothing, as a stub without the type's parameters
    /// would be an error of its own.
    Nothing,
    /// After an attribute macro: the user's item, unchanged, so that editors keep working.
    Item(TokenStream),
}

impl Fallback {
    /// The errors of a derive, then `stub` (in a `const _` block) unless the type is generic.
    pub(crate) fn stub(errors: syn::Error, generics: &syn::Generics, stub: TokenStream) -> Self {
        let with = if generics.params.is_empty() {
            With::Stub(stub)
        } else {
            With::Nothing
        };
        Self { errors, with }
    }

    /// The user's item, then the errors of the attribute macro on it.
    pub(crate) fn item(errors: syn::Error, item: impl ToTokens) -> Self {
        Self {
            errors,
            with: With::Item(item.into_token_stream()),
        }
    }

    pub(crate) fn into_compile_error(self) -> TokenStream {
        let errors = self.errors.into_compile_error();
        match self.with {
            With::Stub(stub) => quote! {
                #errors
                #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
                const _: () = { #stub };
            },
            With::Nothing => errors,
            With::Item(item) => quote!(#item #errors),
        }
    }
}
