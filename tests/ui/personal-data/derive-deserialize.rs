use eventsourcery::PersonalData;

#[derive(PersonalData, serde::Deserialize)]
struct Email(String);

fn main() {}
