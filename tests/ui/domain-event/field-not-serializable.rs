use eventsourcery::DomainEvent;

struct Amount(u64);

#[derive(DomainEvent)]
struct VoucherIssued {
    amount: Amount,
}

fn main() {}
