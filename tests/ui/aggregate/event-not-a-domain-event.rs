use eventsourcery::{Aggregate, Apply, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

struct VoucherIssued {
    amount_cents: u64,
}

#[derive(Aggregate, Default)]
#[aggregate(id = VoucherId, events(VoucherIssued))]
struct Voucher {
    amount_cents: u64,
}

impl Apply<VoucherIssued> for Voucher {
    fn apply(&mut self, event: &VoucherIssued) {
        self.amount_cents = event.amount_cents;
    }
}

fn main() {}
