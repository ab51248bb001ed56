use eventsourcery::SerializableValue;
use eventsourcery::value::Entity;

#[derive(SerializableValue, Clone, Debug)]
struct WardId(u32);

#[derive(Entity)]
struct Bed {
    #[entity(id)]
    ward: WardId,
    #[entity(id)]
    number: u32,
}

fn main() {}
