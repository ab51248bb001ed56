// Each mistake is reported, not only the first.
use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
#[event(nmae = "voucher_issued", version = 0, name = "voucher issued")]
struct VoucherIssued {
    amount_cents: u64,
}

fn main() {}
