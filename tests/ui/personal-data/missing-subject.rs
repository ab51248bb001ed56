use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal]
    email: Personal<Email>,
}

fn main() {}
