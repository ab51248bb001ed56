use eventsourcery::value::Entity;
use eventsourcery::{DomainEvent, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct BedId(u32);

#[derive(Entity)]
struct Bed {
    id: BedId,
    occupied: bool,
}

// Only the derive's error is reported: the event holding a `Bed` adds none.
#[derive(DomainEvent)]
struct BedAdded {
    bed: Bed,
}

fn main() {}
