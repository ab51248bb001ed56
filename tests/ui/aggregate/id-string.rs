use eventsourcery::{Aggregate, Apply, DomainEvent};

#[derive(DomainEvent)]
struct PatientMoved {
    city: String,
}

#[derive(Aggregate, Default)]
#[aggregate(id = String, events(PatientMoved))]
struct Patient {
    city: String,
}

impl Apply<PatientMoved> for Patient {
    fn apply(&mut self, event: &PatientMoved) {
        self.city = event.city.clone();
    }
}

fn main() {}
