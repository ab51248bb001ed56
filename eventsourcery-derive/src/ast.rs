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
    /// `#[entity(...)]`: parsed on the named fields of `Entity`, `None` elsewhere.
    pub(crate) entity: Option<attr::EntityField>,
    pub(crate) original: &'a syn::Field,
}

/// Which field attributes a derive parses, on named fields only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldAttrs {
    None,
    /// `#[personal(...)]`, for the payload derives.
    Personal,
    /// `#[entity(...)]`, for `Entity`.
    Entity,
}

impl Field<'_> {
    /// The data subject of a personal field: the one it names, or else the type's `default`.
    pub(crate) fn subject<'s>(&'s self, default: Option<&'s Ident>) -> Option<&'s Ident> {
        self.personal.as_ref()?.subject.as_ref().or(default)
    }
}

impl<'a> Fields<'a> {
    /// `parse`: the field attributes to parse, on named fields only. A tuple struct is rejected
    /// as a whole by the derives that have field attributes, so its fields' attributes would
    /// only add noise.
    fn from_ast(cx: &Ctxt, fields: &'a syn::Fields, parse: FieldAttrs) -> Self {
        let style = match fields {
            syn::Fields::Named(_) => Style::Named,
            syn::Fields::Unnamed(f) if f.unnamed.len() == 1 => Style::Newtype,
            syn::Fields::Unnamed(_) => Style::Tuple,
            syn::Fields::Unit => Style::Unit,
        };
        let parse = if style == Style::Named {
            parse
        } else {
            FieldAttrs::None
        };
        let all = fields
            .iter()
            .map(|field| Field {
                ident: field.ident.as_ref(),
                ty: &field.ty,
                personal: if parse == FieldAttrs::Personal {
                    attr::Personal::from_attrs(cx, &field.attrs)
                } else {
                    None
                },
                entity: if parse == FieldAttrs::Entity {
                    attr::EntityField::from_attrs(cx, &field.attrs)
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
    fn from_ast(cx: &Ctxt, data: &'a syn::Data, parse: FieldAttrs) -> Self {
        match data {
            syn::Data::Struct(data) => Self::Struct(Fields::from_ast(cx, &data.fields, parse)),
            syn::Data::Enum(data) => Self::Enum(
                data.variants
                    .iter()
                    .map(|variant| Variant {
                        ident: &variant.ident,
                        fields: Fields::from_ast(cx, &variant.fields, FieldAttrs::None),
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
    fn new(cx: &Ctxt, input: &'a DeriveInput, attrs: A, parse: FieldAttrs) -> Self {
        Self {
            ident: &input.ident,
            attrs,
            data: Data::from_ast(cx, &input.data, parse),
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
        Self::new(cx, input, attrs, FieldAttrs::Personal)
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
        Self::new(cx, input, attrs, FieldAttrs::Personal)
    }

    pub(crate) fn name(&self) -> String {
        self.name_or_default(self.attrs.name.as_ref())
    }
}

impl<'a> Container<'a, attr::Aggregate> {
    pub(crate) fn aggregate(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::Aggregate::from_attrs(cx, &input.attrs);
        Self::new(cx, input, attrs, FieldAttrs::None)
    }

    pub(crate) fn name(&self) -> String {
        self.name_or_default(self.attrs.name.as_ref())
    }
}

impl<'a> Container<'a, attr::PersonalData> {
    pub(crate) fn personal_data(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::PersonalData::from_attrs(cx, &input.attrs);
        Self::new(cx, input, attrs, FieldAttrs::None)
    }

    /// The kind of personal data, stored beside each value.
    pub(crate) fn kind(&self) -> String {
        self.name_or_default(self.attrs.name.as_ref())
    }
}

impl<'a> Container<'a, ()> {
    pub(crate) fn value(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        attr::value(cx, &input.attrs);
        Self::new(cx, input, (), FieldAttrs::None)
    }
}

impl<'a> Container<'a, attr::Entity> {
    /// An entity's own `#[entity]` attributes go on its fields; on the type they are only
    /// found, for the check to reject.
    pub(crate) fn entity(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        Self::new(cx, input, attr::Entity, FieldAttrs::Entity)
    }

    /// The fields marked `#[entity(id)]`, in order: the check wants exactly one.
    pub(crate) fn id_fields(&self) -> Vec<&Field<'a>> {
        match &self.data {
            Data::Struct(fields) => fields
                .all
                .iter()
                .filter(|field| field.entity.as_ref().is_some_and(|e| e.id.is_some()))
                .collect(),
            _ => Vec::new(),
        }
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

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::{DeriveInput, ItemFn, parse_quote};

    use super::{Container, Data, Function, Param, Style};
    use crate::attr::{ConsumerKind, Ctxt};

    fn style(input: DeriveInput) -> Style {
        let cx = Ctxt::new();
        let cont = Container::value(&cx, &input);
        let Data::Struct(fields) = &cont.data else {
            panic!("a struct");
        };
        let style = fields.style;
        assert!(cx.messages().is_empty());
        style
    }

    #[test]
    fn fields_have_a_style() {
        assert_eq!(
            style(parse_quote!(
                struct A {
                    a: u8,
                }
            )),
            Style::Named
        );
        assert_eq!(
            style(parse_quote!(
                struct A {}
            )),
            Style::Named
        );
        assert_eq!(
            style(parse_quote!(
                struct A(u8);
            )),
            Style::Newtype
        );
        assert_eq!(
            style(parse_quote!(
                struct A(u8, u8);
            )),
            Style::Tuple
        );
        assert_eq!(
            style(parse_quote!(
                struct A();
            )),
            Style::Tuple
        );
        assert_eq!(
            style(parse_quote!(
                struct A;
            )),
            Style::Unit
        );
    }

    #[test]
    fn an_event_is_modelled_with_its_attributes_parsed() {
        let input: DeriveInput = parse_quote! {
            #[event(subject = candidate)]
            struct CandidateRegistered {
                candidate: PersonalKey,
                other: PersonalKey,
                #[personal(lookup)]
                email: Personal<Email>,
                #[personal(subject = other)]
                name: Personal<Name>,
                plain: u32,
            }
        };
        let cx = Ctxt::new();
        let cont = Container::event(&cx, &input);
        assert_eq!(cont.name(), "candidate_registered");
        assert_eq!(cont.version(), 1);
        let Data::Struct(fields) = &cont.data else {
            panic!("a struct");
        };
        let default = cont.attrs.subject.as_ref();
        let subjects: Vec<_> = fields
            .all
            .iter()
            .map(|f| f.subject(default).map(ToString::to_string))
            .collect();
        let candidate = Some("candidate".to_owned());
        assert_eq!(
            subjects,
            [None, None, candidate, Some("other".to_owned()), None]
        );
        let lookups: Vec<_> = fields
            .all
            .iter()
            .map(|f| f.personal.as_ref().is_some_and(|p| p.lookup))
            .collect();
        assert_eq!(lookups, [false, false, true, false, false]);
        assert!(cx.messages().is_empty());
    }

    #[test]
    fn explicit_names_and_versions_replace_the_defaults() {
        let input: DeriveInput = parse_quote! {
            #[event(name = "registered", version = 3)]
            struct CandidateRegistered {}
        };
        let cx = Ctxt::new();
        let cont = Container::event(&cx, &input);
        assert_eq!((cont.name(), cont.version()), ("registered".to_owned(), 3));
        assert!(cx.messages().is_empty());
    }

    #[test]
    fn attributes_that_the_check_rejects_as_a_whole_are_not_parsed() {
        // An enum's `#[event]` and a tuple struct's `#[personal]`: their contents add no errors.
        let inputs: [DeriveInput; 2] = [
            parse_quote! {
                #[event(nmae = "x")]
                enum Events { A(A) }
            },
            parse_quote! {
                struct Registered(#[personal(subjcet = x)] Personal<Email>);
            },
        ];
        for input in &inputs {
            let cx = Ctxt::new();
            let _ = Container::event(&cx, input);
            assert!(cx.messages().is_empty());
        }
    }

    #[test]
    fn errors_inside_attributes_are_reported_while_modelling() {
        let input: DeriveInput = parse_quote! {
            #[event(nmae = "x", version = 0)]
            struct E {
                #[personal(subject = "k", lookup, lookup)]
                a: Personal<Email>,
            }
        };
        let cx = Ctxt::new();
        let cont = Container::event(&cx, &input);
        let Data::Struct(fields) = &cont.data else {
            panic!("a struct");
        };
        assert!(fields.all[0].personal.as_ref().is_some_and(|p| p.malformed));
        assert_eq!(
            cx.messages(),
            [
                "unknown `event` attribute `nmae`; expected one of `name`, `version`, `subject`",
                "schema versions start at 1",
                "expected field name: `subject = field`",
                "duplicate `lookup` attribute",
            ]
        );
    }

    #[test]
    fn a_function_is_modelled_with_its_parameters() {
        let item: ItemFn = parse_quote!(
            async fn on(&self, event: E, tx: &mut Tx<'_>) {}
        );
        let cx = Ctxt::new();
        let args = quote!(consumer = "seats", reset = clear);
        let function = Function::consumer(&cx, ConsumerKind::Projection, args, &item);
        assert!(matches!(function.params[0], Param::Receiver(_)));
        assert_eq!(function.types().len(), 2);
        let args = &function.args;
        assert_eq!(
            args.consumer.as_ref().map(syn::LitStr::value),
            Some("seats".to_owned())
        );
        assert_eq!(
            args.reset.as_ref().map(ToString::to_string),
            Some("clear".to_owned())
        );
        assert!(cx.messages().is_empty());
    }

    #[test]
    fn an_item_that_is_no_function_comes_back_with_the_usage() {
        let item = quote!(
            struct NotAFunction;
        );
        let Err(fallback) = super::item_fn(item, "goes on an `async fn`") else {
            panic!("not a function");
        };
        let tokens = fallback.into_compile_error().to_string();
        assert!(tokens.starts_with("struct NotAFunction ;"), "{tokens}");
        assert!(tokens.contains("\"goes on an `async fn`\""), "{tokens}");
    }
}
