use eventsourcery::{Aggregate, Apply, DomainEvent, Repository};

#[derive(DomainEvent)]
struct VoucherIssued {
    amount_cents: u64,
}

#[derive(Aggregate, Default)]
#[aggregate(events(VoucherIssued))]
struct Voucher {
    amount_cents: u64,
}

impl Apply<VoucherIssued> for Voucher {
    fn apply(&mut self, event: &VoucherIssued) {
        self.amount_cents = event.amount_cents;
    }
}

// Only the derive's error is reported: using the aggregate adds none.
fn vouchers(repository: Repository<Voucher>) -> Repository<Voucher> {
    repository
}

fn main() {
    let _ = vouchers;
}
