use eventsourcery::Aggregate;

#[derive(Aggregate, Default)]
struct Voucher {
    amount_cents: u64,
}

fn main() {}
