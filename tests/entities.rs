//! `#[derive(Entity)]`: equality and hashing by id, serde, and entities in aggregate state and
//! in events stored through a repository.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use eventsourcery::value::Entity;
use eventsourcery::{
    Aggregate, Apply, DomainEvent, EventStore, Id, MemoryStore, Repository, SerializableValue,
};
use serde_json::json;
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct WardId(Uuid);

#[derive(SerializableValue, Clone, Debug)]
struct BedId(u32);

#[derive(SerializableValue, Clone, Debug)]
enum Kind {
    Standard,
    Intensive,
}

#[derive(Entity, Clone, Debug)]
struct Bed {
    #[entity(id)]
    id: BedId,
    kind: Kind,
    occupied: bool,
}

/// The id need not be a `SerializableValue`, nor the first field.
#[derive(Entity, Clone, Debug)]
struct Shift {
    nurses: Vec<String>,
    #[entity(id)]
    number: u64,
}

fn bed(id: u32, occupied: bool) -> Bed {
    Bed {
        id: BedId(id),
        kind: Kind::Standard,
        occupied,
    }
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[test]
fn entities_are_equal_when_their_ids_are() {
    let free = bed(1, false);
    let taken = Bed {
        kind: Kind::Intensive,
        ..bed(1, true)
    };
    assert_eq!(free, taken);
    assert_eq!(hash_of(&free), hash_of(&taken));
    assert_eq!(hash_of(&free), hash_of(&BedId(1)));
    assert_ne!(free, bed(2, false));
    assert_eq!(taken.id(), &BedId(1));

    let shift = Shift {
        nurses: vec!["a".into()],
        number: 3,
    };
    assert_eq!(
        shift,
        Shift {
            nurses: Vec::new(),
            number: 3,
        }
    );
    assert_eq!(*shift.id(), 3);
}

#[test]
fn a_set_of_entities_holds_one_per_id() {
    let mut beds = HashSet::new();
    assert!(beds.insert(bed(1, false)));
    assert!(!beds.insert(bed(1, true)));
    assert!(beds.insert(bed(2, true)));
    assert_eq!(beds.len(), 2);
    // The first one stays: the second is the same bed.
    assert!(!beds.get(&bed(1, true)).unwrap().occupied);
}

#[test]
fn serde_is_an_object_of_the_fields() {
    let json = serde_json::to_value(bed(4, true)).unwrap();
    assert_eq!(
        json,
        json!({ "id": "4", "kind": "Standard", "occupied": true })
    );
    let back: Bed = serde_json::from_value(json).unwrap();
    assert_eq!((back.id(), back.occupied), (&BedId(4), true));
    // Fields an entity no longer has are ignored, as an event's are; missing ones are errors.
    let old = json!({ "id": "4", "kind": "Intensive", "occupied": false, "wing": "east" });
    let back: Bed = serde_json::from_value(old).unwrap();
    assert!(matches!(back.kind, Kind::Intensive));
    assert!(serde_json::from_value::<Bed>(json!({ "id": "4" })).is_err());
    assert!(
        serde_json::from_value::<Bed>(json!({ "id": 4, "kind": "Standard", "occupied": true }))
            .is_err()
    );
}

// An entity in an event and in the state of an aggregate.

#[derive(DomainEvent, Debug)]
struct BedAdded {
    bed: Bed,
}

#[derive(DomainEvent, Debug)]
struct BedsOccupied {
    beds: Vec<BedId>,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(id = WardId, events(BedAdded, BedsOccupied))]
struct Ward {
    beds: HashMap<BedId, Bed>,
}

impl Apply<BedAdded> for Ward {
    fn apply(&mut self, event: &BedAdded) {
        self.beds.insert(event.bed.id().clone(), event.bed.clone());
    }
}

impl Apply<BedsOccupied> for Ward {
    fn apply(&mut self, event: &BedsOccupied) {
        for id in &event.beds {
            if let Some(bed) = self.beds.get_mut(id) {
                bed.occupied = true;
            }
        }
    }
}

#[tokio::test]
async fn entities_round_trip_through_events_into_aggregate_state() {
    let store = Arc::new(MemoryStore::new());
    let wards = Repository::<Ward>::new(store.clone() as Arc<dyn EventStore>);
    let id = WardId::generate();

    let mut ward = wards.load(&id).await.unwrap();
    ward.raise(BedAdded { bed: bed(1, false) });
    ward.raise(BedAdded {
        bed: Bed {
            kind: Kind::Intensive,
            ..bed(2, false)
        },
    });
    ward.raise(BedsOccupied {
        beds: vec![BedId(2)],
    });
    wards.save(&mut ward).await.unwrap();

    let events = store.read_stream(ward.stream_id(), 0).await.unwrap();
    assert_eq!(
        events[1].payload,
        json!({ "bed": { "id": "2", "kind": "Intensive", "occupied": false } })
    );

    let loaded = wards.load(&id).await.unwrap();
    assert_eq!(loaded.version(), 3);
    assert_eq!(loaded.beds.len(), 2);
    let two = &loaded.beds[&BedId(2)];
    assert!(two.occupied && matches!(two.kind, Kind::Intensive));
    assert!(!loaded.beds[&BedId(1)].occupied);
}
