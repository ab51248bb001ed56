use eventsourcery::dispatch::EventMeta;

#[eventsourcery::listener(consumer = "mailer")]
async fn mailer(meta: EventMeta) {
    let _ = meta;
}

fn main() {}
