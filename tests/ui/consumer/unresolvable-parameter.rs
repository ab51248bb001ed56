use eventsourcery::{Aggregate, Apply, DomainEvent, Repository, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct TicketId(uuid::Uuid);

#[derive(DomainEvent)]
struct TicketSold {
    ticket: TicketId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = TicketId, events(TicketSold))]
struct Ticket {
    sold: bool,
}

impl Apply<TicketSold> for Ticket {
    fn apply(&mut self, _: &TicketSold) {
        self.sold = true;
    }
}

#[eventsourcery::listener(consumer = "mailer")]
async fn mailer(event: TicketSold, tickets: Repository<Ticket>) {
    let _ = (event, tickets);
}

fn main() {}
