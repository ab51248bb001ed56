use eventsourcery::{Aggregate, AggregateRoot, Apply, DomainEvent, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct PatientId(uuid::Uuid);

#[derive(DomainEvent)]
struct PatientRegistered {}

#[derive(DomainEvent)]
struct PatientMoved {
    city: String,
}

#[derive(Aggregate, Default)]
#[aggregate(id = PatientId, events(PatientRegistered, PatientMoved))]
struct Patient {
    registered: bool,
}

impl Apply<PatientRegistered> for Patient {
    fn apply(&mut self, _: &PatientRegistered) {
        self.registered = true;
    }
}

// The only error is the derive's: raising the event adds none (rustc used to infer the event
// type from the one `Apply` impl and report "mismatched types" here first).
fn relocate(patient: &mut AggregateRoot<Patient>) {
    patient.raise(PatientMoved {
        city: "Cork".into(),
    });
}

fn main() {}
