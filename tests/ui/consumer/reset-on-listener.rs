use eventsourcery::{DomainEvent};
use eventsourcery::dispatch::ProjectionTx;

#[derive(DomainEvent)]
struct TicketSold {
    seat: u32,
}

async fn forget(_: &mut ProjectionTx<'_>) {}

#[eventsourcery::listener(consumer = "mailer", reset = forget)]
async fn mailer(event: TicketSold) {
    let _ = event.seat;
}

fn main() {}
