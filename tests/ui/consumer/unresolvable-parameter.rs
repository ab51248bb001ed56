use eventsourcery::service::CommandMeta;
use eventsourcery::{DomainEvent, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct TicketId(uuid::Uuid);

#[derive(DomainEvent)]
struct TicketSold {
    ticket: TicketId,
}

// A command's ids exist only while a command runs.
#[eventsourcery::listener(consumer = "mailer")]
async fn mailer(event: TicketSold, meta: CommandMeta) {
    let _ = (event, meta);
}

fn main() {}
