use eventsourcery::Command;

#[derive(Clone)]
struct Amount(u64);

#[derive(Command, Clone)]
struct IssueVoucher {
    amount: Amount,
}

fn main() {}
