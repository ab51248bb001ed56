//! The rules of `check`, each on a minimal input.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, ItemFn, parse_quote};

use crate::ast::{Container, Function};
use crate::attr::{ConsumerKind, Ctxt};

fn event(input: DeriveInput) -> Vec<String> {
    let cx = Ctxt::new();
    super::event(&cx, &Container::event(&cx, &input));
    cx.messages()
}

fn command(input: DeriveInput) -> Vec<String> {
    let cx = Ctxt::new();
    super::command(&cx, &Container::command(&cx, &input));
    cx.messages()
}

fn aggregate(input: DeriveInput) -> Vec<String> {
    let cx = Ctxt::new();
    super::aggregate(&cx, &Container::aggregate(&cx, &input));
    cx.messages()
}

fn value(input: DeriveInput) -> Vec<String> {
    let cx = Ctxt::new();
    super::value(&cx, &Container::value(&cx, &input));
    cx.messages()
}

fn entity(input: DeriveInput) -> Vec<String> {
    let cx = Ctxt::new();
    super::entity(&cx, &Container::entity(&cx, &input));
    cx.messages()
}

fn personal_data(input: DeriveInput) -> Vec<String> {
    let cx = Ctxt::new();
    super::personal_data(&cx, &Container::personal_data(&cx, &input));
    cx.messages()
}

fn handler(item: ItemFn) -> Vec<String> {
    let cx = Ctxt::new();
    super::handler(&cx, &Function::handler(&cx, &TokenStream::new(), &item));
    cx.messages()
}

fn consumer(kind: ConsumerKind, args: TokenStream, item: ItemFn) -> Vec<String> {
    let cx = Ctxt::new();
    super::consumer(&cx, &Function::consumer(&cx, kind, args, &item));
    cx.messages()
}

const NO_SUBJECT: &str = "personal field `email` needs a data subject: write `#[personal(subject = field)]` naming a `PersonalKey` field, or `#[event(subject = field)]` once on the type";

#[test]
fn personal_fields_name_a_subject_among_the_fields() {
    assert!(
        event(parse_quote! {
            #[event(subject = candidate)]
            struct E { candidate: PersonalKey, #[personal] email: Personal<Email> }
        })
        .is_empty()
    );
    assert_eq!(
        event(parse_quote!(
            struct E {
                #[personal]
                email: Personal<Email>,
            }
        )),
        [NO_SUBJECT]
    );
    assert_eq!(
        event(parse_quote!(
            struct E {
                #[personal(subject = who)]
                email: Personal<Email>,
            }
        )),
        ["no field `who` to be the data subject"]
    );
}

#[test]
fn a_missing_default_subject_is_reported_once() {
    assert_eq!(
        event(parse_quote! {
            #[event(subject = who)]
            struct E { #[personal] email: Personal<Email>, #[personal] name: Personal<Name> }
        }),
        ["no field `who` to be the data subject"]
    );
}

#[test]
fn a_malformed_personal_attribute_is_not_also_missing_its_subject() {
    assert_eq!(
        event(parse_quote!(
            struct E {
                #[personal(subjcet = k)]
                email: Personal<Email>,
            }
        )),
        ["unknown `personal` attribute `subjcet`; expected one of `subject`, `lookup`"]
    );
}

#[test]
fn attributes_of_the_type_do_not_go_on_fields() {
    assert_eq!(
        command(parse_quote!(
            struct C {
                #[command(name = "x")]
                a: u8,
            }
        )),
        ["`command` attributes go on the type, not on its fields"]
    );
    assert_eq!(
        event(parse_quote!(
            #[event(name = "e")]
            enum E {
                A(A),
            }
        )),
        [
            "`#[event(...)]` goes on each event struct; an enum of events takes its names from its variants' types"
        ]
    );
}

#[test]
fn payloads_have_named_fields_and_no_generics() {
    assert_eq!(
        event(parse_quote!(
            struct E(u8, u8);
        )),
        ["expected named fields: the payload stores each field under its name"]
    );
    assert!(
        event(parse_quote!(
            struct E;
        ))
        .is_empty()
    );
    assert_eq!(
        event(parse_quote!(
            enum E {
                A(A),
                B { b: B },
                C,
            }
        ))
        .len(),
        2
    );
    assert_eq!(
        event(parse_quote!(union E { a: u8 })),
        ["DomainEvent can be derived for a struct or an enum of event structs, not a union"]
    );
    assert_eq!(
        command(parse_quote!(
            enum C {
                A,
            }
        )),
        ["Command can be derived for a struct only"]
    );
    assert_eq!(
        command(parse_quote!(
            struct C<T> {
                t: T,
            }
        )),
        ["a command cannot be generic: its logged name must name one type"]
    );
}

#[test]
fn errors_inside_attributes_come_before_errors_about_the_input() {
    assert_eq!(
        event(parse_quote! {
            #[event(nmae = "x")]
            struct E<T> { #[personal] email: Personal<T> }
        }),
        [
            "unknown `event` attribute `nmae`; expected one of `name`, `version`, `subject`",
            "a domain event cannot be generic: its stored name must name one type",
            NO_SUBJECT,
        ]
    );
}

#[test]
fn an_aggregate_names_its_id_and_events() {
    assert!(
        aggregate(parse_quote!(
            #[aggregate(id = Id, events(A))]
            struct A {}
        ))
        .is_empty()
    );
    assert_eq!(
        aggregate(parse_quote!(
            struct A {}
        )),
        [
            "missing `#[aggregate(id = ..., events(...))]`: name the id type and the events this aggregate applies"
        ]
    );
    assert_eq!(
        aggregate(parse_quote!(
            #[aggregate(name = "a")]
            struct A {}
        )),
        [
            "missing `id = ...` in `#[aggregate(...)]`: name the aggregate's id type",
            "missing `events(...)` in `#[aggregate(...)]`: list the events this aggregate applies",
        ]
    );
    // The misspelled key is most likely the one that looks missing: said once.
    assert_eq!(
        aggregate(parse_quote!(
            #[aggregate(idd = Id, events(A))]
            struct A {}
        )),
        [
            "unknown `aggregate` attribute `idd`; expected one of `id`, `events`, `name`, `snapshot`, `cache`"
        ]
    );
    assert_eq!(
        aggregate(parse_quote!(
            #[aggregate(id = Id, events(A))]
            enum A {}
        )),
        ["Aggregate can be derived for a struct only: its fields hold the aggregate's state"]
    );
}

#[test]
fn values_are_newtypes_named_structs_or_unit_enums() {
    assert!(
        value(parse_quote!(
            struct Id(Uuid);
        ))
        .is_empty()
    );
    assert!(
        value(parse_quote!(
            struct Money {
                cents: u64,
            }
        ))
        .is_empty()
    );
    assert!(
        value(parse_quote!(
            enum Colour {
                Red,
                Green,
            }
        ))
        .is_empty()
    );
    let shape = "SerializableValue needs a newtype (`struct VoucherId(Uuid)`) or a struct with named fields";
    for input in [
        parse_quote!(
            struct V;
        ),
        parse_quote!(
            struct V(u8, u8);
        ),
        parse_quote!(
            struct V {}
        ),
    ] {
        assert_eq!(value(input), [shape]);
    }
    assert_eq!(
        value(parse_quote!(
            enum V {
                A(u8),
            }
        )),
        ["a value enum has unit variants only; its string form is the variant name"]
    );
    assert_eq!(
        value(parse_quote!(
            enum V {}
        )),
        ["a value enum needs at least one variant"]
    );
    assert_eq!(
        value(parse_quote!(
            #[value(x)]
            struct V(u8);
        )),
        ["`#[value(...)]` takes no options"]
    );
}

#[test]
fn personal_data_is_a_newtype_or_a_named_struct() {
    assert!(
        personal_data(parse_quote!(
            struct Email(String);
        ))
        .is_empty()
    );
    assert_eq!(
        personal_data(parse_quote!(
            struct P(u8, u8);
        ))
        .len(),
        1
    );
    assert_eq!(
        personal_data(parse_quote!(
            enum P {
                A,
            }
        ))
        .len(),
        1
    );
    assert_eq!(
        personal_data(parse_quote!(
            struct P<T>(T);
        )),
        ["a personal data type cannot be generic"]
    );
}

#[test]
fn a_handler_is_an_async_free_function_taking_its_command() {
    assert!(
        handler(parse_quote!(
            async fn h(c: C, r: Repository<A>) {}
        ))
        .is_empty()
    );
    assert_eq!(
        handler(parse_quote!(
            fn h<T>(&self) {}
        )),
        [
            "a command handler must be an `async fn`",
            "a command handler cannot be generic: the bus calls it for one command type",
            "a command handler is a free function, not a method",
        ]
    );
    assert_eq!(
        handler(parse_quote!(
            async fn h() {}
        )),
        [
            "a command handler takes its command as its first parameter: `async fn handle(command: MyCommand, ...)`"
        ]
    );
}

#[test]
fn a_consumer_is_named_and_takes_its_event() {
    let listener = ConsumerKind::Listener;
    assert!(
        consumer(
            listener,
            quote!(consumer = "mail"),
            parse_quote!(
                async fn l(e: E) {}
            )
        )
        .is_empty()
    );
    assert_eq!(
        consumer(
            listener,
            TokenStream::new(),
            parse_quote!(
                async fn l() {}
            )
        ),
        [
            "missing `consumer = \"...\"`: `#[eventsourcery::listener(consumer = \"name\")]` names the checkpoint",
            "a listener takes the event it handles as its first parameter",
        ]
    );
    // Written wrongly is not also missing.
    assert_eq!(
        consumer(
            listener,
            quote!(consumer = mail),
            parse_quote!(
                async fn l(e: E) {}
            )
        ),
        ["expected a string: `consumer = \"...\"`"]
    );
    assert_eq!(
        consumer(
            listener,
            quote!(consumer = "mail", reset = clear),
            parse_quote!(
                async fn l(e: E) {}
            )
        ),
        [
            "`reset` is for projections, which have a read model to clear on a rebuild; a listener takes only `consumer = \"...\"` and `partitions = N`"
        ]
    );
    for (partitions, errors) in [
        (quote!(partitions = 0), vec!["`partitions` takes 1 to 1024"]),
        (
            quote!(partitions = 1025),
            vec!["`partitions` takes 1 to 1024"],
        ),
        (
            quote!(partitions = "8"),
            vec!["expected a whole number: `partitions = 1`"],
        ),
        (quote!(partitions = 8), vec![]),
    ] {
        assert_eq!(
            consumer(
                listener,
                quote!(consumer = "mail", #partitions),
                parse_quote!(
                    async fn l(e: E) {}
                )
            ),
            errors,
            "{partitions}"
        );
    }
}

const ENTITY_SHAPE: &str = "Entity can be derived for a struct with named fields only, one of them marked `#[entity(id)]`: `struct Bed { #[entity(id)] id: BedId, ... }`";

#[test]
fn entities_are_named_structs_with_one_id_field() {
    assert!(
        entity(parse_quote! {
            struct Bed { #[entity(id)] id: BedId, occupied: bool }
        })
        .is_empty()
    );
    assert_eq!(
        entity(parse_quote! {
            struct Bed { id: BedId }
        }),
        [
            "an entity needs an id: mark the field that identifies it `#[entity(id)]`; entities are equal when their ids are"
        ]
    );
    assert_eq!(
        entity(parse_quote! {
            struct Bed { #[entity(id)] ward: WardId, #[entity(id)] number: u32 }
        }),
        [
            "an entity has one id field, and `ward` is already marked `#[entity(id)]`: for an identity made of several parts, make them one value type (`#[derive(SerializableValue)] struct BedId { ward: WardId, number: u32 }`)"
        ]
    );
    assert_eq!(
        entity(parse_quote!(
            struct Bed(BedId);
        )),
        [
            "Entity needs a struct with named fields, one of them marked `#[entity(id)]`: `struct Bed { #[entity(id)] id: BedId, ... }`"
        ]
    );
    assert_eq!(
        entity(parse_quote!(
            enum Bed {
                Free,
            }
        )),
        [ENTITY_SHAPE]
    );
    assert_eq!(
        entity(parse_quote!(
            struct Bed;
        )),
        [ENTITY_SHAPE]
    );
    assert_eq!(
        entity(parse_quote! {
            struct Bed<T> { #[entity(id)] id: T }
        }),
        ["an entity cannot be generic"]
    );
}

#[test]
fn entity_attributes_are_checked() {
    assert_eq!(
        entity(parse_quote! {
            #[entity(id)]
            struct Bed { id: BedId }
        }),
        [
            "`#[entity(id)]` goes on the entity's id field, not on the type",
            "an entity needs an id: mark the field that identifies it `#[entity(id)]`; entities are equal when their ids are",
        ]
    );
    // A malformed `#[entity]` is its own error, not also a missing id.
    assert_eq!(
        entity(parse_quote! {
            struct Bed { #[entity(idd)] id: BedId }
        }),
        ["unknown `entity` attribute `idd`; expected `id`"]
    );
    assert_eq!(
        entity(parse_quote! {
            struct Bed { #[entity] id: BedId }
        }),
        ["expected `#[entity(id)]`: the attribute marks the entity's id field"]
    );
    assert_eq!(
        entity(parse_quote! {
            struct Bed { #[entity(id = number)] id: BedId }
        }),
        ["`id` takes no value: write `#[entity(id)]`"]
    );
    assert_eq!(
        entity(parse_quote! {
            struct Bed { #[entity(id, id)] id: BedId }
        }),
        ["duplicate `id` attribute"]
    );
}
