//! Attribute parsing: the error context, the helpers every parser shares, and the parsed forms
//! of `#[event(...)]`, `#[command(...)]`, `#[aggregate(...)]`, `#[personal(...)]`,
//! `#[personal_data(...)]`, `#[value]`, `#[entity(...)]` and the arguments of the attribute
//! macros.
//!
//! Everything here looks inside one attribute: its syntax, its keys and their values. What
//! concerns the input as a whole (a subject that names no field, a missing `id`, an attribute
//! where it has no meaning) is checked in [`crate::check`], on the model of [`crate::ast`].

use std::cell::RefCell;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Token, Type};

pub(crate) const EVENT: &str = "event";
pub(crate) const AGGREGATE: &str = "aggregate";
pub(crate) const COMMAND: &str = "command";
pub(crate) const PERSONAL: &str = "personal";
pub(crate) const PERSONAL_DATA: &str = "personal_data";
pub(crate) const VALUE: &str = "value";
pub(crate) const ENTITY: &str = "entity";

/// The keys inside the attributes: the lists in "expected one of ..." are built from the same
/// constants as the matches, so they cannot drift apart.
mod key {
    pub(super) const NAME: &str = "name";
    pub(super) const VERSION: &str = "version";
    pub(super) const SUBJECT: &str = "subject";
    pub(super) const LOOKUP: &str = "lookup";
    pub(super) const ID: &str = "id";
    pub(super) const EVENTS: &str = "events";
    pub(super) const SNAPSHOT: &str = "snapshot";
    pub(super) const EVERY: &str = "every";
    pub(super) const CACHE: &str = "cache";
    pub(super) const CONSUMER: &str = "consumer";
    pub(super) const RESET: &str = "reset";
    pub(super) const PARTITIONS: &str = "partitions";
}

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

    /// Checks the context, and gives the messages of its errors.
    #[cfg(test)]
    pub(crate) fn messages(self) -> Vec<String> {
        match self.check() {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
        }
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
fn each_nested(
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
fn recover(cx: &Ctxt, meta: &ParseNestedMeta, result: syn::Result<()>) -> syn::Result<()> {
    if let Err(error) = result {
        cx.syn_error(error);
        while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            meta.input.parse::<TokenTree>()?;
        }
    }
    Ok(())
}

/// `key` as the user wrote it, for messages.
fn key_of(meta: &ParseNestedMeta) -> String {
    meta.path.to_token_stream().to_string().replace(' ', "")
}

/// "unknown `event` attribute `nmae`; expected one of `name`, `version`".
fn unknown(meta: &ParseNestedMeta, attr: &str, expected: &[&str]) -> syn::Error {
    let key = key_of(meta);
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
fn ident(meta: &ParseNestedMeta, what: &str) -> syn::Result<Ident> {
    let key = key_of(meta);
    meta.value()?
        .parse::<Ident>()
        .map_err(|e| syn::Error::new(e.span(), format!("expected {what} name: `{key} = {what}`")))
}

/// `key = "..."`; on anything else, says what to write.
fn lit_str(meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    let key = key_of(meta);
    meta.value()?
        .parse::<LitStr>()
        .map_err(|e| syn::Error::new(e.span(), format!("expected a string: `{key} = \"...\"`")))
}

/// `key = N`; on anything else, says what to write.
fn lit_u32(meta: &ParseNestedMeta) -> syn::Result<(LitInt, u32)> {
    let key = key_of(meta);
    let lit: LitInt = meta.value()?.parse().map_err(|e: syn::Error| {
        syn::Error::new(e.span(), format!("expected a whole number: `{key} = 1`"))
    })?;
    let n = lit.base10_parse::<u32>()?;
    Ok((lit, n))
}

/// `key = "..."` holding a stored name: non-empty, ASCII letters, digits, `_`, `.`, `-`, `:`.
fn stored_name(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    let lit = lit_str(meta)?;
    let name = lit.value();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'));
    if !ok {
        cx.error(
            &lit,
            "a stored name must be non-empty and use only ASCII letters, digits, `_`, `.`, `-` and `:`",
        );
    }
    Ok(lit)
}

/// `#[event(name = "...", version = N, subject = field)]` on an event struct.
#[derive(Default)]
pub(crate) struct Event {
    pub(crate) name: Option<String>,
    pub(crate) version: Option<u32>,
    pub(crate) subject: Option<Ident>,
}

impl Event {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut name = Once::new(key::NAME);
        let mut version = Once::new(key::VERSION);
        let mut subject = Once::new(key::SUBJECT);
        each_nested(cx, attrs, EVENT, |meta| {
            if meta.path.is_ident(key::NAME) {
                name.set(cx, &meta.path, stored_name(cx, meta)?.value());
            } else if meta.path.is_ident(key::VERSION) {
                let (lit, n) = lit_u32(meta)?;
                if n == 0 {
                    cx.error(&lit, "schema versions start at 1");
                }
                version.set(cx, &meta.path, n);
            } else if meta.path.is_ident(key::SUBJECT) {
                subject.set(cx, &meta.path, ident(meta, "field")?);
            } else {
                return Err(unknown(
                    meta,
                    EVENT,
                    &[key::NAME, key::VERSION, key::SUBJECT],
                ));
            }
            Ok(())
        });
        Self {
            name: name.get(),
            version: version.get(),
            subject: subject.get(),
        }
    }
}

/// `#[command(name = "...", subject = field)]` on a command struct.
pub(crate) struct Command {
    pub(crate) name: Option<String>,
    pub(crate) subject: Option<Ident>,
}

impl Command {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut name = Once::new(key::NAME);
        let mut subject = Once::new(key::SUBJECT);
        each_nested(cx, attrs, COMMAND, |meta| {
            if meta.path.is_ident(key::NAME) {
                name.set(cx, &meta.path, stored_name(cx, meta)?.value());
            } else if meta.path.is_ident(key::SUBJECT) {
                subject.set(cx, &meta.path, ident(meta, "field")?);
            } else {
                return Err(unknown(meta, COMMAND, &[key::NAME, key::SUBJECT]));
            }
            Ok(())
        });
        Self {
            name: name.get(),
            subject: subject.get(),
        }
    }
}

/// `#[aggregate(id = T, events(A, B), name = "...", snapshot(every = N, version = V), cache)]`.
pub(crate) struct Aggregate {
    pub(crate) id: Option<Type>,
    pub(crate) events: Vec<Path>,
    pub(crate) name: Option<String>,
    /// `(every, version)`.
    pub(crate) snapshot: Option<(u64, u32)>,
    pub(crate) cache: bool,
    /// Whether a key was misspelled: it is likely the `id` or `events` that then looks missing,
    /// so that is not reported a second time.
    pub(crate) unknown_key: bool,
}

impl Aggregate {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut id = Once::new(key::ID);
        let mut events = Once::new(key::EVENTS);
        let mut name = Once::new(key::NAME);
        let mut snapshot = Once::new(key::SNAPSHOT);
        let mut cache = Once::new(key::CACHE);
        let mut unknown_key = false;
        each_nested(cx, attrs, AGGREGATE, |meta| {
            if meta.path.is_ident(key::ID) {
                let ty: Type = meta.value()?.parse()?;
                id.set(cx, &meta.path, ty);
            } else if meta.path.is_ident(key::EVENTS) {
                let list = path_list(meta)?;
                let mut seen: Vec<&Path> = Vec::new();
                for path in &list {
                    if seen.contains(&path) {
                        cx.error(path, "event listed twice in `events(...)`");
                    }
                    seen.push(path);
                }
                events.set(cx, &meta.path, list.clone());
            } else if meta.path.is_ident(key::NAME) {
                name.set(cx, &meta.path, stored_name(cx, meta)?.value());
            } else if meta.path.is_ident(key::CACHE) {
                cache.set(cx, &meta.path, true);
            } else if meta.path.is_ident(key::SNAPSHOT) {
                if let Some(every_version) = snapshot_args(cx, meta)? {
                    snapshot.set(cx, &meta.path, every_version);
                }
            } else {
                unknown_key = true;
                let expected = [key::ID, key::EVENTS, key::NAME, key::SNAPSHOT, key::CACHE];
                return Err(unknown(meta, AGGREGATE, &expected));
            }
            Ok(())
        });
        Self {
            id: id.get(),
            events: events.get().unwrap_or_default(),
            name: name.get(),
            snapshot: snapshot.get(),
            cache: cache.get().unwrap_or(false),
            unknown_key,
        }
    }
}

/// `snapshot(every = N, version = V)`: `(every, version)`, or `None` (reported) without `every`.
fn snapshot_args(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<(u64, u32)>> {
    let mut every = None;
    let mut version = 1;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident(key::EVERY) {
            let lit: LitInt = inner.value()?.parse()?;
            let n = lit.base10_parse::<u64>()?;
            if n == 0 {
                cx.error(&lit, "`every` must be at least 1");
            }
            every = Some(n);
        } else if inner.path.is_ident(key::VERSION) {
            version = lit_u32(&inner)?.1;
        } else {
            return Err(unknown(&inner, key::SNAPSHOT, &[key::EVERY, key::VERSION]));
        }
        Ok(())
    })?;
    if every.is_none() {
        cx.error(&meta.path, "`snapshot(...)` needs `every = N`");
    }
    Ok(every.map(|every| (every, version)))
}

/// Parses `events(A, B, ...)`.
fn path_list(meta: &ParseNestedMeta) -> syn::Result<Vec<Path>> {
    let mut paths = Vec::new();
    meta.parse_nested_meta(|inner| {
        paths.push(inner.path.clone());
        Ok(())
    })?;
    Ok(paths)
}

/// `#[personal_data(name = "...")]` on a personal data type.
pub(crate) struct PersonalData {
    pub(crate) name: Option<String>,
}

impl PersonalData {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut name = Once::new(key::NAME);
        each_nested(cx, attrs, PERSONAL_DATA, |meta| {
            if meta.path.is_ident(key::NAME) {
                name.set(cx, &meta.path, stored_name(cx, meta)?.value());
                Ok(())
            } else {
                Err(unknown(meta, PERSONAL_DATA, &[key::NAME]))
            }
        });
        Self { name: name.get() }
    }
}

/// `#[value]`, which takes no options.
pub(crate) fn value(cx: &Ctxt, attrs: &[Attribute]) {
    each_nested(cx, attrs, VALUE, |meta| {
        Err(meta.error("`#[value(...)]` takes no options"))
    });
}

/// The type-level attributes of `Entity`: none (`#[entity(id)]` goes on a field, and the check
/// rejects `#[entity]` on the type).
pub(crate) struct Entity;

/// `#[entity(id)]` on a field of an entity.
pub(crate) struct EntityField {
    /// The `id` key, to span errors about it (a second id field).
    pub(crate) id: Option<Path>,
}

impl EntityField {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Option<Self> {
        let mut found = false;
        let mut id = Once::new(key::ID);
        for attr in attrs.iter().filter(|a| a.path().is_ident(ENTITY)) {
            found = true;
            if let syn::Meta::Path(_) = attr.meta {
                cx.error(
                    attr,
                    "expected `#[entity(id)]`: the attribute marks the entity's id field",
                );
            }
        }
        each_nested(cx, attrs, ENTITY, |meta| {
            if !meta.path.is_ident(key::ID) {
                return Err(unknown(meta, ENTITY, &[key::ID]));
            }
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                return Err(meta.error("`id` takes no value: write `#[entity(id)]`"));
            }
            id.set(cx, &meta.path, meta.path.clone());
            Ok(())
        });
        found.then(|| Self { id: id.get() })
    }
}

/// `#[personal]` or `#[personal(subject = field, lookup)]` on a field.
pub(crate) struct Personal {
    /// The whole attribute, to span errors about it.
    pub(crate) tokens: TokenStream,
    pub(crate) subject: Option<Ident>,
    pub(crate) lookup: bool,
    /// Whether it had errors of its own (already reported): then a missing subject is most
    /// likely one of them (`subjcet = x`), not a mistake of its own.
    pub(crate) malformed: bool,
}

impl Personal {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Option<Self> {
        let mut found = None;
        for attr in attrs.iter().filter(|a| a.path().is_ident(PERSONAL)) {
            if found.is_some() {
                cx.error(attr, "duplicate `personal` attribute");
                continue;
            }
            let mut subject = Once::new(key::SUBJECT);
            let mut lookup = Once::new(key::LOOKUP);
            let mut malformed = false;
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                let result = attr.parse_nested_meta(|meta| {
                    let result = if meta.path.is_ident(key::SUBJECT) {
                        ident(&meta, "field").map(|ident| subject.set(cx, &meta.path, ident))
                    } else if meta.path.is_ident(key::LOOKUP) {
                        lookup.set(cx, &meta.path, true);
                        Ok(())
                    } else {
                        Err(unknown(&meta, PERSONAL, &[key::SUBJECT, key::LOOKUP]))
                    };
                    malformed |= result.is_err();
                    recover(cx, &meta, result)
                });
                if let Err(error) = result {
                    malformed = true;
                    cx.syn_error(error);
                }
            }
            found = Some(Self {
                tokens: attr.to_token_stream(),
                subject: subject.get(),
                lookup: lookup.get().unwrap_or(false),
                malformed,
            });
        }
        found
    }
}

/// The arguments of `#[eventsourcery::handler]`: none.
pub(crate) fn handler(cx: &Ctxt, args: &TokenStream) {
    if !args.is_empty() {
        cx.error(args, "`handler` takes no arguments");
    }
}

/// Which consumer attribute.
#[derive(Clone, Copy)]
pub(crate) enum ConsumerKind {
    Listener,
    ProcessManager,
    Projection,
}

impl ConsumerKind {
    /// The attribute's name, as the user writes it after `eventsourcery::`.
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::ProcessManager => "process_manager",
            Self::Projection => "projection",
        }
    }
}

/// The arguments of `#[eventsourcery::listener(...)]` and its siblings:
/// `consumer = "..."`, `partitions = N`, and `reset = function` for a projection.
pub(crate) struct Consumer {
    pub(crate) kind: ConsumerKind,
    pub(crate) consumer: Option<LitStr>,
    pub(crate) reset: Option<Ident>,
    /// `partitions = N`, 1 to 1024 (the runtime's `MAX_PARTITIONS`).
    pub(crate) partitions: Option<u32>,
    /// Whether `consumer` was written, even wrongly: then it is not also reported missing.
    pub(crate) named: bool,
}

impl Consumer {
    pub(crate) fn from_args(cx: &Ctxt, kind: ConsumerKind, args: TokenStream) -> Self {
        let attr_name = kind.attr();
        let mut consumer = Once::<LitStr>::new(key::CONSUMER);
        let mut reset = Once::<Ident>::new(key::RESET);
        let mut partitions = Once::<u32>::new(key::PARTITIONS);
        let expected: &[&str] = match kind {
            ConsumerKind::Projection => &[key::CONSUMER, key::PARTITIONS, key::RESET],
            _ => &[key::CONSUMER, key::PARTITIONS],
        };
        let mut named = false;
        let parser = syn::meta::parser(|meta: ParseNestedMeta| {
            let result = (|| {
                if meta.path.is_ident(key::CONSUMER) {
                    named = true;
                    consumer.set(cx, &meta.path, stored_name(cx, &meta)?);
                } else if meta.path.is_ident(key::RESET) {
                    // Not a projection: a key this attribute does not take, said as such.
                    if !matches!(kind, ConsumerKind::Projection) {
                        return Err(meta.error(format!(
                            "`reset` is for projections, which have a read model to clear on a rebuild; a {attr_name} takes only `consumer = \"...\"` and `partitions = N`"
                        )));
                    }
                    reset.set(cx, &meta.path, ident(&meta, "function")?);
                } else if meta.path.is_ident(key::PARTITIONS) {
                    let (lit, n) = lit_u32(&meta)?;
                    if !(1..=1024).contains(&n) {
                        cx.error(&lit, "`partitions` takes 1 to 1024");
                    }
                    partitions.set(cx, &meta.path, n);
                } else {
                    return Err(unknown(&meta, attr_name, expected));
                }
                Ok(())
            })();
            recover(cx, &meta, result)
        });
        if let Err(error) = syn::parse::Parser::parse2(parser, args) {
            cx.syn_error(error);
        }
        Self {
            kind,
            consumer: consumer.get(),
            reset: reset.get(),
            partitions: partitions.get(),
            named,
        }
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
        assert_eq!(cx.messages(), ["first", "second"]);
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
