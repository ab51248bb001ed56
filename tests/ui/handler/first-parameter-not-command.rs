use eventsourcery::service::{CommandMeta, Store};

#[eventsourcery::handler]
async fn send_mail(meta: CommandMeta, store: Store) {
    let _ = (meta, store);
}

fn main() {}
