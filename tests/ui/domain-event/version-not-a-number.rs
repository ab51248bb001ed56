use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
#[event(version = "one")]
struct VoucherIssued {
    amount_cents: u64,
}

fn main() {}
