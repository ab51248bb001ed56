use eventsourcery::{Command, PersonalData, PersonalKey};

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(Command, Clone)]
struct RegisterCandidate {
    candidate: PersonalKey,
    email: Email,
}

fn main() {}
