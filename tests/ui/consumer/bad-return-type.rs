use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
struct TicketSold {
    seat: u32,
}

#[eventsourcery::listener(consumer = "mailer")]
async fn mailer(event: TicketSold) -> bool {
    event.seat > 0
}

fn main() {}
