use eventsourcery::{PersonalData, SerializableValue};

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(SerializableValue, Clone, Debug)]
struct Contact {
    email: Email,
    note: String,
}

fn main() {}
