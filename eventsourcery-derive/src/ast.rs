//! The model of a macro's input, built before anything is checked or generated (serde's
//! `internals/ast.rs`, thiserror's `ast.rs`).
//!
//! A derive's type becomes a [`Container`], a function under an attribute macro a
//! [`Function`]: each attribute parsed by [`crate::attr`], each part keeping a reference to its
//! tokens, so that [`crate::check`] can span an error on the smallest offending one and the
//! expansions read parsed values rather than attributes. Building the model reports what is
//! wrong inside an attribute; nothing here judges the input as a whole.

use proc_macro2::TokenStream;
use syn::{DeriveInput, FnArg, Ident, ItemFn, Type};

use crate::attr::{self, ConsumerKind, Ctxt};
use crate::case::snake_case;
use crate::fallback::Fallback;

/// A derive's input: the type, its parsed attributes `A`, and its fields or variants.
pub(crate) struct Container<'a, A> {
    pub(crate) ident: &'a Ident,
    pub(crate) attrs: A,
    pub(crate) data: Data<'a>,
    pub(crate) original: &'a DeriveInput,
}

pub(crate) enum Data<'a> {
    Struct(Fields<'a>),
    Enum(Vec<Variant<'a>>),
    Union(&'a syn::DataUnion),
}

pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) fields: Fields<'a>,
    pub(crate) original: &'a syn::Variant,
}

/// The fields of a struct or a variant.
pub(crate) struct Fields<'a> {
    pub(crate) style: Style,
    pub(crate) all: Vec<Field<'a>>,
    pub(crate) original: &'a syn::Fields,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// `{ a: A, b: B }`, also with no field.
    Named,
    /// `(A)`.
    Newtype,
    /// `(A, B)` or `()`.
    Tuple,
    /// No fields at all.
    Unit,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: Option<&'a Ident>,
    pub(crate) ty: &'a Type,
    /// `#[personal(...)]`: parsed on the named fields of the derives whose payload routes
    /// personal fields (`DomainEvent`, `Command`), `None` elsewhere.
    pub(crate) personal: Option<attr::Personal>,
    pub(crate) original: &'a syn::Field,
}

impl Field<'_> {
    /// The data subject of a personal field: the one it names, or else the type's `default`.
    pub(crate) fn subject<'s>(&'s self, default: Option<&'s Ident>) -> Option<&'s Ident> {
        self.personal.as_ref()?.subject.as_ref().or(default)
    }
}

impl<'a> Fields<'a> {
    /// `personal`: whether to parse `#[personal]` on named fields. A tuple struct is rejected
    /// as a whole by the payload derives, so its fields' attributes would only add noise.
    fn from_ast(cx: &Ctxt, fields: &'a syn::Fields, personal: bool) -> Self {
        let style = match fields {
            syn::Fields::Named(_) => Style::Named,
            syn::Fields::Unnamed(f) if f.unnamed.len() == 1 => Style::Newtype,
            syn::Fields::Unnamed(_) => Style::Tuple,
            syn::Fields::Unit => Style::Unit,
        };
        let personal = personal && style == Style::Named;
        let all = fields
            .iter()
            .map(|field| Field {
                ident: field.ident.as_ref(),
                ty: &field.ty,
                personal: if personal {
                    attr::Personal::from_attrs(cx, &field.attrs)
                } else {
                    None
                },
                original: field,
            })
            .collect();
        Self {
            style,
            all,
            original: fields,
        }
    }

    /// The names of the named fields.
    pub(crate) fn names(&self) -> Vec<&'a Ident> {
        self.all.iter().filter_map(|field| field.ident).collect()
    }

    /// The types of the fields.
    pub(crate) fn types(&self) -> Vec<&'a Type> {
        self.all.iter().map(|field| field.ty).collect()
    }
}

impl<'a> Data<'a> {
    fn from_ast(cx: &Ctxt, data: &'a syn::Data, personal: bool) -> Self {
        match data {
            syn::Data::Struct(data) => Self::Struct(Fields::from_ast(cx, &data.fields, personal)),
            syn::Data::Enum(data) => Self::Enum(
                data.variants
                    .iter()
                    .map(|variant| Variant {
                        ident: &variant.ident,
                        fields: Fields::from_ast(cx, &variant.fields, false),
                        original: variant,
                    })
                    .collect(),
            ),
            syn::Data::Union(data) => Self::Union(data),
        }
    }
}

impl<'a, A> Container<'a, A> {
    /// Parses the fields, after the caller has parsed `attrs`: the errors inside attributes
    /// come in the order they are written.
    fn new(cx: &Ctxt, input: &'a DeriveInput, attrs: A, personal: bool) -> Self {
        Self {
            ident: &input.ident,
            attrs,
            data: Data::from_ast(cx, &input.data, personal),
            original: input,
        }
    }

    pub(crate) fn generics(&self) -> &'a syn::Generics {
        &self.original.generics
    }

    /// The stored name by default: `CandidateRegistered` is `candidate_registered`.
    fn name_or_default(&self, name: Option<&String>) -> String {
        name.cloned()
            .unwrap_or_else(|| snake_case(&self.ident.to_string()))
    }
}

impl<'a> Container<'a, attr::Event> {
    pub(crate) fn event(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        // `#[event(...)]` describes one event struct: the check rejects it on an enum, and a
        // union as a whole, so parsing it there would only add errors.
        let attrs = match input.data {
            syn::Data::Struct(_) => attr::Event::from_attrs(cx, &input.attrs),
            _ => attr::Event::default(),
        };
        Self::new(cx, input, attrs, true)
    }

    pub(crate) fn name(&self) -> String {
        self.name_or_default(self.attrs.name.as_ref())
    }

    pub(crate) fn version(&self) -> u32 {
        self.attrs.version.unwrap_or(1)
    }
}

impl<'a> Container<'a, attr::Command> {
    pub(crate) fn command(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::Command::from_attrs(cx, &input.attrs);
        Self::new(cx, input, attrs, true)
    }

    pub(crate) fn name(&self) -> String {
        self.name_or_default(self.attrs.name.as_ref())
    }
}

impl<'a> Container<'a, attr::Aggregate> {
    pub(crate) fn aggregate(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::Aggregate::from_attrs(cx, &input.attrs);
        Self::new(cx, input, attrs, false)
    }

    pub(crate) fn name(&self) -> String {
        self.name_or_default(self.attrs.name.as_ref())
    }
}

impl<'a> Container<'a, attr::PersonalData> {
    pub(crate) fn personal_data(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::PersonalData::from_attrs(cx, &input.attrs);
        Self::new(cx, input, attrs, false)
    }

    /// The kind of personal data, stored beside each value.
    pub(crate) fn kind(&self) -> String {
        self.name_or_default(self.attrs.name.as_ref())
    }
}

impl<'a> Container<'a, ()> {
    pub(crate) fn value(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        attr::value(cx, &input.attrs);
        Self::new(cx, input, (), false)
    }
}

/// A function under an attribute macro: the macro's parsed arguments `A`, and its parameters.
pub(crate) struct Function<'a, A> {
    pub(crate) args: A,
    pub(crate) item: &'a ItemFn,
    pub(crate) params: Vec<Param<'a>>,
}

pub(crate) enum Param<'a> {
    Receiver(&'a syn::Receiver),
    Typed(&'a Type),
}

impl<'a, A> Function<'a, A> {
    fn new(args: A, item: &'a ItemFn) -> Self {
        let params = item
            .sig
            .inputs
            .iter()
            .map(|input| match input {
                FnArg::Receiver(receiver) => Param::Receiver(receiver),
                FnArg::Typed(typed) => Param::Typed(&typed.ty),
            })
            .collect();
        Self { args, item, params }
    }

    /// The types of the parameters, `self` left out.
    pub(crate) fn types(&self) -> Vec<&'a Type> {
        self.params
            .iter()
            .filter_map(|param| match param {
                Param::Typed(ty) => Some(*ty),
                Param::Receiver(_) => None,
            })
            .collect()
    }
}

impl<'a> Function<'a, ()> {
    pub(crate) fn handler(cx: &Ctxt, args: &TokenStream, item: &'a ItemFn) -> Self {
        attr::handler(cx, args);
        Self::new((), item)
    }
}

impl<'a> Function<'a, attr::Consumer> {
    pub(crate) fn consumer(
        cx: &Ctxt,
        kind: ConsumerKind,
        args: TokenStream,
        item: &'a ItemFn,
    ) -> Self {
        Self::new(attr::Consumer::from_args(cx, kind, args), item)
    }
}

/// The item under an attribute macro, as a function. On anything else, the user's tokens come
/// back with the error, so editors keep working; `usage` says what the attribute goes on.
pub(crate) fn item_fn(item: TokenStream, usage: &str) -> Result<ItemFn, Fallback> {
    syn::parse2::<ItemFn>(item.clone()).map_err(|error| {
        let error = match syn::parse2::<syn::Item>(item.clone()) {
            // Another kind of item: say what the attribute goes on, rather than "expected `fn`".
            Ok(other) => syn::Error::new_spanned(other, usage),
            // Not an item at all: syn's error points at the syntax.
            Err(_) => error,
        };
        Fallback::item(error, item)
    })
}
