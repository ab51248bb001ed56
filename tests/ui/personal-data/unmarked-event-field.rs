use eventsourcery::{DomainEvent, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    email: Email,
}

fn main() {}
