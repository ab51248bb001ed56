use std::sync::Arc;

use eventsourcery::service::CommandMeta;
use eventsourcery::store::EventStore;

#[eventsourcery::handler]
async fn send_mail(meta: CommandMeta, store: Arc<dyn EventStore>) {
    let _ = (meta, store);
}

fn main() {}
