use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
#[event(nmae = "voucher_issued")]
struct VoucherIssued {
    amount_cents: u64,
}

fn main() {}
