//! Scaling out on PostgreSQL: a partitioned projection and a partitioned listener caught up by
//! 1, 2 and 4 worker processes, and the JetStream publisher, with their throughput.
//!
//! ```text
//! cargo run --release --features postgres,nats --example scale
//! ```
//!
//! It reads `EVENTSOURCERY_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! and works in databases of its own that it drops at the end; with the `nats` feature it also
//! publishes to the NATS server at `EVENTSOURCERY_NATS_URL` (default
//! `nats://127.0.0.1:4222`), in a JetStream stream of its own that it deletes. `--quick`
//! runs smaller counts. Figures are printed as `name=value` lines; each partitioned figure is
//! also given as a ratio to one worker process in the same run, and the publisher's as a
//! ratio to a raw async-nats loop doing the same (publish, await the ack) in the same run.
//!
//! The consumers are ordinary ones: what makes them partitioned is `partitions` (here from
//! the command line, through `DispatcherBuilder::partitions`; in an application usually
//! `#[projection(consumer = "...", partitions = 8)]`). Each worker process runs the same
//! dispatcher; they share the partitions out among themselves.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsourcery::dispatch::{Consumer, ConsumerKind, DispatchConfig, Dispatcher, EventContext};
use eventsourcery::error::BoxError;
use eventsourcery::event::Metadata;
use eventsourcery::store::{Commit, NewEvent, StreamAppend};
use eventsourcery::value::StreamId;
use eventsourcery::{CommandBus, DomainEvent, EventStore, PostgresStore};
use uuid::Uuid;

/// Set in a worker process: `URL CONSUMER PARTITIONS`.
const WORKER: &str = "ES_SCALE_WORKER";

/// The event of the log: small, as most are. (Consumers only take events of types the
/// program knows.)
#[derive(DomainEvent)]
#[event(name = "scale_step")]
#[allow(dead_code)]
struct Step {
    n: u64,
    note: String,
}

/// A projection that writes one row per event in the batch's transaction.
struct Rows;

#[eventsourcery::store::async_trait]
impl Consumer for Rows {
    fn name(&self) -> &str {
        "scale_rows"
    }
    fn kind(&self) -> ConsumerKind {
        ConsumerKind::Projection
    }
    fn subscribes_to(&self, event_name: &str) -> bool {
        event_name == "scale_step"
    }
    async fn handle(&self, cx: &mut EventContext<'_>) -> Result<(), BoxError> {
        let recorded = cx.envelope().recorded();
        let (id, stream) = (recorded.event_id, recorded.stream_id.as_str().to_owned());
        let Some(conn) = cx.tx.postgres() else {
            return Err("the rows projection lives in PostgreSQL".into());
        };
        sqlx::query("INSERT INTO scale_rows (event_id, stream) VALUES ($1, $2)")
            .bind(id)
            .bind(stream)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// A listener whose work is a call to another system taking about a millisecond (a mail
/// server, a payment provider): the case partitions are for.
struct Calls;

#[eventsourcery::store::async_trait]
impl Consumer for Calls {
    fn name(&self) -> &str {
        "scale_calls"
    }
    fn kind(&self) -> ConsumerKind {
        ConsumerKind::Listener
    }
    fn subscribes_to(&self, event_name: &str) -> bool {
        event_name == "scale_step"
    }
    async fn handle(&self, _cx: &mut EventContext<'_>) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(spec) = std::env::var(WORKER) {
        return runtime.block_on(worker(&spec));
    }
    let quick = std::env::args().any(|a| a == "--quick");
    runtime.block_on(run(quick))
}

/// A worker process: one dispatcher with one consumer, until killed.
async fn worker(spec: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut parts = spec.split(' ');
    let (Some(url), Some(consumer), Some(partitions)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{WORKER} is `URL CONSUMER PARTITIONS`").into());
    };
    let partitions: u32 = partitions.parse()?;
    let store = Arc::new(PostgresStore::connect(url).await?);
    let bus = CommandBus::builder(store.clone()).build()?;
    let builder = Dispatcher::builder(&bus, store).without_registered();
    let builder = match consumer {
        "scale_rows" => builder.consumer(Rows),
        _ => builder.consumer(Calls),
    };
    let dispatcher = builder
        .partitions(consumer, partitions)
        .config(
            DispatchConfig::default()
                .lease(Duration::from_secs(2))
                .poll_interval(Duration::from_millis(20)),
        )
        .build()?;
    let _worker = dispatcher.spawn();
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

struct Database {
    admin: sqlx::PgPool,
    name: String,
    url: String,
}

impl Database {
    async fn create(base: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let admin = sqlx::PgPool::connect(base).await?;
        let name = format!("es_scale_{}", Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        let slash = base
            .rfind('/')
            .ok_or("the PostgreSQL URL has no database part")?;
        let url = format!("{}/{name}", &base[..slash]);
        Ok(Self { admin, name, url })
    }

    async fn drop(self) -> Result<(), Box<dyn std::error::Error>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await?;
        Ok(())
    }
}

/// Appends `per_stream` events to each of `streams` streams, one commit per version with
/// every stream in it, so the log interleaves the streams.
async fn append(
    store: &PostgresStore,
    streams: usize,
    per_stream: u64,
) -> Result<u64, Box<dyn std::error::Error>> {
    let ids: Vec<StreamId> = (0..streams)
        .map(|i| StreamId::new(format!("step-{i}")))
        .collect();
    for version in 0..per_stream {
        let appends = ids
            .iter()
            .map(|stream| StreamAppend {
                stream_id: stream.clone(),
                expected_version: version,
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_name: "scale_step".into(),
                    schema_version: 1,
                    payload: serde_json::json!({ "n": version + 1, "note": "a small event" }),
                    metadata: Metadata::default(),
                }],
            })
            .collect();
        store
            .append(Commit {
                streams: appends,
                command: None,
            })
            .await?;
    }
    Ok(streams as u64 * per_stream)
}

/// Starts `workers` processes running `consumer` with `partitions`, and returns how long it
/// took until every partition's checkpoint reached `head` (process start-up included).
async fn catch_up(
    db: &Database,
    pool: &sqlx::PgPool,
    consumer: &str,
    workers: u32,
    partitions: u32,
    head: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(&exe)
                .env(WORKER, format!("{} {consumer} {partitions}", db.url))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let pattern = if partitions > 1 {
        format!("{consumer}[_/{partitions}]")
    } else {
        consumer.to_owned()
    };
    let result = loop {
        let (done, lowest, parked): (i64, Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(position), MIN(parked_error) FROM eventsourcery_consumers \
             WHERE name LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(pool)
        .await?;
        if let Some(error) = parked {
            break Err(format!("{consumer} parked: {error}").into());
        }
        if done == i64::from(partitions) && lowest == Some(head as i64) {
            break Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(300) {
            break Err(format!("{consumer}: not caught up in 5 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The next run starts from the beginning, under the same name.
    sqlx::query("DELETE FROM eventsourcery_consumers WHERE name LIKE $1")
        .bind(format!("{consumer}%"))
        .execute(pool)
        .await?;
    sqlx::query("TRUNCATE scale_rows").execute(pool).await?;
    result
}

async fn run(quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("EVENTSOURCERY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let db = Database::create(&base).await?;
    let result = partitioned(&base, &db, quick).await;
    #[cfg(feature = "nats")]
    let result = match result {
        Ok(()) => publisher(&db, quick).await,
        error => error,
    };
    db.drop().await?;
    result
}

async fn partitioned(
    base: &str,
    db: &Database,
    quick: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(&db.url).await?;
    let pool = store.pool().clone();
    sqlx::query("CREATE TABLE scale_rows (event_id UUID PRIMARY KEY, stream TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    // Rows: 500 streams; calls: fewer events, as each takes a millisecond.
    let rows_events = append(&store, 500, if quick { 8 } else { 80 }).await?;
    println!("rows_events={rows_events}");
    for (consumer, events) in [("scale_rows", rows_events)] {
        figures(db, &pool, consumer, events, events).await?;
    }
    // A second log for the calls, in a database of its own.
    let calls_db = Database::create(base).await?;
    let calls_store = PostgresStore::connect(&calls_db.url).await?;
    let calls_pool = calls_store.pool().clone();
    sqlx::query("CREATE TABLE scale_rows (event_id UUID PRIMARY KEY, stream TEXT NOT NULL)")
        .execute(&calls_pool)
        .await?;
    let calls_events = append(&calls_store, 100, if quick { 5 } else { 40 }).await?;
    println!("calls_events={calls_events}");
    let result = figures(
        &calls_db,
        &calls_pool,
        "scale_calls",
        calls_events,
        calls_events,
    )
    .await;
    calls_pool.close().await;
    calls_db.drop().await?;
    pool.close().await;
    result
}

/// Catch-up of `consumer` by 1 worker (1 partition), then 2 and 4 workers (with as many
/// partitions), printed as events/s and as ratios to the single worker.
async fn figures(
    db: &Database,
    pool: &sqlx::PgPool,
    consumer: &str,
    head: u64,
    events: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut single = None;
    for workers in [1, 2, 4] {
        let took = catch_up(db, pool, consumer, workers, workers, head).await?;
        let rate = events as f64 / took.as_secs_f64();
        println!("{consumer}_{workers}_workers={rate:.0} events/s");
        match single {
            None => single = Some(rate),
            Some(one) => println!("{consumer}_{workers}_workers_ratio_to_1={:.2}", rate / one),
        }
    }
    Ok(())
}

/// The JetStream publisher catching up with the log, against a raw async-nats loop that
/// publishes the same messages the same way (publish, await the ack, next).
#[cfg(feature = "nats")]
async fn publisher(db: &Database, quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    use async_nats::jetstream;
    use eventsourcery::publish::JetStreamPublisher;

    let url = std::env::var("EVENTSOURCERY_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client);
    let suffix = Uuid::new_v4().simple().to_string();
    let (name, prefix) = (format!("SCALE_{suffix}"), format!("scale{suffix}"));
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    })
    .await?;

    let store = Arc::new(PostgresStore::connect(&db.url).await?);
    let events = store.head_position().await?;
    let events = if quick {
        events.min(2_000)
    } else {
        events.min(20_000)
    };
    let bus = CommandBus::builder(store.clone()).build()?;
    let dispatcher = Dispatcher::builder(&bus, store.clone())
        .without_registered()
        .consumer(JetStreamPublisher::new(
            "scale_publisher",
            js.clone(),
            &prefix,
        )?)
        .build()?;
    let started = Instant::now();
    while dispatcher.state("scale_publisher").await?.position < events {
        dispatcher.catch_up().await?;
    }
    let published = dispatcher.state("scale_publisher").await?.position;
    let publisher_rate = published as f64 / started.elapsed().as_secs_f64();

    // The same payloads, subjects and message ids, raw: read, publish, await the ack.
    let log = store.read_all(0, events as usize).await?;
    let started = Instant::now();
    for event in &log {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("raw-{}", event.event_id).as_str());
        js.publish_with_headers(
            format!("{prefix}.raw.scale_step"),
            headers,
            serde_json::to_vec(&event.payload)?.into(),
        )
        .await?
        .await?;
    }
    let raw_rate = log.len() as f64 / started.elapsed().as_secs_f64();
    js.delete_stream(&name).await?;
    println!("publisher_events={published}");
    println!("publisher_jetstream={publisher_rate:.0} events/s");
    println!("raw_jetstream_publish_ack={raw_rate:.0} messages/s");
    println!("publisher_ratio_to_raw={:.2}", publisher_rate / raw_rate);
    Ok(())
}
