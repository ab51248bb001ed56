use eventsourcery::PersonalData;

#[derive(PersonalData)]
#[personal_data(nmae = "email")]
struct Email(String);

fn main() {}
