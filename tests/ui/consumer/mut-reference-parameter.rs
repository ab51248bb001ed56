use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
struct TicketSold {
    seat: u32,
}

#[eventsourcery::projection(consumer = "seats")]
async fn seats(event: TicketSold, seats: &mut Vec<u32>) {
    seats.push(event.seat);
}

fn main() {}
