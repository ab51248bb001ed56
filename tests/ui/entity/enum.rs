use eventsourcery::value::Entity;

#[derive(Entity)]
enum Bed {
    Free { id: u32 },
    Taken { id: u32 },
}

fn main() {}
