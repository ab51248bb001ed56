use eventsourcery::value::Entity;

#[derive(Entity)]
struct Bed(#[entity(id)] u32, bool);

fn main() {}
