//! Partitioned consumers, on every backend: instances share the partitions out, keep each
//! stream's order, take over a dead instance's partitions, and change the count only by a
//! rebuild that cannot double-count against a batch committing at the same moment.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsourcery::dispatch::{
    Consumer, ConsumerKind, ConsumerStore, DispatchError, Dispatcher, EventContext, Partition,
    ProjectionTx,
};
use eventsourcery::error::BoxError;
use eventsourcery::event::Metadata;
use eventsourcery::store::{Commit, NewEvent, StreamAppend};
use eventsourcery::value::StreamId;
use eventsourcery::{CommandBus, DomainEvent};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Backend, Pool, fast};

#[derive(DomainEvent)]
#[event(name = "partition_tick")]
struct Tick {
    n: u64,
}

/// One handling: by which instance, of which event.
#[derive(Debug, Clone)]
struct Handled {
    instance: u32,
    stream: String,
    version: u64,
    event_id: Uuid,
}

/// A listener spread over partitions that records what it handles, in order.
struct Spread {
    name: &'static str,
    instance: u32,
    partitions: u32,
    log: Arc<Mutex<Vec<Handled>>>,
}

#[eventsourcery::store::async_trait]
impl Consumer for Spread {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> ConsumerKind {
        ConsumerKind::Listener
    }
    fn partitions(&self) -> u32 {
        self.partitions
    }
    fn subscribes_to(&self, event_name: &str) -> bool {
        event_name == "partition_tick"
    }
    async fn handle(&self, cx: &mut EventContext<'_>) -> Result<(), BoxError> {
        let recorded = cx.envelope().recorded();
        self.log.lock().unwrap().push(Handled {
            instance: self.instance,
            stream: recorded.stream_id.as_str().to_owned(),
            version: recorded.stream_version,
            event_id: recorded.event_id,
        });
        // An await point, so that instances run into each other.
        tokio::task::yield_now().await;
        Ok(())
    }
}

fn bus(store: &Arc<dyn ConsumerStore>) -> CommandBus {
    CommandBus::builder(store.clone()).build().unwrap()
}

fn spread(
    store: &Arc<dyn ConsumerStore>,
    instance: u32,
    partitions: u32,
    lease: Duration,
    log: &Arc<Mutex<Vec<Handled>>>,
) -> Arc<Dispatcher> {
    Dispatcher::builder(&bus(store), store.clone())
        .without_registered()
        .consumer(Spread {
            name: "spread",
            instance,
            partitions,
            log: log.clone(),
        })
        .config(fast().lease(lease))
        .build()
        .unwrap()
}

/// Appends `rounds` events to each of `streams` streams, one commit per event, the streams
/// interleaved (version 1 of every stream, then version 2, ...). Returns the streams.
async fn append_ticks(
    store: &Arc<dyn ConsumerStore>,
    streams: &[StreamId],
    from: u64,
    rounds: u64,
) {
    for version in from..from + rounds {
        for stream in streams {
            store
                .append(Commit {
                    streams: vec![StreamAppend {
                        stream_id: stream.clone(),
                        expected_version: version,
                        events: vec![NewEvent {
                            event_id: Uuid::now_v7(),
                            event_name: "partition_tick".into(),
                            schema_version: 1,
                            payload: serde_json::json!({ "n": version + 1 }),
                            metadata: Metadata::default(),
                        }],
                    }],
                    command: None,
                })
                .await
                .unwrap();
        }
    }
}

fn streams(n: usize) -> Vec<StreamId> {
    (0..n).map(|i| StreamId::new(format!("tick-{i}"))).collect()
}

/// Each stream's versions were handled in order, each event once.
fn assert_once_in_stream_order(log: &[Handled], expected: usize) {
    let ids: HashSet<Uuid> = log.iter().map(|h| h.event_id).collect();
    assert_eq!(ids.len(), log.len(), "an event was handled twice");
    assert_eq!(log.len(), expected, "every event handled");
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for h in log {
        let before = last.insert(&h.stream, h.version).unwrap_or(0);
        assert_eq!(h.version, before + 1, "stream {} out of order", h.stream);
    }
}

/// Who holds each partition of `spread`, by the store's lease rows.
async fn holders(store: &Arc<dyn ConsumerStore>, count: u32) -> BTreeMap<Uuid, u32> {
    let mut by_owner = BTreeMap::new();
    for entry in store.consumers("spread[").await.unwrap() {
        let is_partition = (0..count)
            .filter_map(|i| Partition::new(i, count))
            .any(|p| p.checkpoint("spread") == entry.name);
        if let (true, Some(holder)) = (is_partition, entry.holder) {
            *by_owner.entry(holder).or_insert(0) += 1;
        }
    }
    by_owner
}

/// Three instances of a six-partition listener, run side by side round after round: every
/// event is handled once, in stream order, and the partitions end up shared two by two.
pub async fn partitioned_instances_share_the_work_and_keep_stream_order(backend: Backend) {
    let store = backend.store;
    let log = Arc::new(Mutex::new(Vec::new()));
    let instances: Vec<_> = (0..3)
        .map(|i| spread(&store, i, 6, Duration::from_secs(30), &log))
        .collect();
    let streams = streams(40);
    let mut appended = 0;
    for round in 0..6 {
        append_ticks(&store, &streams, round * 2, 2).await;
        appended += 2 * streams.len();
        let (a, b, c) = tokio::join!(
            instances[0].catch_up(),
            instances[1].catch_up(),
            instances[2].catch_up()
        );
        for done in [a, b, c] {
            done.unwrap();
        }
    }
    // A last round with nothing new, so that every instance has its share.
    for instance in &instances {
        instance.catch_up().await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    assert_once_in_stream_order(&log, appended);
    let shares: Vec<u32> = holders(&store, 6).await.into_values().collect();
    assert_eq!(shares, vec![2, 2, 2], "six partitions over three instances");
    let by_instance: HashSet<u32> = log.iter().map(|h| h.instance).collect();
    assert_eq!(by_instance.len(), 3, "every instance handled events");
    let state = instances[0].state("spread").await.unwrap();
    assert_eq!(
        state.position, appended as u64,
        "every partition at the head"
    );
}

/// An instance that stops without a word (a crash): its partitions wait for their leases to
/// expire, then the survivor takes them over and handles every event once.
pub async fn a_dead_instance_partitions_are_taken_over_after_its_lease(backend: Backend) {
    let store = backend.store;
    let log = Arc::new(Mutex::new(Vec::new()));
    let lease = Duration::from_millis(800);
    let dead = spread(&store, 0, 4, lease, &log);
    let survivor = spread(&store, 1, 4, lease, &log);
    let streams = streams(24);
    append_ticks(&store, &streams, 0, 1).await;
    for _ in 0..3 {
        dead.catch_up().await.unwrap();
        survivor.catch_up().await.unwrap();
    }
    assert_eq!(
        holders(&store, 4).await.into_values().collect::<Vec<_>>(),
        vec![2, 2]
    );
    // `dead` runs no more and releases nothing.
    append_ticks(&store, &streams, 1, 2).await;
    survivor.catch_up().await.unwrap();
    let handled = log.lock().unwrap().len();
    assert!(
        handled < streams.len() * 3,
        "the dead instance's partitions wait for its leases ({handled} handled)"
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    survivor.catch_up().await.unwrap();
    survivor.catch_up().await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_once_in_stream_order(&log, streams.len() * 3);
    assert_eq!(
        holders(&store, 4).await.into_values().collect::<Vec<_>>(),
        vec![4]
    );
}

/// A dispatcher configured with another partition count than the store's checkpoints refuses
/// to run the consumer; a rebuild changes the count, and the old checkpoints are gone.
pub async fn changing_the_partition_count_is_a_rebuild(backend: Backend) {
    let store = backend.store;
    let log = Arc::new(Mutex::new(Vec::new()));
    let streams = streams(10);
    append_ticks(&store, &streams, 0, 3).await;
    let two = spread(&store, 0, 2, Duration::from_secs(30), &log);
    two.catch_up().await.unwrap();
    two.release("spread").await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 30);

    for (count, instance) in [(4, 1), (1, 2)] {
        let other = spread(&store, instance, count, Duration::from_secs(30), &log);
        let done = other.catch_up().await.unwrap();
        assert_eq!(done.refused, ["spread"], "{count} partitions: refused");
        if count == 4 {
            // A rebuild changes the count; this instance then lets the others take over.
            let progress = other.rebuild("spread", |_| {}).await.unwrap();
            assert_eq!(progress.done, 30);
            other.release("spread").await.unwrap();
            break;
        }
    }

    let four = spread(&store, 3, 4, Duration::from_secs(30), &log);
    let logged = log.lock().unwrap().len();
    assert_eq!(logged, 30 + 30, "the rebuild above replayed the log once");
    let replayed = log.lock().unwrap()[30..].to_vec();
    assert_once_in_stream_order(&replayed, 30);
    let rows: Vec<String> = store
        .consumers("spread[")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|name| !name.contains("worker:"))
        .collect();
    assert_eq!(
        rows,
        [
            "spread[0/2]",
            "spread[0/4]",
            "spread[1/2]",
            "spread[1/4]",
            "spread[2/4]",
            "spread[3/4]"
        ]
    );
    for retired in ["spread[0/2]", "spread[1/2]"] {
        let state = store.consumer_state(retired).await.unwrap();
        assert_eq!(state.position, 0, "{retired}");
        assert_eq!(
            state.parked.map(|p| p.error),
            Some(eventsourcery::store::RETIRED.to_owned()),
            "the two-partition checkpoints are retired"
        );
    }
    // The old instance, still running, finds its partitions retired: it replays nothing.
    append_ticks(&store, &streams, 3, 1).await;
    let old = two.catch_up().await.unwrap();
    assert_eq!(old.handled, 0);
    assert_eq!(old.parked.len(), 2, "{old:?}");
    four.catch_up().await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 70);
    assert_eq!(four.state("spread").await.unwrap().position, 40);
    // A name holding a bracket would collide with partition checkpoints.
    let bad = Dispatcher::builder(&bus(&store), store.clone())
        .without_registered()
        .consumer(Spread {
            name: "spread[9/9]",
            instance: 9,
            partitions: 1,
            log: log.clone(),
        })
        .build();
    assert!(matches!(bad, Err(DispatchError::InvalidName { .. })));
}

/// Pauses a projection's batch inside its transaction when armed.
#[derive(Default)]
struct Gate {
    armed: std::sync::atomic::AtomicBool,
    entered: Notify,
    open: Notify,
}

/// A partitioned projection keeping one row per event in a SQL table (the primary key fails a
/// second insert), in the batch's transaction; its reset deletes them.
struct Counter {
    gate: Arc<Gate>,
    resets: Arc<AtomicU32>,
}

/// Runs `sql` with `arg` bound to each of its `$1`s.
async fn execute(
    tx: &mut ProjectionTx<'_>,
    sql: &'static str,
    arg: String,
) -> Result<(), BoxError> {
    #[cfg(feature = "sqlite")]
    if let Some(conn) = tx.sqlite() {
        sqlx::query(sql).bind(arg).execute(conn).await?;
        return Ok(());
    }
    #[cfg(feature = "postgres")]
    if let Some(conn) = tx.postgres() {
        sqlx::query(sql).bind(arg).execute(conn).await?;
        return Ok(());
    }
    Err("this projection lives in a SQL database".into())
}

#[eventsourcery::store::async_trait]
impl Consumer for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn kind(&self) -> ConsumerKind {
        ConsumerKind::Projection
    }
    fn partitions(&self) -> u32 {
        3
    }
    fn subscribes_to(&self, event_name: &str) -> bool {
        event_name == "partition_tick"
    }
    async fn handle(&self, cx: &mut EventContext<'_>) -> Result<(), BoxError> {
        let id = cx.envelope().recorded().event_id.to_string();
        execute(&mut cx.tx, "INSERT INTO ticks (event_id) VALUES ($1)", id).await?;
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.entered.notify_one();
            self.gate.open.notified().await;
        }
        Ok(())
    }
    async fn reset(&self, tx: &mut ProjectionTx<'_>) -> Result<(), BoxError> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        // Deletes only what is committed: a batch that is still open keeps its rows, which is
        // why the reset must wait for it (by locking its checkpoint first).
        execute(tx, "DELETE FROM ticks WHERE event_id <> $1", String::new()).await
    }
}

async fn ticks_counted(pool: &Pool) -> i64 {
    const COUNT: &str = "SELECT COUNT(*) FROM ticks";
    match pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await.unwrap(),
        #[cfg(feature = "postgres")]
        Pool::Postgres(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await.unwrap(),
        Pool::Memory => panic!("SQL backends only"),
    }
}

async fn create_ticks(pool: &Pool) {
    const DDL: [&str; 1] = ["CREATE TABLE ticks (event_id TEXT PRIMARY KEY)"];
    for sql in DDL {
        match pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
            Pool::Memory => panic!("SQL backends only"),
        }
    }
}

fn counter(
    store: &Arc<dyn ConsumerStore>,
    gate: &Arc<Gate>,
    resets: &Arc<AtomicU32>,
) -> Arc<Dispatcher> {
    Dispatcher::builder(&bus(store), store.clone())
        .without_registered()
        .consumer(Counter {
            gate: gate.clone(),
            resets: resets.clone(),
        })
        .config(fast())
        .build()
        .unwrap()
}

/// SQL backends: a rebuild that meets a batch committing in another instance (paused inside
/// its transaction, deterministically, then many rounds for real) never counts an event twice
/// or loses one: the reset locks every partition's checkpoint before it clears the table.
pub async fn a_rebuild_meeting_a_running_partition_counts_each_event_once(backend: Backend) {
    let store = backend.store;
    create_ticks(&backend.pool).await;
    let gate = Arc::new(Gate::default());
    let resets = Arc::new(AtomicU32::new(0));
    let runner = counter(&store, &gate, &resets);
    let rebuilder = counter(&store, &Arc::new(Gate::default()), &resets);
    let streams = streams(12);
    append_ticks(&store, &streams, 0, 2).await;
    runner.catch_up().await.unwrap();
    assert_eq!(ticks_counted(&backend.pool).await, 24);

    // The runner's next batch stops inside its transaction; the rebuild starts meanwhile.
    append_ticks(&store, &streams, 2, 1).await;
    gate.armed.store(true, Ordering::SeqCst);
    let running = tokio::spawn({
        let runner = runner.clone();
        async move { runner.catch_up().await }
    });
    gate.entered.notified().await;
    let rebuild = tokio::spawn({
        let rebuilder = rebuilder.clone();
        async move { rebuilder.rebuild("counter", |_| {}).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.open.notify_one();
    running.await.unwrap().unwrap();
    rebuild.await.unwrap().unwrap();
    for _ in 0..2 {
        runner.catch_up().await.unwrap();
        rebuilder.catch_up().await.unwrap();
    }
    assert_eq!(resets.load(Ordering::SeqCst), 1, "the reset hook ran once");
    assert_eq!(
        ticks_counted(&backend.pool).await,
        36,
        "each event counted once"
    );

    // For real: rebuilds and catch-ups side by side, round after round.
    let other = counter(&store, &Arc::new(Gate::default()), &resets);
    for round in 0..5 {
        append_ticks(&store, &streams, 3 + round, 1).await;
        let (a, b, c) = tokio::join!(
            rebuilder.rebuild("counter", |_| {}),
            runner.catch_up(),
            other.catch_up()
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
    }
    for _ in 0..3 {
        for d in [&runner, &other, &rebuilder] {
            d.catch_up().await.unwrap();
        }
    }
    let total = streams.len() as i64 * 8;
    assert_eq!(
        ticks_counted(&backend.pool).await,
        total,
        "each event counted once"
    );
    assert!(runner.state("counter").await.unwrap().parked.is_none());
}

/// Events the registered two-partition listener handled.
static PAIRS: AtomicU32 = AtomicU32::new(0);

/// A registered listener spread over two partitions by its attribute.
#[eventsourcery::listener(consumer = "tick_pairs", partitions = 2)]
async fn tick_pairs(_: Tick) {
    PAIRS.fetch_add(1, Ordering::SeqCst);
}

/// `partitions = N` on the attribute gives the consumer N checkpoints; the builder's setting
/// overrides it.
pub async fn the_attribute_sets_the_partition_count(backend: Backend) {
    let store = backend.store;
    let bus = bus(&store);
    let registered = Dispatcher::builder(&bus, store.clone())
        .only(["tick_pairs"])
        .config(fast())
        .build()
        .unwrap();
    append_ticks(&store, &streams(6), 0, 1).await;
    let before = PAIRS.load(Ordering::SeqCst);
    registered.catch_up().await.unwrap();
    assert_eq!(PAIRS.load(Ordering::SeqCst) - before, 6);
    let states = registered.partition_states("tick_pairs").await.unwrap();
    let partitions: Vec<_> = states
        .iter()
        .map(|(p, s)| (p.map(|p| p.to_string()), s.position))
        .collect();
    assert_eq!(
        partitions,
        [(Some("0/2".to_owned()), 6), (Some("1/2".to_owned()), 6)]
    );
    let health = registered.health(0).await;
    assert!(health.is_healthy(), "{:?}", health.problems);
    let partitions: Vec<(String, u64)> = health.consumers[0]
        .partitions
        .iter()
        .map(|p| (p.partition.to_string(), p.lag))
        .collect();
    assert_eq!(partitions, [("0/2".to_owned(), 0), ("1/2".to_owned(), 0)]);
    let overridden = Dispatcher::builder(&bus, store.clone())
        .only(["tick_pairs"])
        .partitions("tick_pairs", 0)
        .build();
    assert!(matches!(
        overridden,
        Err(DispatchError::InvalidPartitions { partitions: 0, .. })
    ));
}

/// Fails, or counts its runs.
struct Work {
    fail: bool,
    runs: AtomicU32,
}

#[eventsourcery::store::async_trait]
impl eventsourcery::dispatch::TxWork for Work {
    async fn run(&self, _tx: &mut ProjectionTx<'_>) -> Result<(), BoxError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err("the reset hook failed".into());
        }
        Ok(())
    }
}

/// The row `name`, if there is one, with its live lease holder.
async fn holder(store: &dyn ConsumerStore, name: &str) -> Option<Option<Uuid>> {
    store
        .consumers(name)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.holder)
}

/// An instance reads another's membership row as expired and deletes it; if the other renewed
/// it in between (slow, not gone), the delete must leave it: otherwise the live instance drops
/// out of the count and a needless hand-over of partitions follows. First the interleaving
/// made to happen (read, renew, delete), then the two racing for real, many rounds.
pub async fn an_expired_membership_renewed_meanwhile_is_not_forgotten(backend: Backend) {
    let store = backend.store;
    let live = Uuid::new_v4();
    // Made to meet: the survey's read sees the lease expired, the renewal lands, then the delete.
    assert!(
        store
            .claim("m[slow]", live, Duration::from_millis(1))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        holder(&*store, "m[slow]").await,
        Some(None),
        "read as expired"
    );
    assert!(
        store
            .claim("m[slow]", live, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(
        !store.forget_expired("m[slow]").await.unwrap(),
        "renewed: kept"
    );
    assert_eq!(holder(&*store, "m[slow]").await, Some(Some(live)));

    // Still deleted when really expired, or never leased; an unknown row is no change.
    assert!(
        store
            .claim("m[gone]", live, Duration::from_millis(1))
            .await
            .unwrap()
    );
    store.advance("m[never]", 0, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.forget_expired("m[gone]").await.unwrap());
    assert!(store.forget_expired("m[never]").await.unwrap());
    assert!(!store.forget_expired("m[unknown]").await.unwrap());
    assert_eq!(holder(&*store, "m[gone]").await, None);
    assert_eq!(holder(&*store, "m[never]").await, None);

    // For real: each round, a renewal and a delete of a row read as expired race; whichever
    // comes first, the row is there afterwards with its holder (a delete after the renewal
    // would leave no row).
    for round in 0..40u32 {
        let name = format!("m[race:{round}]");
        assert!(
            store
                .claim(&name, live, Duration::from_millis(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
        let renew = {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move {
                if round % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                store
                    .claim(&name, live, Duration::from_secs(30))
                    .await
                    .unwrap()
            })
        };
        let forget = {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move {
                if round % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                store.forget_expired(&name).await.unwrap()
            })
        };
        assert!(renew.await.unwrap());
        forget.await.unwrap();
        assert_eq!(
            holder(&*store, &name).await.flatten(),
            Some(live),
            "round {round}: the renewed row was deleted"
        );
    }
}

/// The store primitives partitions are built on: listing rows by prefix with their live lease
/// holders, deleting a row, and the rebuild's reset (all or nothing), which retires rows.
pub async fn the_consumer_store_lists_forgets_and_resets(backend: Backend) {
    let store = backend.store;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(
        store
            .claim("c[0/2]", one, Duration::from_secs(30))
            .await
            .unwrap()
    );
    store.advance("c[1/2]", 0, 5).await.unwrap();
    store.park("c[1/2]", 6, "poison").await.unwrap();
    // Parking at an event that is not the one after the checkpoint: a stale instance.
    assert!(matches!(
        store.park("c[0/2]", 9, "stale").await,
        Err(eventsourcery::StoreError::CheckpointMoved { .. })
    ));
    assert!(
        store
            .consumer_state("c[0/2]")
            .await
            .unwrap()
            .parked
            .is_none()
    );
    assert!(
        store
            .claim("c[worker:x]", two, Duration::from_millis(1))
            .await
            .unwrap()
    );
    store.advance("cd", 0, 3).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let listed: Vec<(String, u64, Option<Uuid>)> = store
        .consumers("c[")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.position, e.holder))
        .collect();
    assert_eq!(
        listed,
        [
            ("c[0/2]".to_owned(), 0, Some(one)),
            ("c[1/2]".to_owned(), 5, None),
            ("c[worker:x]".to_owned(), 0, None),
        ],
        "only the prefix's rows; an expired lease has no holder"
    );

    let keys = ["c[0/2]".to_owned(), "c[1/2]".to_owned()];
    let retire = ["c[worker:x]".to_owned(), "cd".to_owned()];
    let failing = Work {
        fail: true,
        runs: AtomicU32::new(0),
    };
    let failed = store.reset(&keys, &retire, &failing).await.unwrap();
    assert!(failed.is_err());
    assert_eq!(failing.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.consumer_state("c[1/2]").await.unwrap().position,
        5,
        "nothing changed"
    );
    assert!(
        store
            .consumer_state("c[1/2]")
            .await
            .unwrap()
            .parked
            .is_some()
    );
    assert_eq!(store.consumer_state("cd").await.unwrap().position, 3);

    let working = Work {
        fail: false,
        runs: AtomicU32::new(0),
    };
    store
        .reset(&keys, &retire, &working)
        .await
        .unwrap()
        .unwrap();
    let state = store.consumer_state("c[1/2]").await.unwrap();
    assert_eq!((state.position, state.parked), (0, None));
    for retired in ["cd", "c[worker:x]"] {
        let state = store.consumer_state(retired).await.unwrap();
        assert_eq!(state.position, 0, "{retired}: retired at the start");
        assert_eq!(
            state.parked.map(|p| p.error),
            Some(eventsourcery::store::RETIRED.to_owned())
        );
    }

    store.forget("c[0/2]").await.unwrap();
    let names: Vec<String> = store
        .consumers("c[")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["c[1/2]", "c[worker:x]"]);
}
