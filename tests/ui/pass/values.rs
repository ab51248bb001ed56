//! Each kind of serializable value: a newtype, a struct with named fields, a unit enum.

use eventsourcery::{Id, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct CandidateId(uuid::Uuid);

#[derive(SerializableValue, Clone, Debug)]
struct Email(String);

#[derive(SerializableValue, Clone, Debug)]
struct Money {
    cents: i64,
    currency: Email,
}

#[derive(SerializableValue, Clone, Copy, Debug)]
enum Status {
    Active,
    Closed,
}

fn assert_value<T: SerializableValue>() {}

fn main() {
    assert_value::<CandidateId>();
    assert_value::<Email>();
    assert_value::<Money>();
    assert_value::<Status>();
    let id = CandidateId::generate();
    assert_eq!(id.to_string().parse::<CandidateId>().unwrap(), id);
    assert_eq!("Closed".parse::<Status>().unwrap(), Status::Closed);
}
