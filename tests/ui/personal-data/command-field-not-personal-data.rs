use eventsourcery::{Command, PersonalKey};

#[derive(Command, Clone)]
struct RegisterCandidate {
    candidate: PersonalKey,
    #[personal(subject = candidate)]
    email: String,
}

fn main() {}
