#[eventsourcery::listener(consumer = "mailer")]
struct Mailer;

fn main() {}
