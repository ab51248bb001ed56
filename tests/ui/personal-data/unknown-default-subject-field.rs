use eventsourcery::{DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData)]
struct Email(String);

#[derive(PersonalData)]
struct FullName(String);

// One error for the missing field, not one per personal field that relies on it.
#[derive(DomainEvent)]
#[event(subject = nosuchfield)]
struct CandidateRegistered {
    candidate: PersonalKey,
    #[personal]
    email: Personal<Email>,
    #[personal]
    name: Personal<FullName>,
}

fn main() {}
