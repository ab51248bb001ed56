//! Attribute parsing shared by the derives: an error collector and the parsed forms of
//! `#[event(...)]`, `#[aggregate(...)]`, `#[command(...)]` and `#[personal(...)]`.

use std::cell::RefCell;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Token};

pub(crate) const EVENT: &str = "event";
pub(crate) const AGGREGATE: &str = "aggregate";
pub(crate) const COMMAND: &str = "command";
pub(crate) const PERSONAL: &str = "personal";
pub(crate) const PERSONAL_DATA: &str = "personal_data";
pub(crate) const VALUE: &str = "value";

/// Collects every error of one expansion, so the user sees them all at once.
///
/// It must be consumed by [`Ctxt::check`]: dropped unchecked, it panics (as serde's does), so
/// that a path through a macro that forgets its errors fails loudly instead of expanding as if
/// the input were right.
pub(crate) struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
    checked: bool,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Self {
            errors: RefCell::new(Vec::new()),
            checked: false,
        }
    }

    pub(crate) fn error(&self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.syn_error(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn error_at(&self, span: Span, message: impl std::fmt::Display) {
        self.syn_error(syn::Error::new(span, message));
    }

    pub(crate) fn syn_error(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// The collected errors as one, if any.
    pub(crate) fn check(mut self) -> syn::Result<()> {
        self.checked = true;
        let mut errors = std::mem::take(self.errors.get_mut()).into_iter();
        let Some(mut first) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            first.combine(error);
        }
        Err(first)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        // Not while unwinding: a second panic would abort and hide the first.
        if !self.checked && !std::thread::panicking() {
            panic!("forgot to check for errors");
        }
    }
}

/// A value set at most once, remembering where.
pub(crate) struct Once<T> {
    name: &'static str,
    value: Option<T>,
}

impl<T> Once<T> {
    pub(crate) fn new(name: &'static str) -> Self {
        Self { name, value: None }
    }

    pub(crate) fn set(&mut self, cx: &Ctxt, tokens: impl ToTokens, value: T) {
        if self.value.is_some() {
            cx.error(tokens, format!("duplicate `{}` attribute", self.name));
        } else {
            self.value = Some(value);
        }
    }

    pub(crate) fn get(self) -> Option<T> {
        self.value
    }
}

/// Runs `parse` on every `#[name(...)]` attribute, collecting errors.
///
/// An entry that fails to parse is recorded and skipped (see [`recover`]), so every mistake in
/// `#[event(nmae = "x", version = 0)]` is reported at once, not only the first.
pub(crate) fn each_nested(
    cx: &Ctxt,
    attrs: &[Attribute],
    name: &str,
    mut parse: impl FnMut(&ParseNestedMeta) -> syn::Result<()>,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(name)) {
        if let syn::Meta::Path(_) = &attr.meta {
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let result = parse(&meta);
            recover(cx, &meta, result)
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
}

/// The result of parsing one `key = value` entry of a list: on error, records it and skips the
/// rest of the entry up to the next `,`, so that the entries after a mistake are still checked.
pub(crate) fn recover(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    result: syn::Result<()>,
) -> syn::Result<()> {
    if let Err(error) = result {
        cx.syn_error(error);
        while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            meta.input.parse::<TokenTree>()?;
        }
    }
    Ok(())
}

/// "unknown `event` attribute `nmae`; expected one of `name`, `version`".
pub(crate) fn unknown(meta: &ParseNestedMeta, attr: &str, expected: &[&str]) -> syn::Error {
    let key = meta.path.to_token_stream().to_string().replace(' ', "");
    let list = expected
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let expected = if expected.len() == 1 {
        list
    } else {
        format!("one of {list}")
    };
    meta.error(format!(
        "unknown `{attr}` attribute `{key}`; expected {expected}"
    ))
}

/// `key = name`, where the name is an identifier: a field (`subject = candidate`) or a function
/// (`reset = clear`); on anything else, says what to write.
pub(crate) fn ident(meta: &ParseNestedMeta, what: &str) -> syn::Result<Ident> {
    let key = meta.path.to_token_stream().to_string().replace(' ', "");
    meta.value()?
        .parse::<Ident>()
        .map_err(|e| syn::Error::new(e.span(), format!("expected {what} name: `{key} = {what}`")))
}

/// `key = "..."`; on anything else, says what to write.
pub(crate) fn lit_str(meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    let key = meta.path.to_token_stream().to_string().replace(' ', "");
    meta.value()?
        .parse::<LitStr>()
        .map_err(|e| syn::Error::new(e.span(), format!("expected a string: `{key} = \"...\"`")))
}

/// `key = N`; on anything else, says what to write.
pub(crate) fn lit_u32(meta: &ParseNestedMeta) -> syn::Result<(LitInt, u32)> {
    let key = meta.path.to_token_stream().to_string().replace(' ', "");
    let lit: LitInt = meta.value()?.parse().map_err(|e: syn::Error| {
        syn::Error::new(e.span(), format!("expected a whole number: `{key} = 1`"))
    })?;
    let n = lit.base10_parse::<u32>()?;
    Ok((lit, n))
}

/// A stored name: non-empty, ASCII letters, digits, `_`, `.`, `-` and `:`.
pub(crate) fn check_name(cx: &Ctxt, lit: &LitStr) -> String {
    let name = lit.value();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'));
    if !ok {
        cx.error(
            lit,
            "a stored name must be non-empty and use only ASCII letters, digits, `_`, `.`, `-` and `:`",
        );
    }
    name
}

/// `#[event(name = "...", version = N, subject = field)]` on an event struct.
pub(crate) struct EventAttrs {
    pub(crate) name: Option<String>,
    pub(crate) version: Option<u32>,
    pub(crate) subject: Option<Ident>,
}

pub(crate) fn event_attrs(cx: &Ctxt, attrs: &[Attribute]) -> EventAttrs {
    let mut name = Once::new("name");
    let mut version = Once::new("version");
    let mut subject = Once::new("subject");
    each_nested(cx, attrs, EVENT, |meta| {
        if meta.path.is_ident("name") {
            let lit = lit_str(meta)?;
            name.set(cx, &meta.path, check_name(cx, &lit));
        } else if meta.path.is_ident("version") {
            let (lit, n) = lit_u32(meta)?;
            if n == 0 {
                cx.error(&lit, "schema versions start at 1");
            }
            version.set(cx, &meta.path, n);
        } else if meta.path.is_ident("subject") {
            subject.set(cx, &meta.path, ident(meta, "field")?);
        } else {
            return Err(unknown(meta, EVENT, &["name", "version", "subject"]));
        }
        Ok(())
    });
    EventAttrs {
        name: name.get(),
        version: version.get(),
        subject: subject.get(),
    }
}

/// `#[personal]` or `#[personal(subject = field)]` on a field.
pub(crate) struct PersonalAttr {
    /// The whole attribute, to span errors about it.
    pub(crate) tokens: TokenStream,
    pub(crate) subject: Option<Ident>,
    pub(crate) lookup: bool,
    /// Whether it had errors of its own (already reported): then a missing subject is most
    /// likely one of them (`subjcet = x`), not a mistake of its own.
    pub(crate) malformed: bool,
}

pub(crate) fn personal_attr(cx: &Ctxt, attrs: &[Attribute]) -> Option<PersonalAttr> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident(PERSONAL)) {
        if found.is_some() {
            cx.error(attr, "duplicate `personal` attribute");
            continue;
        }
        let mut subject = Once::new("subject");
        let mut lookup = Once::new("lookup");
        let mut malformed = false;
        if !matches!(attr.meta, syn::Meta::Path(_)) {
            let result = attr.parse_nested_meta(|meta| {
                let result = if meta.path.is_ident("subject") {
                    ident(&meta, "field").map(|ident| subject.set(cx, &meta.path, ident))
                } else if meta.path.is_ident("lookup") {
                    lookup.set(cx, &meta.path, true);
                    Ok(())
                } else {
                    Err(unknown(&meta, PERSONAL, &["subject", "lookup"]))
                };
                malformed |= result.is_err();
                recover(cx, &meta, result)
            });
            if let Err(error) = result {
                malformed = true;
                cx.syn_error(error);
            }
        }
        found = Some(PersonalAttr {
            tokens: attr.to_token_stream(),
            subject: subject.get(),
            lookup: lookup.get().unwrap_or(false),
            malformed,
        });
    }
    found
}

/// Rejects an attribute where it has no meaning.
pub(crate) fn reject(cx: &Ctxt, attrs: &[Attribute], name: &str, message: &str) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(name)) {
        cx.error(attr, message);
    }
}

/// Parses `events(A, B, ...)`.
pub(crate) fn path_list(meta: &ParseNestedMeta) -> syn::Result<Vec<Path>> {
    let mut paths = Vec::new();
    meta.parse_nested_meta(|inner| {
        paths.push(inner.path.clone());
        Ok(())
    })?;
    Ok(paths)
}

/// The errors, then a stub impl so that uses of the type add no "trait not implemented" errors.
///
/// A generic type gets no stub: a stub without its parameters would be an error of its own.
pub(crate) fn compile_errors(
    error: syn::Error,
    generics: &syn::Generics,
    stub: TokenStream,
) -> TokenStream {
    let errors = error.to_compile_error();
    if !generics.params.is_empty() {
        return errors;
    }
    quote::quote! {
        #errors
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = { #stub };
    }
}

#[cfg(test)]
mod tests {
    use super::Ctxt;

    #[test]
    fn a_checked_context_gives_its_errors_at_once() {
        let cx = Ctxt::new();
        cx.error_at(proc_macro2::Span::call_site(), "first");
        cx.error_at(proc_macro2::Span::call_site(), "second");
        let errors = cx.check().expect_err("two errors");
        let messages: Vec<_> = errors.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    #[should_panic(expected = "forgot to check for errors")]
    fn an_unchecked_context_panics_when_dropped() {
        let cx = Ctxt::new();
        cx.error_at(proc_macro2::Span::call_site(), "lost");
    }

    #[test]
    #[should_panic(expected = "forgot to check for errors")]
    fn an_unchecked_context_panics_even_without_errors() {
        drop(Ctxt::new());
    }
}
