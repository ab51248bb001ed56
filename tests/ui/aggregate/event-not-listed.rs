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
#[aggregate(id = PatientId, events(PatientRegistered))]
struct Patient {
    city: String,
}

impl Apply<PatientRegistered> for Patient {
    fn apply(&mut self, _: &PatientRegistered) {}
}

impl Apply<PatientMoved> for Patient {
    fn apply(&mut self, event: &PatientMoved) {
        self.city = event.city.clone();
    }
}

// Saved, this event could not be replayed: `Patient` does not list it.
fn relocate(patient: &mut AggregateRoot<Patient>) {
    patient.raise(PatientMoved {
        city: "Cork".into(),
    });
}

fn main() {}
