use eventsourcery::{Aggregate, Apply, DomainEvent};

#[derive(eventsourcery::SerializableValue, Clone, Debug)]
struct MemberId(String);

#[derive(DomainEvent)]
struct Renamed {
    nickname: String,
}

// The attribute is for personal values only.
#[derive(Aggregate, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(id = MemberId, events(Renamed), snapshot(every = 10))]
struct Member {
    #[serde(with = "eventsourcery::aggregate::snapshot")]
    nickname: String,
}

impl Apply<Renamed> for Member {
    fn apply(&mut self, event: &Renamed) {
        self.nickname = event.nickname.clone();
    }
}

fn main() {}
