//! A listener, a process manager and a projection (with its reset hook), each taking the
//! parameters of its kind.

use eventsourcery::dispatch::Commands;
use eventsourcery::{Command, Dep, DomainEvent};
use eventsourcery::dispatch::{EventMeta, ProjectionTx};

#[derive(DomainEvent)]
struct TicketSold {
    seat: u32,
}

#[derive(DomainEvent)]
struct TicketRefunded {
    seat: u32,
}

#[derive(DomainEvent)]
enum TicketEvent {
    Sold(TicketSold),
    Refunded(TicketRefunded),
}

#[derive(Command, Clone)]
struct SendWelcome {
    seat: u32,
}

struct Mailer;

#[derive(Debug, thiserror::Error)]
#[error("mail refused")]
struct MailRefused;

#[eventsourcery::listener(consumer = "mailer")]
async fn mail(event: TicketSold, meta: EventMeta, _mailer: Dep<Mailer>) -> Result<(), MailRefused> {
    if event.seat == 0 || meta.position == 0 {
        return Err(MailRefused);
    }
    Ok(())
}

#[eventsourcery::listener(consumer = "audit")]
async fn audit(_: TicketEvent) {}

#[eventsourcery::process_manager(consumer = "welcomer")]
async fn welcome(event: TicketSold, commands: Commands) -> Result<(), eventsourcery::CommandError> {
    commands.execute(SendWelcome { seat: event.seat }).await?;
    Ok(())
}

#[eventsourcery::projection(consumer = "seats", reset = clear_seats)]
async fn seat_sold(
    event: TicketSold,
    tx: &mut ProjectionTx<'_>,
    meta: EventMeta,
    _mailer: Dep<Mailer>,
) {
    let _ = (event.seat, tx, meta.event_id);
}

#[eventsourcery::projection(consumer = "seats")]
async fn seat_refunded(
    event: TicketRefunded,
    _tx: &mut ProjectionTx<'_>,
) -> Result<(), eventsourcery::Error> {
    let _ = event.seat;
    Ok(())
}

async fn clear_seats(tx: &mut ProjectionTx<'_>) -> Result<(), eventsourcery::Error> {
    let _ = tx;
    Ok(())
}

fn main() {}
