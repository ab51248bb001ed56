use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
#[event(version = 0)]
struct VoucherIssued {
    amount_cents: u64,
}

fn main() {}
