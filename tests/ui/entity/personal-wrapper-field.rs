use eventsourcery::value::Entity;
use eventsourcery::{Personal, PersonalData, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct PatientId(u32);

#[derive(PersonalData, Clone)]
struct Name(String);

#[derive(Entity)]
struct Patient {
    #[entity(id)]
    id: PatientId,
    name: Personal<Name>,
}

fn main() {}
