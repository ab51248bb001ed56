use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
union VoucherIssued {
    amount_cents: u64,
    amount_units: u32,
}

fn main() {}
