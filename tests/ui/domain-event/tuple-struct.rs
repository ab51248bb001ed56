use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
struct VoucherIssued(u64);

// Only the derive's error is reported: the enum wrapping the event adds none.
#[derive(DomainEvent)]
enum VoucherEvent {
    Issued(VoucherIssued),
}

fn main() {}
