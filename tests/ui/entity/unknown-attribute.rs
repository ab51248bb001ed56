use eventsourcery::value::Entity;

#[derive(Entity)]
#[entity(id)]
struct Bed {
    #[entity(key)]
    number: u32,
}

fn main() {}
