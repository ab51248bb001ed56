use eventsourcery::{DomainEvent, Personal, PersonalKey};

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subject = candidate)]
    email: Personal<String>,
}

fn main() {}
