use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
struct VoucherIssued {
    amount_cents: u64,
}

#[derive(DomainEvent)]
#[event(name = "voucher")]
enum VoucherEvent {
    Issued(VoucherIssued),
}

fn main() {}
