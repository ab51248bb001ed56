use eventsourcery::{Aggregate, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(Aggregate, Default)]
#[aggregate(id = VoucherId)]
struct Voucher {
    amount_cents: u64,
}

fn main() {}
