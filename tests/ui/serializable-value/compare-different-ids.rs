// Ids of different aggregates are different types: comparing them is a mistake caught here.
use eventsourcery::{Id, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(SerializableValue, Clone, Debug)]
struct CandidateId(uuid::Uuid);

fn main() {
    let voucher = VoucherId::generate();
    let candidate = CandidateId::generate();
    let _ = voucher == candidate;
}
