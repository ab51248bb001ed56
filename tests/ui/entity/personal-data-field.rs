use eventsourcery::value::Entity;
use eventsourcery::{PersonalData, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct PatientId(u32);

#[derive(PersonalData, Clone)]
struct Name(String);

#[derive(Entity)]
struct Patient {
    #[entity(id)]
    id: PatientId,
    name: Name,
}

fn main() {}
