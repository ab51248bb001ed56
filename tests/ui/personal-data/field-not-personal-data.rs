use eventsourcery::{DomainEvent, PersonalKey};

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subject = candidate)]
    email: String,
}

fn main() {}
