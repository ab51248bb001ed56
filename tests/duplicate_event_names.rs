//! Two event types claiming one name are reported when the bus is built, naming both.
//! (A test binary of its own: the registry is program-wide.)

use eventsourcery::event::EventRegistry;
use eventsourcery::event::RegistryError;
use eventsourcery::{CommandBus, DomainEvent, MemoryStore};

mod billing {
    #[derive(eventsourcery::DomainEvent)]
    #[event(name = "invoice_sent")]
    pub struct InvoiceSent {
        pub number: u32,
    }
}

mod mailing {
    #[derive(eventsourcery::DomainEvent)]
    #[event(name = "invoice_sent")]
    pub struct MailSent {
        pub to: String,
    }
}

#[test]
fn building_the_bus_names_both_types() {
    let error = CommandBus::builder(MemoryStore::new()).build().unwrap_err();
    let RegistryError::DuplicateEventName {
        name,
        first,
        second,
    } = &error
    else {
        panic!("expected a duplicate name error, got {error}");
    };
    assert_eq!(*name, "invoice_sent");
    assert!(first.ends_with("billing::InvoiceSent"), "{first}");
    assert!(second.ends_with("mailing::MailSent"), "{second}");
    let message = error.to_string();
    assert!(
        message.contains("billing::InvoiceSent") && message.contains("mailing::MailSent"),
        "{message}"
    );
    assert_eq!(EventRegistry::global().check().unwrap_err(), error);
    let _ = (
        billing::InvoiceSent { number: 1 }.event_name(),
        mailing::MailSent { to: String::new() }.event_name(),
    );
}
