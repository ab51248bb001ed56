use eventsourcery::Command;

#[derive(Command, Clone)]
#[command(version = 2)]
struct IssueVoucher {
    amount_cents: u64,
}

fn main() {}
