// Each mistake in the arguments is reported, not only the first.
use eventsourcery::{DomainEvent};
use eventsourcery::dispatch::ProjectionTx;

#[derive(DomainEvent)]
struct TicketSold {
    seat: u32,
}

#[eventsourcery::projection(consumer = "seat counts", reset = "clear", order = 1)]
async fn seats(event: TicketSold, tx: &mut ProjectionTx<'_>) {
    let _ = (event.seat, tx);
}

fn main() {}
