use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
struct VoucherIssued {
    amount_cents: u64,
}

#[derive(DomainEvent)]
enum VoucherEvent {
    Issued(VoucherIssued),
    Redeemed { at: u64 },
}

fn main() {}
