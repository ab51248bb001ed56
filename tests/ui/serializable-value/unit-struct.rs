use eventsourcery::SerializableValue;

#[derive(SerializableValue, Clone, Debug)]
struct Nothing;

fn main() {}
