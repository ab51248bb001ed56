//! Three worker processes (real OS processes) share an eight-partition projection and an
//! eight-partition listener on one PostgreSQL database; one of them is killed with SIGKILL in
//! the middle of the run. Afterwards every one of the 20,000 events (over 500 streams) was
//! handled exactly once by the projection, at least once by the listener (deduplicated by
//! event id), and each stream's events in order by both.
//!
//! The test re-runs its own binary as the workers (`ES_PARTITION_WORKER_URL` set tells it to
//! be one).
#![cfg(feature = "postgres")]

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsourcery::dispatch::ProjectionTx;
use eventsourcery::dispatch::{DispatchConfig, Dispatcher, EventMeta};
use eventsourcery::event::Metadata;
use eventsourcery::store::{Commit, NewEvent, StreamAppend};
use eventsourcery::value::StreamId;
use eventsourcery::{CommandBus, DomainEvent, EventStore, PostgresStore};
use uuid::Uuid;

const ROLE: &str = "ES_PARTITION_WORKER_URL";
const TEST: &str = "three_worker_processes_share_eight_partitions_and_survive_a_kill";
const STREAMS: usize = 500;
const PER_STREAM: u64 = 40;
const EVENTS: i64 = STREAMS as i64 * PER_STREAM as i64;

#[derive(DomainEvent)]
#[event(name = "partition_step")]
struct Step {
    n: u64,
}

async fn record(
    table: &'static str,
    meta: &EventMeta,
    conn: &mut sqlx::PgConnection,
) -> Result<(), sqlx::Error> {
    let sql = match table {
        "projected" => {
            "INSERT INTO projected (event_id, stream, version, pid) VALUES ($1, $2, $3, $4)"
        }
        _ => {
            "INSERT INTO delivered (event_id, stream, version, pid) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id) DO NOTHING"
        }
    };
    sqlx::query(sql)
        .bind(meta.event_id)
        .bind(meta.stream_id.as_str())
        .bind(meta.stream_version as i64)
        .bind(std::process::id() as i32)
        .execute(conn)
        .await?;
    Ok(())
}

/// One row per event, in the checkpoint's transaction; the primary key makes a second
/// handling an error (which would park the partition and stall the count below).
#[eventsourcery::projection(consumer = "steps_projected", partitions = 8)]
async fn project(_: Step, meta: EventMeta, tx: &mut ProjectionTx<'_>) -> Result<(), sqlx::Error> {
    let Some(conn) = tx.postgres() else {
        return Err(sqlx::Error::Protocol("expected PostgreSQL".into()));
    };
    record("projected", &meta, conn).await?;
    // Slow enough that the first worker cannot finish the first half alone before the other
    // two have joined and taken their share (and the kill lands mid-run).
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

/// At least once: a redelivery after the kill finds the row and changes nothing.
#[eventsourcery::listener(consumer = "steps_delivered", partitions = 8)]
async fn deliver(
    _: Step,
    meta: EventMeta,
    pool: eventsourcery::Dep<sqlx::PgPool>,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    record("delivered", &meta, &mut conn).await
}

async fn worker(url: String) {
    let store = Arc::new(PostgresStore::connect(&url).await.expect("worker connects"));
    let pool = sqlx::PgPool::connect(&url).await.expect("read model pool");
    let bus = CommandBus::builder(store.clone()).build().expect("bus");
    let config = DispatchConfig::default()
        .lease(Duration::from_millis(1_000))
        .poll_interval(Duration::from_millis(50))
        .batch_size(100);
    let dispatcher = Dispatcher::builder(&bus, store)
        .only(["steps_projected", "steps_delivered"])
        .service(pool)
        .config(config)
        .build()
        .expect("dispatcher");
    let _worker = dispatcher.spawn();
    // Killed by the test; stops by itself if the test died first.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Appends versions `from..to` of every stream: one commit per version, all streams in it,
/// so the log interleaves the streams.
async fn append_steps(store: &PostgresStore, streams: &[StreamId], from: u64, to: u64) {
    for version in from..to {
        let appends = streams
            .iter()
            .map(|stream| StreamAppend {
                stream_id: stream.clone(),
                expected_version: version,
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_name: "partition_step".into(),
                    schema_version: 1,
                    payload: serde_json::json!({ "n": version + 1 }),
                    metadata: Metadata::default(),
                }],
            })
            .collect();
        store
            .append(Commit {
                streams: appends,
                command: None,
            })
            .await
            .expect("append steps");
    }
}

fn spawn_worker(url: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE, url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker process")
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Waits until `done` holds, or `deadline` passes; whether it held.
async fn wait_until(deadline: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Every stream's versions, in the order the table's sequence recorded them, are 1, 2, 3, ...
async fn assert_stream_order(pool: &sqlx::PgPool, table: &str) {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT stream, version FROM {table} ORDER BY seq"
    )))
    .fetch_all(pool)
    .await
    .expect("rows");
    let mut last: HashMap<String, i64> = HashMap::new();
    for (stream, version) in rows {
        let before = last.insert(stream.clone(), version).unwrap_or(0);
        assert_eq!(version, before + 1, "{table}: stream {stream} out of order");
    }
    assert_eq!(last.len(), STREAMS, "{table}: every stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_share_eight_partitions_and_survive_a_kill() {
    if let Ok(url) = std::env::var(ROLE) {
        return worker(url).await;
    }
    let Some(database) = support::postgres::TestDatabase::create(TEST).await else {
        return;
    };
    let pool = database.pool().await;
    let store = PostgresStore::from_pool(pool.clone()).await.expect("store");
    for table in ["projected", "delivered"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {table} (event_id UUID PRIMARY KEY, stream TEXT NOT NULL, \
             version BIGINT NOT NULL, pid INTEGER NOT NULL, seq BIGSERIAL NOT NULL)"
        )))
        .execute(&pool)
        .await
        .expect("create table");
    }
    let streams: Vec<StreamId> = (0..STREAMS)
        .map(|i| StreamId::new(format!("steps-{i}")))
        .collect();
    append_steps(&store, &streams, 0, PER_STREAM / 2).await;

    let url = database.url();
    let mut workers: Vec<Child> = (0..3).map(|_| spawn_worker(&url)).collect();
    let shared = wait_until(Duration::from_secs(90), async || {
        count(&pool, "SELECT COUNT(DISTINCT pid) FROM projected").await == 3
            && count(&pool, "SELECT COUNT(*) FROM projected").await >= EVENTS / 10
    })
    .await;
    let handled = count(&pool, "SELECT COUNT(*) FROM projected").await;
    assert!(
        shared,
        "all three workers handle partitions before the kill ({handled} handled)"
    );
    eprintln!("killing a worker after {handled} of {EVENTS} events were projected");

    // SIGKILL the worker that handled the most so far: it holds partitions right now.
    let busiest: i32 =
        sqlx::query_scalar("SELECT pid FROM projected GROUP BY pid ORDER BY COUNT(*) DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("busiest");
    let index = workers
        .iter()
        .position(|w| w.id() as i32 == busiest)
        .expect("the busiest is a worker");
    let mut killed = workers.remove(index);
    killed.kill().expect("SIGKILL the worker");
    let _ = killed.wait();

    append_steps(&store, &streams, PER_STREAM / 2, PER_STREAM).await;
    let finished = wait_until(Duration::from_secs(180), async || {
        count(&pool, "SELECT COUNT(*) FROM projected").await >= EVENTS
            && count(&pool, "SELECT COUNT(*) FROM delivered").await >= EVENTS
    })
    .await;
    for mut survivor in workers {
        let _ = survivor.kill();
        let _ = survivor.wait();
    }
    let projected = count(&pool, "SELECT COUNT(*) FROM projected").await;
    let delivered = count(&pool, "SELECT COUNT(*) FROM delivered").await;
    assert!(
        finished,
        "every event handled: {projected} projected, {delivered} delivered of {EVENTS}"
    );
    assert_eq!(projected, EVENTS, "projected exactly once (primary key)");
    assert_eq!(delivered, EVENTS, "delivered at least once, deduplicated");
    assert_stream_order(&pool, "projected").await;
    assert_stream_order(&pool, "delivered").await;
    let after_kill: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM projected WHERE pid <> $1 AND version > $2")
            .bind(busiest)
            .bind(PER_STREAM as i64 / 2)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        after_kill,
        EVENTS / 2,
        "the survivors handled every event appended after the kill"
    );
    let parked = count(
        &pool,
        "SELECT COUNT(*) FROM eventsourcery_consumers WHERE parked_position IS NOT NULL",
    )
    .await;
    assert_eq!(parked, 0, "no partition parked");
    let partitions = count(
        &pool,
        "SELECT COUNT(*) FROM eventsourcery_consumers WHERE name LIKE 'steps_projected[_/8]'",
    )
    .await;
    assert_eq!(partitions, 8, "eight checkpoints");
    pool.close().await;
    database.finish().await;
}
