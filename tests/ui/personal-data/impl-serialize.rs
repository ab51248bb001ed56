use eventsourcery::PersonalData;

#[derive(PersonalData)]
struct Email(String);

impl serde::Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

fn main() {}
