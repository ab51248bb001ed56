use eventsourcery::{Aggregate, Apply, DomainEvent, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(DomainEvent)]
struct VoucherIssued {
    amount_cents: u64,
}

#[derive(Aggregate, Default)]
#[aggregate(id = VoucherId, events(VoucherIssued))]
enum Voucher {
    #[default]
    Unissued,
    Issued,
}

impl Apply<VoucherIssued> for Voucher {
    fn apply(&mut self, _: &VoucherIssued) {
        *self = Voucher::Issued;
    }
}

fn main() {}
