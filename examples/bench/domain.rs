//! The benchmark's domain: a counter, a registration with two personal fields, and a
//! projection that counts.

use std::sync::atomic::{AtomicU64, Ordering};

use eventsourcery::dispatch::{EventMeta, ProjectionTx};
use eventsourcery::{
    Aggregate, Apply, Command, DomainEvent, Personal, PersonalData, PersonalKey, Repository,
    SerializableValue,
};
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
pub struct CounterId(Uuid);

#[derive(SerializableValue, Clone, Debug)]
pub struct SnapCounterId(Uuid);

#[derive(PersonalData, Clone)]
pub struct Name(pub String);

#[derive(PersonalData, Clone)]
pub struct Email(pub String);

#[derive(DomainEvent)]
pub struct Incremented {
    pub by: u64,
}

#[derive(DomainEvent)]
#[event(subject = person)]
pub struct Registered {
    pub person: PersonalKey,
    #[personal]
    pub name: Personal<Name>,
    #[personal]
    pub email: Personal<Email>,
}

#[derive(Aggregate, Default, Clone)]
#[aggregate(id = CounterId, events(Incremented, Registered), cache)]
pub struct Counter {
    pub count: u64,
    pub registered: u64,
}

impl Apply<Incremented> for Counter {
    fn apply(&mut self, event: &Incremented) {
        self.count += event.by;
    }
}

impl Apply<Registered> for Counter {
    fn apply(&mut self, _: &Registered) {
        self.registered += 1;
    }
}

#[derive(Aggregate, Default, serde::Serialize, serde::Deserialize)]
#[aggregate(id = SnapCounterId, events(Incremented), snapshot(every = 100))]
pub struct SnapCounter {
    pub count: u64,
}

impl Apply<Incremented> for SnapCounter {
    fn apply(&mut self, event: &Incremented) {
        self.count += event.by;
    }
}

#[derive(Command, Clone)]
pub struct Increment {
    pub counter: CounterId,
}

#[derive(Command, Clone)]
#[command(subject = person)]
pub struct Register {
    pub counter: CounterId,
    pub person: PersonalKey,
    #[personal]
    pub name: Name,
    #[personal]
    pub email: Email,
}

#[eventsourcery::handler]
async fn increment(
    cmd: Increment,
    counters: Repository<Counter>,
) -> Result<(), eventsourcery::Error> {
    let mut counter = counters.load(&cmd.counter).await?;
    counter.raise(Incremented { by: 1 });
    counters.save(&mut counter).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn register(
    cmd: Register,
    counters: Repository<Counter>,
) -> Result<(), eventsourcery::Error> {
    let mut counter = counters.load(&cmd.counter).await?;
    counter.raise(Registered {
        person: cmd.person,
        name: cmd.name.into(),
        email: cmd.email.into(),
    });
    counters.save(&mut counter).await?;
    Ok(())
}

/// Events the counting projection saw.
pub static PROJECTED: AtomicU64 = AtomicU64::new(0);

#[eventsourcery::projection(consumer = "bench_totals")]
async fn totals(event: Incremented, _meta: EventMeta, _tx: &mut ProjectionTx<'_>) {
    PROJECTED.fetch_add(event.by, Ordering::Relaxed);
}

/// Registrations the personal projection saw with their names decrypted.
pub static PEOPLE: AtomicU64 = AtomicU64::new(0);

/// A projection of events with two personal fields: catch-up then resolves a batch's values.
#[eventsourcery::projection(consumer = "bench_people")]
async fn people(event: Registered, _tx: &mut ProjectionTx<'_>) {
    if event.name.present().is_some() && event.email.present().is_some() {
        PEOPLE.fetch_add(1, Ordering::Relaxed);
    }
}
