//! The guide, one page per topic; every example on these pages is a doctest that compiles.
//!
//! Read them in this order for a first project, or jump to the one you need:
//!
//! 1. [Values and ids](values_and_ids): `#[derive(SerializableValue)]`, ids and `generate()`.
//! 2. [Events](events): `#[derive(DomainEvent)]`, names, schema versions and upcasters.
//! 3. [Aggregates](aggregates): `#[derive(Aggregate)]`, `Apply`, repositories, snapshots and
//!    the aggregate cache.
//! 4. [Commands and handlers](commands_and_handlers): `#[derive(Command)]`,
//!    `#[eventsourcery::handler]`, handler parameters, retries, start-up checks, and mapping
//!    [`CommandError`](crate::CommandError) to HTTP statuses.
//! 5. [Choosing a store](choosing_a_store): memory, SQLite or PostgreSQL, and their tables.
//! 6. [Personal data](personal_data): personal values in events and commands, where they are
//!    stored, erasure and what it guarantees, data derived from personal data, key rotation
//!    and the blind index.
//! 7. [Configuration](configuration): the environment variables and their defaults.
//! 8. [Deploying the three stores](deploying_the_three_stores): what each store holds if
//!    stolen, and TLS.
//! 9. [Consumers](consumers): listeners, process managers and projections; scaling out, and
//!    publishing to NATS JetStream.
//! 10. [Testing](testing): given/when/then scenarios for your domain.
//! 11. [Operating](operating): the ops command line, metrics and health.
//!
//! The layers of the crate and what each may use are in the
//! [crate docs](crate#architecture).

pub mod values_and_ids {
    #![doc = include_str!("values_and_ids.md")]
}

pub mod events {
    #![doc = include_str!("events.md")]
}

pub mod aggregates {
    #![doc = include_str!("aggregates.md")]
}

pub mod commands_and_handlers {
    #![doc = include_str!("commands_and_handlers.md")]
}

pub mod choosing_a_store {
    #![doc = include_str!("choosing_a_store.md")]
}

pub mod personal_data {
    #![doc = include_str!("personal_data.md")]
}

pub mod configuration {
    #![doc = include_str!("configuration.md")]
}

pub mod deploying_the_three_stores {
    #![doc = include_str!("deploying_the_three_stores.md")]
}

pub mod consumers {
    #![doc = include_str!("consumers.md")]
}

pub mod operating {
    #![doc = include_str!("operating.md")]
}

pub mod testing {
    #![cfg_attr(feature = "testkit", doc = include_str!("testing.md"))]
    #![cfg_attr(
        not(feature = "testkit"),
        doc = "Testing your domain: given/when/then scenarios, with the `testkit` feature."
    )]
}
