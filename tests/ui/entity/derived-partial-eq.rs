use eventsourcery::value::Entity;

// Equality is by id, from the derive: a derived `PartialEq` would compare every field.
#[derive(Entity, PartialEq)]
struct Bed {
    #[entity(id)]
    number: u32,
    occupied: bool,
}

fn main() {}
