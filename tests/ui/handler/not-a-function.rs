#[eventsourcery::handler]
struct SendMail;

fn main() {}
