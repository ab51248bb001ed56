#[eventsourcery::projection(consumer = "seats")]
async fn seats() {}

fn main() {}
