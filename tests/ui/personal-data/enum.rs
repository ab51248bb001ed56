use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
enum Contact {
    Email(String),
    Phone(String),
}

// Only the derive's error is reported: the event using `Contact` adds none.
#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subject = candidate)]
    contact: Personal<Contact>,
}

fn main() {}
