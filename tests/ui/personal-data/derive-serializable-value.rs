use eventsourcery::{DomainEvent, PersonalData, PersonalKey, SerializableValue};

// A personal type that is also a value would be stored in plain text by the event below.
#[derive(PersonalData, SerializableValue, Clone)]
struct Phone(String);

#[derive(DomainEvent)]
struct PatientRegistered {
    patient: PersonalKey,
    phone: Phone,
}

fn main() {}
