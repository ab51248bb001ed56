// `PersonalData` derives a `Debug` that shows no content; deriving `Debug` as well conflicts.
use eventsourcery::PersonalData;

#[derive(PersonalData, Debug)]
struct Email(String);

fn main() {}
