// Each mistake in `#[personal(...)]` is reported, not only the first.
use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal(subjcet = candidate, lookup, lookup, subject = "candidate")]
    email: Personal<Email>,
}

fn main() {}
