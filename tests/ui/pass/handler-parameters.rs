//! Handler parameters resolved by the bus, and a handler returning `()` or its own error.

use eventsourcery::{Command, Dep};
use std::sync::Arc;

use eventsourcery::service::CommandMeta;
use eventsourcery::store::EventStore;

#[derive(Command, Clone)]
struct Ping;

#[derive(Command, Clone)]
struct Notify {
    to: String,
}

struct Mailer;

#[derive(Debug, thiserror::Error)]
#[error("mail refused")]
struct MailRefused;

#[eventsourcery::handler]
async fn ping(_: Ping, _meta: CommandMeta, _store: Arc<dyn EventStore>) {}

#[eventsourcery::handler]
async fn notify(cmd: Notify, _mailer: Dep<Mailer>) -> Result<(), MailRefused> {
    if cmd.to.is_empty() {
        return Err(MailRefused);
    }
    Ok(())
}

fn main() {}
