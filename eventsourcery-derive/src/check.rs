//! The rules on the input as a whole (serde's `check.rs`, thiserror's `valid.rs`), checked on
//! the model once every attribute is parsed: the kind of item a macro goes on, the shape of its
//! fields, generics, attributes where they have no meaning, and the fields that attributes
//! name. Each error is spanned on the smallest offending token; the expansions then rely on
//! what is checked here.

use syn::Ident;
use syn::ext::IdentExt;

use crate::ast::{Container, Data, Fields, Function, Param, Style};
use crate::attr::{self, Ctxt};

pub(crate) fn event(cx: &Ctxt, cont: &Container<attr::Event>) {
    not_generic(
        cx,
        cont,
        "a domain event cannot be generic: its stored name must name one type",
    );
    match &cont.data {
        Data::Struct(fields) => payload(cx, fields, cont.attrs.subject.as_ref(), attr::EVENT),
        Data::Enum(variants) => {
            reject(
                cx,
                &cont.original.attrs,
                attr::EVENT,
                "`#[event(...)]` goes on each event struct; an enum of events takes its names from its variants' types",
            );
            for variant in variants {
                if variant.fields.style != Style::Newtype {
                    cx.error(
                        variant.original,
                        "each variant of an event enum wraps one event struct: `Registered(CandidateRegistered)`",
                    );
                }
            }
        }
        Data::Union(data) => cx.error(
            data.union_token,
            "DomainEvent can be derived for a struct or an enum of event structs, not a union",
        ),
    }
}

pub(crate) fn command(cx: &Ctxt, cont: &Container<attr::Command>) {
    not_generic(
        cx,
        cont,
        "a command cannot be generic: its logged name must name one type",
    );
    match &cont.data {
        Data::Struct(fields) => payload(cx, fields, cont.attrs.subject.as_ref(), attr::COMMAND),
        _ => cx.error(cont.ident, "Command can be derived for a struct only"),
    }
}

/// The fields of an event or a command, stored in a payload under their names: each personal
/// field with a data subject that is one of them. `attr_name` is the type's own attribute.
fn payload(cx: &Ctxt, fields: &Fields, default_subject: Option<&Ident>, attr_name: &str) {
    if !matches!(fields.style, Style::Named | Style::Unit) {
        cx.error(
            fields.original,
            "expected named fields: the payload stores each field under its name",
        );
    }
    let names = fields.names();
    if let Some(subject) = default_subject
        && !names.contains(&subject)
    {
        cx.error(
            subject,
            format!("no field `{subject}` to be the data subject"),
        );
    }
    for field in &fields.all {
        let Some(ident) = field.ident else { continue };
        reject(
            cx,
            &field.original.attrs,
            attr_name,
            &format!("`{attr_name}` attributes go on the type, not on its fields"),
        );
        let Some(personal) = &field.personal else {
            continue;
        };
        match field.subject(default_subject) {
            None if !personal.malformed => {
                let key = ident.unraw();
                cx.error(
                    &personal.tokens,
                    format!(
                        "personal field `{key}` needs a data subject: write `#[personal(subject = field)]` naming a `PersonalKey` field, or `#[{attr_name}(subject = field)]` once on the type"
                    ),
                );
            }
            // A missing default subject is reported once, above.
            Some(subject) if !names.contains(&subject) && personal.subject.is_some() => {
                cx.error(
                    subject,
                    format!("no field `{subject}` to be the data subject"),
                );
            }
            _ => {}
        }
    }
}

pub(crate) fn aggregate(cx: &Ctxt, cont: &Container<attr::Aggregate>) {
    if !matches!(cont.data, Data::Struct(_)) {
        cx.error(
            cont.ident,
            "Aggregate can be derived for a struct only: its fields hold the aggregate's state",
        );
    }
    not_generic(
        cx,
        cont,
        "an aggregate cannot be generic: its stream name must name one type",
    );
    let attrs = &cont.attrs;
    let attr = cont
        .original
        .attrs
        .iter()
        .find(|a| a.path().is_ident(attr::AGGREGATE));
    match attr {
        None => cx.error(
            cont.ident,
            "missing `#[aggregate(id = ..., events(...))]`: name the id type and the events this aggregate applies",
        ),
        Some(_) if attrs.unknown_key => {}
        Some(attr) => {
            if attrs.id.is_none() {
                cx.error(
                    attr,
                    "missing `id = ...` in `#[aggregate(...)]`: name the aggregate's id type",
                );
            }
            if attrs.events.is_empty() {
                cx.error(
                    attr,
                    "missing `events(...)` in `#[aggregate(...)]`: list the events this aggregate applies",
                );
            }
        }
    }
}

pub(crate) fn value(cx: &Ctxt, cont: &Container<()>) {
    not_generic(cx, cont, "a serializable value cannot be generic");
    match &cont.data {
        Data::Struct(fields) => match fields.style {
            Style::Newtype => {}
            Style::Named if !fields.all.is_empty() => {}
            style => {
                let message = "SerializableValue needs a newtype (`struct VoucherId(Uuid)`) or a struct with named fields";
                if style == Style::Unit {
                    // A unit struct has no field tokens to point at.
                    cx.error(cont.ident, message);
                } else {
                    cx.error(fields.original, message);
                }
            }
        },
        Data::Enum(variants) => {
            for variant in variants {
                if variant.fields.style != Style::Unit {
                    cx.error(
                        variant.original,
                        "a value enum has unit variants only; its string form is the variant name",
                    );
                }
            }
            if variants.is_empty() {
                cx.error(cont.ident, "a value enum needs at least one variant");
            }
        }
        Data::Union(data) => cx.error(
            data.union_token,
            "SerializableValue cannot be derived for a union",
        ),
    }
}

pub(crate) fn entity(cx: &Ctxt, cont: &Container<attr::Entity>) {
    not_generic(cx, cont, "an entity cannot be generic");
    reject(
        cx,
        &cont.original.attrs,
        attr::ENTITY,
        "`#[entity(id)]` goes on the entity's id field, not on the type",
    );
    let fields = match &cont.data {
        Data::Struct(fields) if fields.style == Style::Named => fields,
        Data::Struct(fields) if fields.style != Style::Unit => {
            return cx.error(
                fields.original,
                "Entity needs a struct with named fields, one of them marked `#[entity(id)]`: `struct Bed { #[entity(id)] id: BedId, ... }`",
            );
        }
        _ => {
            return cx.error(
                cont.ident,
                "Entity can be derived for a struct with named fields only, one of them marked `#[entity(id)]`: `struct Bed { #[entity(id)] id: BedId, ... }`",
            );
        }
    };
    let ids = cont.id_fields();
    match ids.as_slice() {
        [] => {
            // A field whose `#[entity(...)]` had errors of its own was most likely meant to
            // be the id: those errors are already reported.
            if fields.all.iter().all(|field| field.entity.is_none()) {
                cx.error(
                    cont.ident,
                    "an entity needs an id: mark the field that identifies it `#[entity(id)]`; entities are equal when their ids are",
                );
            }
        }
        [first, rest @ ..] => {
            let first_name = first.ident.map(|ident| ident.unraw().to_string());
            for field in rest {
                let Some(id) = field.entity.as_ref().and_then(|e| e.id.as_ref()) else {
                    continue;
                };
                cx.error(
                    id,
                    format!(
                        "an entity has one id field, and `{}` is already marked `#[entity(id)]`: for an identity made of several parts, make them one value type (`#[derive(SerializableValue)] struct BedId {{ ward: WardId, number: u32 }}`)",
                        first_name.as_deref().unwrap_or("another field"),
                    ),
                );
            }
        }
    }
}

pub(crate) fn personal_data(cx: &Ctxt, cont: &Container<attr::PersonalData>) {
    not_generic(cx, cont, "a personal data type cannot be generic");
    match &cont.data {
        Data::Struct(fields) => match fields.style {
            Style::Newtype => {}
            Style::Named if !fields.all.is_empty() => {}
            _ => cx.error(
                fields.original,
                "PersonalData needs a newtype (`struct Email(String)`) or a struct with named fields",
            ),
        },
        _ => cx.error(
            cont.ident,
            "PersonalData can be derived for a struct only: a newtype (`struct Email(String)`) or a struct with named fields",
        ),
    }
}

pub(crate) fn handler(cx: &Ctxt, function: &Function<()>) {
    async_free_fn(
        cx,
        function,
        "command handler",
        ": the bus calls it for one command type",
        "a command handler takes its command as its first parameter: `async fn handle(command: MyCommand, ...)`",
    );
}

pub(crate) fn consumer(cx: &Ctxt, function: &Function<attr::Consumer>) {
    let attr_name = function.args.kind.attr();
    if !function.args.named {
        // On the attribute, where it goes.
        cx.error_at(
            proc_macro2::Span::call_site(),
            format!("missing `consumer = \"...\"`: `#[eventsourcery::{attr_name}(consumer = \"name\")]` names the checkpoint"),
        );
    }
    async_free_fn(
        cx,
        function,
        attr_name,
        "",
        &format!("a {attr_name} takes the event it handles as its first parameter"),
    );
}

/// A function the runtime calls: an `async fn`, not generic (`why` says why not, after a
/// `:`), not a method, with at least the parameter that `first` asks for.
fn async_free_fn<A>(cx: &Ctxt, function: &Function<A>, what: &str, why: &str, first: &str) {
    let sig = &function.item.sig;
    if sig.asyncness.is_none() {
        cx.error(sig.fn_token, format!("a {what} must be an `async fn`"));
    }
    if !sig.generics.params.is_empty() {
        cx.error(&sig.generics, format!("a {what} cannot be generic{why}"));
    }
    for param in &function.params {
        if let Param::Receiver(receiver) = param {
            cx.error(
                receiver,
                format!("a {what} is a free function, not a method"),
            );
        }
    }
    if function.params.is_empty() {
        cx.error(&sig.ident, first);
    }
}

fn not_generic<A>(cx: &Ctxt, cont: &Container<A>, message: &str) {
    let generics = cont.generics();
    if !generics.params.is_empty() {
        cx.error(generics, message);
    }
}

/// Rejects an attribute where it has no meaning.
fn reject(cx: &Ctxt, attrs: &[syn::Attribute], name: &str, message: &str) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(name)) {
        cx.error(attr, message);
    }
}

#[cfg(test)]
mod tests;
