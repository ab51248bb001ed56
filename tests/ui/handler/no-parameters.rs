#[eventsourcery::handler]
async fn send_mail() {}

fn main() {}
