use eventsourcery::{PersonalData, SerializableValue};

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(SerializableValue, Clone, Debug)]
struct WorkEmail(Email);

fn main() {}
