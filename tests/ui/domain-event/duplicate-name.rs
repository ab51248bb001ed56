use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
#[event(name = "voucher_issued", name = "voucher_created")]
struct VoucherIssued {
    amount_cents: u64,
}

fn main() {}
