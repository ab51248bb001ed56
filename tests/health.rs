//! Metrics and health: what the library records through the `metrics` facade (captured with a
//! debugging recorder), and `Dispatcher::health` for lag, parked consumers, a lost lease and
//! an unreachable store.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsourcery::dispatch::{ConsumerStore, DispatchConfig, HealthProblem, LeaseStatus};
use eventsourcery::metrics as names;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, Dep, Dispatcher, DomainEvent, Id, MemoryStore, Personal,
    PersonalData, PersonalKey, PersonalVault, Repository, SerializableValue,
};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

#[derive(SerializableValue, Clone, Debug)]
struct LampId(uuid::Uuid);

#[derive(PersonalData, Clone)]
struct Owner(String);

#[derive(DomainEvent)]
#[event(name = "health.lamp_lit", subject = owner)]
struct LampLit {
    lamp: LampId,
    owner: PersonalKey,
    #[personal]
    name: Personal<Owner>,
}

#[derive(Aggregate, Default)]
#[aggregate(id = LampId, events(LampLit))]
struct Lamp {
    lit: bool,
}

impl Apply<LampLit> for Lamp {
    fn apply(&mut self, _: &LampLit) {
        self.lit = true;
    }
}

#[derive(Command, Clone)]
#[command(subject = owner)]
struct Light {
    lamp: LampId,
    owner: PersonalKey,
    #[personal]
    name: Owner,
}

#[derive(Debug, thiserror::Error)]
#[error("already lit")]
struct AlreadyLit;

#[eventsourcery::handler]
async fn light(command: Light, lamps: Repository<Lamp>) -> Result<(), eventsourcery::Error> {
    let mut lamp = lamps.load(&command.lamp).await?;
    if lamp.state().lit {
        return Err(eventsourcery::Error::domain(AlreadyLit));
    }
    lamp.raise(LampLit {
        lamp: command.lamp,
        owner: command.owner,
        name: command.name.into(),
    });
    lamps.save(&mut lamp).await?;
    Ok(())
}

/// What the listeners share with the test.
#[derive(Default)]
struct Switches {
    /// Fail every event (to park the consumer).
    fail: AtomicBool,
    handled: AtomicU32,
    /// A store on which another instance takes the lease while the first one is busy, once.
    thief: Mutex<Option<Arc<MemoryStore>>>,
}

#[eventsourcery::listener(consumer = "health_counter")]
async fn counter(_: LampLit, switches: Dep<Switches>) -> Result<(), std::io::Error> {
    if switches.fail.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("the lamp shop is closed"));
    }
    switches.handled.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[eventsourcery::listener(consumer = "health_slow")]
async fn slow(_: LampLit, switches: Dep<Switches>) {
    let thief = switches.thief.lock().unwrap().take();
    if let Some(store) = thief {
        // Outlive the lease, and let another instance take it meanwhile.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let taken = store
            .claim("health_slow", uuid::Uuid::new_v4(), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(taken);
    }
}

fn config() -> DispatchConfig {
    DispatchConfig::default()
        .max_attempts(1)
        .backoff(Duration::from_millis(1))
        .batch_size(1)
}

struct Setup {
    store: Arc<MemoryStore>,
    bus: CommandBus,
    switches: Arc<Switches>,
}

fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    let bus = CommandBus::builder(store.clone())
        .personal_data(PersonalVault::in_memory().unwrap())
        .build()
        .unwrap();
    Setup {
        store,
        bus,
        switches: Arc::new(Switches::default()),
    }
}

fn dispatcher(s: &Setup, consumer: &str, config: DispatchConfig) -> Arc<Dispatcher> {
    Dispatcher::builder(&s.bus, s.store.clone())
        .only([consumer])
        .service_shared(s.switches.clone())
        .config(config)
        .build()
        .unwrap()
}

async fn light_one(s: &Setup) -> (LampId, PersonalKey) {
    let (lamp, owner) = (LampId::generate(), PersonalKey::issue());
    s.bus
        .execute(Light {
            lamp: lamp.clone(),
            owner,
            name: Owner("Ada Lovelace".into()),
        })
        .await
        .unwrap();
    (lamp, owner)
}

/// What was recorded, taken once (a snapshot drains the counters).
type Recorded = Vec<(CompositeKey, DebugValue)>;

/// Runs `test` on a single-threaded runtime with a debugging recorder as this thread's
/// recorder, and returns what it recorded.
fn recorded<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(test())
    });
    take(&snapshotter)
}

fn take(snapshotter: &Snapshotter) -> Recorded {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

/// The value recorded for metric `name` with exactly `labels`.
fn value<'a>(
    snapshotter: &'a Recorded,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshotter
        .iter()
        .find(|(key, _)| {
            let key = key.key();
            let mut found: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            found.sort();
            let mut wanted = labels.to_vec();
            wanted.sort();
            key.name() == name && found == wanted
        })
        .map(|(_, value)| value)
}

fn counter_value(snapshotter: &Recorded, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snapshotter, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

fn gauge_value(snapshotter: &Recorded, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(snapshotter, name, labels) {
        Some(DebugValue::Gauge(n)) => n.into_inner(),
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[test]
fn commands_appends_consumers_and_erasures_are_counted() {
    let snapshotter = recorded(|| async {
        let s = setup();
        let (lamp, owner) = light_one(&s).await;
        light_one(&s).await;
        // Lighting a lit lamp is a rejection.
        let rejected = s
            .bus
            .execute(Light {
                lamp,
                owner,
                name: Owner("Ada Lovelace".into()),
            })
            .await;
        assert!(rejected.is_err());
        let dispatcher = dispatcher(&s, "health_counter", config());
        dispatcher.catch_up().await.unwrap();
        s.bus.erase(owner, "asked to").await.unwrap();
    });

    let light = [("command", "light")];
    assert_eq!(
        counter_value(
            &snapshotter,
            names::COMMANDS,
            &[("command", "light"), ("outcome", "ok")]
        ),
        2
    );
    assert_eq!(
        counter_value(
            &snapshotter,
            names::COMMANDS,
            &[("command", "light"), ("outcome", "rejected")]
        ),
        1
    );
    match value(&snapshotter, names::COMMAND_DURATION, &light) {
        Some(DebugValue::Histogram(times)) => assert_eq!(times.len(), 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(counter_value(&snapshotter, names::EVENTS_APPENDED, &[]), 2);
    let consumer = [("consumer", "health_counter")];
    assert_eq!(
        counter_value(&snapshotter, names::CONSUMER_EVENTS, &consumer),
        2
    );
    assert_eq!(
        gauge_value(&snapshotter, names::CONSUMER_LAG, &consumer),
        0.0
    );
    assert_eq!(
        gauge_value(&snapshotter, names::CONSUMER_PARKED, &consumer),
        0.0
    );
    // The erasure.
    assert_eq!(counter_value(&snapshotter, names::ERASURES, &[]), 1);

    // No label or name holds a value of a command.
    for (key, _) in &snapshotter {
        let text = format!("{:?}", key.key());
        assert!(!text.contains("Ada"), "{text}");
    }
}

#[test]
fn health_reports_lag_and_parked_consumers_and_the_gauges_follow() {
    let snapshotter = recorded(|| async {
        let s = setup();
        let dispatcher = dispatcher(&s, "health_counter", config());
        let healthy = dispatcher.health(0).await;
        assert!(healthy.is_healthy(), "{healthy:?}");
        assert_eq!(healthy.head, Some(0));

        light_one(&s).await;
        light_one(&s).await;
        // Not caught up: two positions behind.
        let lagging = dispatcher.health(1).await;
        assert_eq!(
            lagging.problems,
            [HealthProblem::Lagging {
                consumer: "health_counter".into(),
                lag: 2
            }]
        );
        assert_eq!(lagging.consumers[0].lease, LeaseStatus::Unknown);
        assert!(dispatcher.health(2).await.is_healthy());

        // A failing consumer is parked at the first event.
        s.switches.fail.store(true, Ordering::SeqCst);
        dispatcher.catch_up().await.unwrap();
        let parked = dispatcher.health(10).await;
        assert!(!parked.is_healthy());
        assert!(
            parked.problems.iter().any(|p| matches!(
                p,
                HealthProblem::Parked { consumer, position: 1 } if consumer == "health_counter"
            )),
            "{parked:?}"
        );
        assert_eq!(parked.consumers[0].lease, LeaseStatus::Held);

        // Unparked, it catches up and is healthy again.
        s.switches.fail.store(false, Ordering::SeqCst);
        dispatcher.unpark("health_counter").await.unwrap();
        dispatcher.catch_up().await.unwrap();
        let again = dispatcher.health(0).await;
        assert!(again.is_healthy(), "{again:?}");
        assert_eq!(s.switches.handled.load(Ordering::SeqCst), 2);
    });
    let consumer = [("consumer", "health_counter")];
    // The last health call saw it caught up and unparked.
    assert_eq!(
        gauge_value(&snapshotter, names::CONSUMER_LAG, &consumer),
        0.0
    );
    assert_eq!(
        gauge_value(&snapshotter, names::CONSUMER_PARKED, &consumer),
        0.0
    );
}

/// Deterministically: while the dispatcher handles its first batch, its lease runs out and
/// another instance takes the consumer; the dispatcher's renewal before the next batch fails,
/// and its health says the lease was lost.
#[tokio::test]
async fn a_lease_lost_while_catching_up_is_reported() {
    let s = setup();
    let config = config().lease(Duration::from_millis(40));
    let first = dispatcher(&s, "health_slow", config);
    light_one(&s).await;
    light_one(&s).await;
    *s.switches.thief.lock().unwrap() = Some(s.store.clone());
    let round = first.catch_up().await.unwrap();
    assert_eq!(round.handled, 1);
    assert_eq!(round.not_claimed, ["health_slow"]);

    let health = first.health(100).await;
    assert_eq!(health.consumers[0].lease, LeaseStatus::Lost);
    assert_eq!(
        health.problems,
        [HealthProblem::LeaseLost {
            consumer: "health_slow".into()
        }]
    );
}

/// A store that does not answer makes the dispatcher unhealthy, with the store's error.
#[tokio::test]
async fn an_unreachable_store_is_reported() {
    #[cfg(feature = "sqlite")]
    {
        let store = eventsourcery::SqliteStore::in_memory().await.unwrap();
        let bus = CommandBus::builder(store.clone()).build().unwrap();
        let dispatcher = Dispatcher::builder(&bus, store.clone())
            .only(["health_counter"])
            .build()
            .unwrap();
        assert!(dispatcher.health(0).await.is_healthy());
        store.pool().close().await;
        let health = dispatcher.health(0).await;
        assert!(!health.is_healthy());
        assert_eq!(health.head, None);
        assert!(
            matches!(
                health.problems.as_slice(),
                [HealthProblem::StoreUnreachable { .. }]
            ),
            "{health:?}"
        );
    }
}
