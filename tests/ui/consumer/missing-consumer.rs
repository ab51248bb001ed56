use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
struct TicketSold {
    seat: u32,
}

#[eventsourcery::listener]
async fn mailer(event: TicketSold) {
    let _ = event.seat;
}

fn main() {}
