use eventsourcery::PersonalData;

#[derive(PersonalData, serde::Serialize)]
struct Email(String);

fn main() {}
