use eventsourcery::SerializableValue;

#[derive(SerializableValue, Clone, Debug)]
enum Status {
    Active,
    Suspended { reason: String },
}

fn main() {}
