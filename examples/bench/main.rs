//! Throughput and latency of eventsourcery against the raw database, in one run.
//!
//! Run with `cargo run --release --example bench -- --store sqlite` (or `--store postgres`,
//! which reads `EVENTSOURCERY_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`,
//! and works in a database of its own that it drops at the end). `--quick` runs smaller
//! counts. Prints one `name=value` line per figure, then a table. `--only append|cmd|personal`
//! runs one phase alone (`--tasks`, default 8; `--count`, default 20,000), for a profiler.

mod domain;
mod figures;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsourcery::dispatch::{ConsumerStore, DispatchConfig, Dispatcher};
use eventsourcery::event::Metadata;
use eventsourcery::store::{CommandOutcome, CommandRecord, Commit, NewEvent, StreamAppend};
use eventsourcery::value::StreamId;
use eventsourcery::{CommandBus, EventStore, Id, PersonalKey, PersonalVault, Repository};
use uuid::Uuid;

use domain::{Counter, CounterId, Increment, Register, SnapCounter, SnapCounterId};
use figures::Figures;

/// One backend under test: stores, and the raw single-insert baseline.
#[eventsourcery::store::async_trait]
trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    async fn fresh(&self) -> Stores;
    /// Plain sqlx: `total` single-row INSERTs of an event-like row, one per transaction, over
    /// `tasks` concurrent tasks. Returns rows per second.
    async fn raw_inserts(&self, total: usize, tasks: usize) -> f64;
    async fn cleanup(&self) {}
}

struct Stores {
    events: Arc<dyn ConsumerStore>,
    vault: Arc<PersonalVault>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let store = args
        .iter()
        .position(|a| a == "--store")
        .and_then(|i| args.get(i + 1))
        .map_or("sqlite", String::as_str)
        .to_owned();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match value("--only") {
        Some(phase) => {
            let tasks = value("--tasks").map_or(Ok(8), |t| t.parse())?;
            let total = value("--count").map_or(Ok(20_000), |t| t.parse())?;
            runtime.block_on(only(&store, &phase, tasks, total))
        }
        None => runtime.block_on(run(&store, quick)),
    }
}

/// One phase alone, for profiling: `--only append|append-logged|cmd|personal|hot|catch-up|catch-up-personal [--tasks 8]
/// [--count 20000]`, `--only load` (loads of 1,000 and 10,000 events), `--only load-loop
/// [--count N]` (N loads of a 1,000-event aggregate against N reads of its events), or `--only
/// load-memory [--count N]` (the growth of resident memory while loading a stream of N events,
/// 1,000,000 by default, against reading it whole).
async fn only(
    store: &str,
    phase: &str,
    tasks: usize,
    total: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let backend = backend(store).await?;
    let stores = backend.fresh().await;
    if phase == "load-memory" {
        let events = if total == 20_000 {
            1_000_000
        } else {
            total as u64
        };
        let (paged, whole) = load_memory(&stores, events).await?;
        println!(
            "load_{events}_events_rss_growth_mb={:.1}",
            paged as f64 / 1e6
        );
        println!(
            "read_stream_{events}_events_whole_rss_growth_mb={:.1}",
            whole as f64 / 1e6
        );
        println!(
            "load_growth_ratio_to_whole_read={:.3}",
            paged as f64 / whole.max(1) as f64
        );
        backend.cleanup().await;
        return Ok(());
    }
    if phase == "load-loop" {
        let (load, read) = load_loop(&stores, total).await?;
        println!("load_1000_events_per_s={load:.0}");
        println!("read_stream_1000_events_per_s={read:.0}");
        println!("load_to_read_stream={:.3}", load / read);
        backend.cleanup().await;
        return Ok(());
    }
    if phase == "load" {
        let small = load_time(&stores, 1_000, false).await?;
        let large = load_time(&stores, 10_000, false).await?;
        println!("load_1000_events_us={}", small.as_micros());
        println!("load_10000_events_us={}", large.as_micros());
        println!(
            "load_10000_to_1000={:.2}",
            large.as_secs_f64() / small.as_secs_f64()
        );
        backend.cleanup().await;
        return Ok(());
    }
    let rate = match phase {
        "append" => appends(&stores, total, tasks, false).await?,
        "append-logged" => appends(&stores, total, tasks, true).await?,
        "cmd" => commands(&stores, total, tasks, false).await?.0,
        "personal" => commands(&stores, total, tasks, true).await?.0,
        "hot" => hot(&stores, total, tasks).await?,
        "catch-up" => catch_up(&stores, total as u64).await?,
        "catch-up-personal" => catch_up_personal(&stores, total).await?,
        other => {
            return Err(format!(
                "unknown phase `{other}` (append, append-logged, cmd, personal, hot, catch-up, catch-up-personal, load, load-loop, load-memory)"
            )
            .into());
        }
    };
    println!("{phase}_{tasks}_tasks={rate:.0}");
    backend.cleanup().await;
    Ok(())
}

async fn backend(store: &str) -> Result<Box<dyn Backend>, Box<dyn std::error::Error>> {
    Ok(match store {
        #[cfg(feature = "sqlite")]
        "sqlite" => Box::new(backends::Sqlite::new()?),
        #[cfg(feature = "postgres")]
        "postgres" => Box::new(backends::Postgres::new().await?),
        other => {
            return Err(format!("unknown or disabled store `{other}` (sqlite, postgres)").into());
        }
    })
}

async fn run(store: &str, quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    let backend = backend(store).await?;
    let n = if quick { 400 } else { 4_000 };
    let prefix = match backend.name() {
        "postgres" => "pg",
        other => other,
    };
    let mut figures = Figures::new(prefix);

    for tasks in [1, 8] {
        let raw = backend.raw_inserts(n, tasks).await;
        figures.rate(&format!("raw_insert_{tasks}_tasks"), raw, "rows/s");
        let stores = backend.fresh().await;
        let appended = appends(&stores, n, tasks, false).await?;
        figures.rate(&format!("append_{tasks}_tasks"), appended, "appends/s");
        figures.ratio(
            &format!("append_{tasks}_tasks_ratio_to_raw"),
            appended / raw,
        );
        // The same appends, each with a command log entry: the store's share of a command.
        let logged = appends(&stores, n, tasks, true).await?;
        figures.rate(&format!("append_logged_{tasks}_tasks"), logged, "appends/s");
        figures.ratio(
            &format!("append_logged_{tasks}_tasks_ratio_to_raw"),
            logged / raw,
        );
        let (rate, latencies) = commands(&stores, n, tasks, false).await?;
        figures.rate(&format!("cmd_{tasks}_tasks"), rate, "commands/s");
        figures.ratio(&format!("cmd_{tasks}_tasks_ratio_to_raw"), rate / raw);
        if tasks == 1 {
            figures.latency("cmd_latency_p50", percentile(&latencies, 50.0));
            figures.latency("cmd_latency_p99", percentile(&latencies, 99.0));
        }
        let stores = backend.fresh().await;
        let (personal, _) = commands(&stores, n, tasks, true).await?;
        figures.rate(
            &format!("cmd_personal_{tasks}_tasks"),
            personal,
            "commands/s",
        );
        figures.ratio(
            &format!("cmd_personal_{tasks}_tasks_ratio_to_plain"),
            personal / rate,
        );
    }

    let stores = backend.fresh().await;
    let mut loads = Vec::new();
    for events in [1_000u64, 10_000] {
        let plain = load_time(&stores, events, false).await?;
        let snap = load_time(&stores, events, true).await?;
        figures.latency(&format!("load_{events}_events"), plain);
        figures.latency(&format!("load_{events}_events_snapshot"), snap);
        loads.push((plain, snap));
    }
    figures.ratio(
        "load_10000_to_1000",
        loads[1].0.as_secs_f64() / loads[0].0.as_secs_f64(),
    );
    figures.ratio(
        "load_snapshot_10000_to_1000",
        loads[1].1.as_secs_f64() / loads[0].1.as_secs_f64(),
    );

    let stores = backend.fresh().await;
    let total = if quick { 10_000 } else { 100_000 };
    let rate = catch_up(&stores, total).await?;
    figures.rate("projection_catch_up", rate, "events/s");
    let stores = backend.fresh().await;
    let personal = catch_up_personal(&stores, (total / 10) as usize).await?;
    figures.rate("projection_catch_up_personal", personal, "events/s");
    figures.ratio(
        "projection_catch_up_personal_ratio_to_plain",
        personal / rate,
    );

    backend.cleanup().await;
    figures.print();
    Ok(())
}

fn bus(stores: &Stores) -> CommandBus {
    CommandBus::builder(stores.events.clone())
        .personal_data(stores.vault.clone())
        .build()
        .unwrap_or_else(|e| panic!("building the bus: {e}"))
}

/// `total` commands over `tasks` tasks, each task on its own aggregates. Returns commands per
/// second and every command's latency.
async fn commands(
    stores: &Stores,
    total: usize,
    tasks: usize,
    personal: bool,
) -> Result<(f64, Vec<Duration>), Box<dyn std::error::Error>> {
    let bus = bus(stores);
    // Warm up: connections, caches, key creation paths.
    for _ in 0..20 {
        bus.execute(Increment {
            counter: CounterId::generate(),
        })
        .await?;
    }
    let per_task = total / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                let counters: Vec<CounterId> = (0..16).map(|_| CounterId::generate()).collect();
                for i in 0..per_task {
                    let counter = counters[i % counters.len()].clone();
                    let t = Instant::now();
                    let result = if personal {
                        bus.execute(Register {
                            counter,
                            person: PersonalKey::issue(),
                            name: domain::Name(format!("Person {i}")),
                            email: domain::Email(format!("person{i}@example.com")),
                        })
                        .await
                    } else {
                        bus.execute(Increment { counter }).await
                    };
                    result.unwrap_or_else(|e| panic!("command failed: {e}"));
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for handle in handles {
        latencies.extend(handle.await?);
    }
    let rate = (per_task * tasks) as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}

/// `total` appends of one event to distinct streams, straight to the store (no bus), over
/// `tasks` tasks; with `logged`, each also carries a command log entry like the bus writes,
/// so it is the store's share of a command. Returns appends per second.
async fn appends(
    stores: &Stores,
    total: usize,
    tasks: usize,
    logged: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    let per_task = total / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let store = stores.events.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let stream = StreamId::for_aggregate("appended", &CounterId::generate());
                    let commit = Commit {
                        streams: vec![StreamAppend {
                            stream_id: stream,
                            expected_version: 0,
                            events: vec![NewEvent {
                                event_id: Uuid::now_v7(),
                                event_name: "incremented".to_owned(),
                                schema_version: 1,
                                payload: serde_json::json!({ "by": 1 }),
                                metadata: Metadata::default(),
                            }],
                        }],
                        command: logged.then(|| CommandRecord {
                            command_id: Uuid::now_v7(),
                            name: "increment".to_owned(),
                            payload: serde_json::json!({ "counter": "counter-1" }),
                            metadata: Metadata::for_command(
                                Uuid::now_v7(),
                                Uuid::now_v7(),
                                Uuid::now_v7(),
                            ),
                            outcome: CommandOutcome::Succeeded { events: 1 },
                            recorded_at: std::time::SystemTime::now(),
                        }),
                    };
                    store
                        .append(commit)
                        .await
                        .unwrap_or_else(|e| panic!("append failed: {e}"));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await?;
    }
    Ok((per_task * tasks) as f64 / started.elapsed().as_secs_f64())
}

/// `total` commands over `tasks` tasks all on one aggregate, with the bus's default retries:
/// contention. Prints how many gave up on conflicts; returns commands per second.
async fn hot(
    stores: &Stores,
    total: usize,
    tasks: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let bus = bus(stores);
    let counter = CounterId::generate();
    let per_task = total / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let bus = bus.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut gave_up = 0;
                for _ in 0..per_task {
                    match bus
                        .execute(Increment {
                            counter: counter.clone(),
                        })
                        .await
                    {
                        Ok(_) => {}
                        Err(eventsourcery::CommandError::Conflict { .. }) => gave_up += 1,
                        Err(e) => panic!("command failed: {e}"),
                    }
                }
                gave_up
            })
        })
        .collect();
    let mut gave_up = 0;
    for handle in handles {
        gave_up += handle.await?;
    }
    println!("hot_gave_up={gave_up}");
    Ok((per_task * tasks - gave_up) as f64 / started.elapsed().as_secs_f64())
}

fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let index = ((p / 100.0) * (sorted.len().saturating_sub(1)) as f64).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// Appends `events` events to a fresh stream in large commits.
async fn fill(
    store: &dyn EventStore,
    stream: &StreamId,
    name: &str,
    events: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut version = 0;
    while version < events {
        let count = (events - version).min(1_000);
        let new = (0..count)
            .map(|_| NewEvent {
                event_id: Uuid::now_v7(),
                event_name: name.to_owned(),
                schema_version: 1,
                payload: serde_json::json!({ "by": 1 }),
                metadata: Metadata::default(),
            })
            .collect();
        store
            .append(Commit {
                streams: vec![StreamAppend {
                    stream_id: stream.clone(),
                    expected_version: version,
                    events: new,
                }],
                command: None,
            })
            .await?;
        version += count;
    }
    Ok(())
}

/// This process's resident memory now, and its peak since the last [`reset_peak`], in bytes
/// (Linux: `/proc/self/status`).
fn rss() -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Result<u64, Box<dyn std::error::Error>> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("no {name} in /proc/self/status"))?;
        let kb: u64 = line.split_whitespace().nth(1).ok_or("no value")?.parse()?;
        Ok(kb * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak resident memory to the current one (Linux 4.0 and later).
fn reset_peak() -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    Ok(())
}

/// How much the peak resident memory grows while a `Repository` loads a stream of `events`
/// small events, against reading the same stream whole with `read_stream`, in bytes.
async fn load_memory(
    stores: &Stores,
    events: u64,
) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let store: Arc<dyn EventStore> = stores.events.clone();
    let id = CounterId::generate();
    let stream = StreamId::for_aggregate("counter", &id);
    fill(&*store, &stream, "incremented", events).await?;
    let repository = Repository::<Counter>::new(store.clone());

    reset_peak()?;
    let (before, _) = rss()?;
    assert_eq!(repository.load(&id).await?.count, events);
    let paged = rss()?.1.saturating_sub(before);
    reset_peak()?;
    let (before, _) = rss()?;
    assert_eq!(store.read_stream(&stream, 0).await?.len() as u64, events);
    let whole = rss()?.1.saturating_sub(before);
    Ok((paged, whole))
}

/// The median time to load an aggregate of `events` events, with or without a snapshot.
/// Loads of one 1,000-event aggregate, `rounds` times, against reading its page from the store
/// alone (no decoding, no apply), alternating: each per second.
async fn load_loop(
    stores: &Stores,
    rounds: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let store: Arc<dyn EventStore> = stores.events.clone();
    let id = CounterId::generate();
    let stream = StreamId::for_aggregate("counter", &id);
    fill(&*store, &stream, "incremented", 1_000).await?;
    let repository = Repository::<Counter>::new(store.clone());
    let (mut load, mut read) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds.div_ceil(10) {
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(repository.load(&id).await?.count, 1_000);
        }
        load += t.elapsed();
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                store.read_stream_page(&stream, 0, 4_096).await?.len(),
                1_000
            );
        }
        read += t.elapsed();
    }
    let n = (rounds.div_ceil(10) * 10) as f64;
    Ok((n / load.as_secs_f64(), n / read.as_secs_f64()))
}

async fn load_time(
    stores: &Stores,
    events: u64,
    snapshot: bool,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let store: Arc<dyn EventStore> = stores.events.clone();
    let mut times = Vec::new();
    if snapshot {
        let id = SnapCounterId::generate();
        fill(
            &*store,
            &StreamId::for_aggregate("snap_counter", &id),
            "incremented",
            events,
        )
        .await?;
        let repository = Repository::<SnapCounter>::new(store);
        repository.load(&id).await?; // takes the snapshot
        for _ in 0..5 {
            let t = Instant::now();
            let loaded = repository.load(&id).await?;
            times.push(t.elapsed());
            assert_eq!(loaded.count, events);
        }
    } else {
        let id = CounterId::generate();
        fill(
            &*store,
            &StreamId::for_aggregate("counter", &id),
            "incremented",
            events,
        )
        .await?;
        let repository = Repository::<Counter>::new(store);
        for _ in 0..5 {
            let t = Instant::now();
            let loaded = repository.load(&id).await?;
            times.push(t.elapsed());
            assert_eq!(loaded.count, events);
        }
    }
    Ok(percentile(&times, 50.0))
}

/// Events per second for a projection catching up over `total` events with two personal
/// fields each (written by `Register` commands from 8 tasks, a new data subject each).
async fn catch_up_personal(
    stores: &Stores,
    total: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    commands(stores, total, 8, true).await?;
    let bus = bus(stores);
    let dispatcher = Dispatcher::builder(&bus, stores.events.clone())
        .only(["bench_people"])
        .config(DispatchConfig::default().batch_size(1_000))
        .build()?;
    let before = domain::PEOPLE.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    dispatcher.catch_up().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let seen = domain::PEOPLE.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(seen, total as u64, "the projection decrypted every event");
    Ok(total as f64 / elapsed)
}

/// Events per second for a projection catching up over `total` events.
async fn catch_up(stores: &Stores, total: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let per_stream = 1_000;
    for _ in 0..total / per_stream {
        fill(
            &*stores.events,
            &StreamId::for_aggregate("counter", &CounterId::generate()),
            "incremented",
            per_stream,
        )
        .await?;
    }
    let bus = bus(stores);
    let mut config = DispatchConfig::default();
    config.batch_size = 1_000;
    let dispatcher = Dispatcher::builder(&bus, stores.events.clone())
        .only(["bench_totals"])
        .config(config)
        .build()?;
    let started = Instant::now();
    let done = dispatcher.catch_up().await?;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(done.handled, total, "the projection saw every event");
    Ok(total as f64 / elapsed)
}

mod backends;
