use eventsourcery::{Aggregate, Apply, DomainEvent, Personal, PersonalData, PersonalKey};

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(eventsourcery::SerializableValue, Clone, Debug)]
struct MemberId(String);

#[derive(DomainEvent)]
#[event(subject = member)]
struct EmailChanged {
    member: PersonalKey,
    #[personal]
    email: Personal<Email>,
}

// Serialized as it is, the snapshot would hold the email: the field needs
// `#[serde(with = "eventsourcery::aggregate::snapshot")]`.
#[derive(Aggregate, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(id = MemberId, events(EmailChanged), snapshot(every = 10))]
struct Member {
    email: Option<Personal<Email>>,
}

impl Apply<EmailChanged> for Member {
    fn apply(&mut self, event: &EmailChanged) {
        self.email = Some(event.email.clone());
    }
}

fn main() {}
