use eventsourcery::{DomainEvent, PersonalData};

#[derive(PersonalData, Clone)]
struct Email(String);

// A plain serde type would put the email in the payload of the event below in plain text.
#[derive(serde::Serialize, serde::Deserialize)]
struct Contact {
    email: Email,
}

#[derive(DomainEvent)]
struct ContactAdded {
    contact: Contact,
}

fn main() {}
