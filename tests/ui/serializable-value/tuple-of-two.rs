use eventsourcery::{DomainEvent, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct Point(i64, i64);

// Only the derive's error is reported: the event using `Point` adds none.
#[derive(DomainEvent)]
struct Moved {
    to: Point,
}

fn main() {}
