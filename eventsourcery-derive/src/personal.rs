//! `#[derive(PersonalData)]`: marks a value type as personal data.

use proc_macro2::TokenStream;
use syn::DeriveInput;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    syn::Error::new_spanned(&input.ident, "PersonalData is not available yet").to_compile_error()
}
