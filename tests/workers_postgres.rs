//! Two worker processes (real OS processes) on one PostgreSQL database compete for the same
//! consumer: one is active at a time, every event is handled exactly once, and killing the
//! active one hands the consumer over to the other.
//!
//! The test re-runs its own binary as the workers (`ES_WORKER_URL` set tells it to be one).
#![cfg(feature = "postgres")]

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsourcery::dispatch::ProjectionTx;
use eventsourcery::dispatch::{DispatchConfig, Dispatcher};
use eventsourcery::event::Metadata;
use eventsourcery::store::{Commit, NewEvent, StreamAppend};
use eventsourcery::value::StreamId;
use eventsourcery::{CommandBus, DomainEvent, EventStore, PostgresStore};
use uuid::Uuid;

const ROLE: &str = "ES_WORKER_URL";
const TEST: &str = "two_worker_processes_share_a_consumer_and_hand_over_when_one_dies";

#[derive(DomainEvent)]
struct Ping {
    n: u64,
}

/// Records which process handled each event, in the checkpoint's transaction. The primary
/// key makes a second handling of one event an error (which would park the consumer and stall
/// the count below).
#[eventsourcery::projection(consumer = "pg_workers")]
async fn record(
    _: Ping,
    meta: eventsourcery::dispatch::EventMeta,
    tx: &mut ProjectionTx<'_>,
) -> Result<(), sqlx::Error> {
    let Some(conn) = tx.postgres() else {
        return Err(sqlx::Error::Protocol("expected PostgreSQL".into()));
    };
    sqlx::query("INSERT INTO handled (event_id, pid) VALUES ($1, $2)")
        .bind(meta.event_id)
        .bind(std::process::id() as i32)
        .execute(conn)
        .await?;
    // Slow enough that the kill lands in the middle of the work.
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

async fn worker(url: String) {
    let store = Arc::new(PostgresStore::connect(&url).await.expect("worker connects"));
    let bus = CommandBus::builder(store.clone()).build().expect("bus");
    let mut config = DispatchConfig::default();
    config.lease = Duration::from_millis(1_000);
    config.poll_interval = Duration::from_millis(50);
    config.batch_size = 20;
    let dispatcher = Dispatcher::builder(&bus, store)
        .only(["pg_workers"])
        .config(config)
        .build()
        .expect("dispatcher");
    let _worker = dispatcher.spawn();
    // Killed by the test; stops by itself if the test died first.
    tokio::time::sleep(Duration::from_secs(90)).await;
}

async fn append_pings(store: &PostgresStore, count: u64) {
    for _ in 0..count / 100 {
        let events = (0..100)
            .map(|n| NewEvent {
                event_id: Uuid::now_v7(),
                event_name: "ping".into(),
                schema_version: 1,
                payload: serde_json::json!({ "n": n }),
                metadata: Metadata::default(),
            })
            .collect();
        let stream = StreamId::new(format!("ping-{}", Uuid::now_v7()));
        store
            .append(Commit {
                streams: vec![StreamAppend {
                    stream_id: stream,
                    expected_version: 0,
                    events,
                }],
                command: None,
            })
            .await
            .expect("append pings");
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

async fn wait_for(pool: &sqlx::PgPool, count: i64, deadline: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let handled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM handled")
            .fetch_one(pool)
            .await
            .expect("count");
        if handled >= count || started.elapsed() > deadline {
            return handled;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_a_consumer_and_hand_over_when_one_dies() {
    if let Ok(url) = std::env::var(ROLE) {
        return worker(url).await;
    }
    let Some(database) = support::postgres::TestDatabase::create(TEST).await else {
        return;
    };
    let pool = database.pool().await;
    let store = PostgresStore::from_pool(pool.clone()).await.expect("store");
    sqlx::query("CREATE TABLE handled (event_id UUID PRIMARY KEY, pid INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())")
        .execute(&pool)
        .await
        .expect("create table");
    append_pings(&store, 600).await;

    let url = database.url();
    let mut workers = vec![spawn_worker(&url), spawn_worker(&url)];
    let handled = wait_for(&pool, 150, Duration::from_secs(60)).await;
    assert!(handled >= 150, "the workers handled only {handled} events");

    let active: i32 = sqlx::query_scalar("SELECT pid FROM handled ORDER BY at DESC LIMIT 1")
        .fetch_one(&pool)
        .await
        .expect("active");
    let pids_before: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT pid FROM handled")
        .fetch_all(&pool)
        .await
        .expect("pids");
    assert_eq!(pids_before, vec![active], "one active instance at a time");
    let (index, _) = workers
        .iter()
        .enumerate()
        .find(|(_, w)| w.id() as i32 == active)
        .expect("active is a worker");
    let mut killed = workers.remove(index);
    killed.kill().expect("kill the active worker");
    let _ = killed.wait();
    let killed_at: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM handled")
        .fetch_one(&pool)
        .await
        .expect("count");

    append_pings(&store, 400).await;
    let handled = wait_for(&pool, 1_000, Duration::from_secs(90)).await;
    for mut survivor in workers {
        let _ = survivor.kill();
        let _ = survivor.wait();
    }
    assert_eq!(
        handled, 1_000,
        "every event handled exactly once (primary key), none lost"
    );
    let after: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT pid FROM handled ORDER BY pid")
        .fetch_all(&pool)
        .await
        .expect("pids");
    assert_eq!(after.len(), 2, "the survivor took over");
    let by_survivor: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM handled WHERE pid <> $1")
        .bind(active)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        by_survivor,
        1_000 - killed_at,
        "after the kill, only the survivor handled events"
    );
    pool.close().await;
    database.finish().await;
}
