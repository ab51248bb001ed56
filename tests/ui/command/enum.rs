use eventsourcery::Command;

#[derive(Command, Clone)]
enum VoucherCommand {
    Issue { amount_cents: u64 },
    Redeem,
}

// Only the derive's error is reported: the handler taking the command adds none.
#[eventsourcery::handler]
async fn handle(cmd: VoucherCommand) {
    let _ = cmd;
}

fn main() {}
