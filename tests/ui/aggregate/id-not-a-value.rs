use eventsourcery::{Aggregate, Apply, DomainEvent};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct VoucherId(uuid::Uuid);

#[derive(DomainEvent)]
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
