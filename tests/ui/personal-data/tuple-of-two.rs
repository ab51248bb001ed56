use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct FullName(String, String);

// Only the derive's error is reported: the event using `FullName` adds none.
#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subject = candidate)]
    name: Personal<FullName>,
}

fn main() {}
