use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    email: Personal<Email>,
}

fn main() {}
