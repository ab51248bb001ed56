use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subjcet = candidate)]
    email: Personal<Email>,
}

fn main() {}
