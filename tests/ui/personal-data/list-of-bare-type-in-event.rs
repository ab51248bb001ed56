use eventsourcery::{DomainEvent, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subject = candidate)]
    emails: Vec<Email>,
}

fn main() {}
