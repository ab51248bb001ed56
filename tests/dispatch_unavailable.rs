//! A consumer whose destination is down says so with `Unavailable`: it is never parked for it,
//! however many rounds it lasts, and goes on from the event it stopped at.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use eventsourcery::dispatch::{
    Consumer, ConsumerKind, DispatchConfig, Dispatcher, EventContext, Unavailable,
};
use eventsourcery::error::BoxError;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, DomainEvent, Id, MemoryStore, Repository,
    SerializableValue,
};
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct ParcelId(Uuid);

#[derive(DomainEvent)]
struct ParcelSent {
    parcel: ParcelId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = ParcelId, events(ParcelSent))]
struct Parcel;

impl Apply<ParcelSent> for Parcel {
    fn apply(&mut self, _: &ParcelSent) {}
}

#[derive(Command, Clone)]
struct SendParcel {
    parcel: ParcelId,
}

#[eventsourcery::handler]
async fn send(cmd: SendParcel, parcels: Repository<Parcel>) -> Result<(), eventsourcery::Error> {
    let mut parcel = parcels.load(&cmd.parcel).await?;
    parcel.raise(ParcelSent { parcel: cmd.parcel });
    parcels.save(&mut parcel).await?;
    Ok(())
}

/// Forwards events to a courier that, from position `down_from` on, is down while `down` is
/// above zero (one call each).
#[derive(Default)]
struct Courier {
    down: AtomicU32,
    down_from: AtomicU64,
    delivered: Mutex<Vec<u64>>,
}

#[eventsourcery::store::async_trait]
impl Consumer for &'static Courier {
    fn name(&self) -> &str {
        "courier"
    }

    fn kind(&self) -> ConsumerKind {
        ConsumerKind::Listener
    }

    fn subscribes_to(&self, _: &str) -> bool {
        true
    }

    async fn handle(&self, cx: &mut EventContext<'_>) -> Result<(), BoxError> {
        let position = cx.envelope().recorded().position;
        if position >= self.down_from.load(Ordering::SeqCst) && self.down.load(Ordering::SeqCst) > 0
        {
            self.down.fetch_sub(1, Ordering::SeqCst);
            return Err(Unavailable::new(std::io::Error::other("courier down")).into());
        }
        self.delivered.lock().unwrap().push(position);
        Ok(())
    }
}

#[tokio::test]
async fn an_unavailable_consumer_is_never_parked_and_resumes_where_it_stopped() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let bus = CommandBus::builder(store.clone()).build().unwrap();
    let courier: &'static Courier = Box::leak(Box::default());
    let dispatcher = Dispatcher::builder(&bus, store.clone())
        .without_registered()
        .consumer(courier)
        .config(
            DispatchConfig::default()
                .max_attempts(1)
                .batch_size(10)
                .backoff(Duration::from_millis(1)),
        )
        .build()
        .unwrap();
    for _ in 0..3 {
        bus.execute(SendParcel {
            parcel: ParcelId::generate(),
        })
        .await
        .unwrap();
    }
    dispatcher.catch_up().await.unwrap();
    assert_eq!(*courier.delivered.lock().unwrap(), [1, 2, 3]);

    for _ in 0..3 {
        bus.execute(SendParcel {
            parcel: ParcelId::generate(),
        })
        .await
        .unwrap();
    }
    // Down from the second event of the batch, for more rounds than `max_attempts` would
    // allow an ordinary error: what came before it is kept.
    courier.down_from.store(5, Ordering::SeqCst);
    courier.down.store(5, Ordering::SeqCst);
    for _ in 0..5 {
        let round = dispatcher.catch_up().await.unwrap();
        assert_eq!(round.unavailable, ["courier"]);
        assert!(round.parked.is_empty());
        let state = dispatcher.state("courier").await.unwrap();
        assert_eq!(state.position, 4);
        assert!(state.parked.is_none());
    }
    let round = dispatcher.catch_up().await.unwrap();
    assert!(round.unavailable.is_empty());
    assert_eq!(round.handled, 2);
    assert_eq!(*courier.delivered.lock().unwrap(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(dispatcher.state("courier").await.unwrap().position, 6);
}
