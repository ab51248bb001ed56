use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subject = nosuchfield)]
    email: Personal<Email>,
}

fn main() {}
