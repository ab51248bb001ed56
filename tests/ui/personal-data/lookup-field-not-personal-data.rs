use eventsourcery::{DomainEvent, PersonalKey};

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subject = candidate, lookup)]
    email: String,
}

fn main() {}
