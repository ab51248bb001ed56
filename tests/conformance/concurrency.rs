//! Many writers at once: optimistic concurrency, retries, and a reader following the log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsourcery::store::{Commit, RecordedEvent, StreamAppend};
use eventsourcery::value::StreamId;
use eventsourcery::{CommandBus, EventStore, Id, StoreError};
use serde_json::json;
use tokio::task::JoinSet;

use super::domain::{Account, AccountId, Deposit};
use super::{Harness, all_commands, below, command, commit, event, everything, stream};
use eventsourcery::store::CommandOutcome;

/// Concurrent writers in the race tests.
const WRITERS: usize = 16;
/// Successful appends per writer.
const APPENDS: usize = 200;

pub(crate) async fn concurrent_writers_on_one_stream(h: &Harness) {
    race(h, 1).await;
}

pub(crate) async fn concurrent_writers_on_many_streams(h: &Harness) {
    race(h, 32).await;
}

/// What one writer did.
struct Written {
    events: Vec<RecordedEvent>,
    conflicts: u64,
}

/// `WRITERS` tasks each append `APPENDS` single events at the version they last saw, on
/// streams picked at random, retrying after each conflict with the version read back.
async fn race(h: &Harness, stream_count: usize) {
    let streams: Arc<Vec<StreamId>> = Arc::new((0..stream_count).map(|_| stream("race")).collect());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&h.store);
        let streams = Arc::clone(&streams);
        tasks.spawn(async move { write(&*store, &streams, writer).await });
    }
    let mut written = Vec::new();
    while let Some(done) = tasks.join_next().await {
        written.push(done.expect("writer task"));
    }
    let elapsed = started.elapsed();
    let conflicts: u64 = written.iter().map(|w| w.conflicts).sum();

    let all = everything(h).await;
    assert_eq!(
        all.len(),
        WRITERS * APPENDS,
        "every successful append is stored, once"
    );
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "positions strictly increase"
    );
    let ids: HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len(), "no event is stored twice");
    let by_position: HashMap<u64, &RecordedEvent> = all.iter().map(|e| (e.position, e)).collect();
    for event in written.iter().flat_map(|w| &w.events) {
        assert_eq!(
            by_position.get(&event.position),
            Some(&event),
            "appends return what is stored"
        );
    }
    for id in streams.iter() {
        let in_log: Vec<&RecordedEvent> = all.iter().filter(|e| &e.stream_id == id).collect();
        let versions: Vec<u64> = in_log.iter().map(|e| e.stream_version).collect();
        let contiguous: Vec<u64> = (1..=in_log.len() as u64).collect();
        assert_eq!(
            versions, contiguous,
            "stream versions are contiguous, in log order"
        );
        let read = h.store.read_stream(id, 0).await.expect("read_stream");
        assert!(
            read.iter().eq(in_log.iter().copied()),
            "read_stream agrees with read_all"
        );
    }
    println!(
        "[{}] {WRITERS} writers x {APPENDS} appends on {stream_count} stream(s): {} events in {elapsed:.2?}, {conflicts} conflicts retried",
        h.backend,
        all.len(),
    );
}

async fn write(store: &dyn EventStore, streams: &[StreamId], writer: usize) -> Written {
    let mut known = vec![0u64; streams.len()];
    let mut events = Vec::with_capacity(APPENDS);
    let mut conflicts = 0;
    for append in 0..APPENDS {
        let s = if streams.len() == 1 {
            0
        } else {
            below(streams.len())
        };
        loop {
            let new = event("raced", json!({ "writer": writer, "append": append }));
            match store.append(commit(&streams[s], known[s], vec![new])).await {
                Ok(recorded) => {
                    let recorded = recorded.into_iter().next().expect("one event recorded");
                    known[s] = recorded.stream_version;
                    events.push(recorded);
                    break;
                }
                Err(StoreError::Conflict { .. }) => {
                    conflicts += 1;
                    let newer = store
                        .read_stream(&streams[s], known[s])
                        .await
                        .expect("catch up");
                    if let Some(last) = newer.last() {
                        known[s] = last.stream_version;
                    }
                }
                Err(error) => panic!("writer {writer}: {error}"),
            }
        }
    }
    Written { events, conflicts }
}

/// Writers committing batches of different sizes to their own streams.
const GAP_WRITERS: usize = 16;
/// Commits per writer in the gap test.
const GAP_COMMITS: usize = 60;

pub(crate) async fn reader_sees_every_event_once_in_order_while_writers_commit(h: &Harness) {
    // How many events the writers appended, once they are done (until then, `usize::MAX`).
    let total = Arc::new(AtomicUsize::new(usize::MAX));
    let reader = {
        let store = Arc::clone(&h.store);
        let total = Arc::clone(&total);
        tokio::spawn(async move {
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut checkpoint = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            // A store may hold committed events back for a while (PostgreSQL does until older
            // transactions end), so the reader stops when it has seen as many events as were
            // appended, not at the first empty page; a skipped event makes it time out.
            while seen.len() < total.load(Ordering::SeqCst) {
                assert!(
                    Instant::now() < deadline,
                    "the reader is stuck after {} events",
                    seen.len()
                );
                let page = store.read_all(checkpoint, 64).await.expect("read_all");
                if page.is_empty() {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                for event in page {
                    assert!(event.position > checkpoint, "read_all went backwards");
                    checkpoint = event.position;
                    seen.push(event);
                }
            }
            seen
        })
    };
    let mut writers = JoinSet::new();
    for _ in 0..GAP_WRITERS {
        let store = Arc::clone(&h.store);
        writers.spawn(async move {
            let (a, b) = (stream("gap"), stream("gap"));
            let (mut va, mut vb) = (0, 0);
            let mut appended = 0;
            for n in 0..GAP_COMMITS {
                let size = 1 + below(4);
                let mut streams = vec![StreamAppend {
                    stream_id: a.clone(),
                    expected_version: va,
                    events: super::events(size),
                }];
                va += size as u64;
                if n % 3 == 0 {
                    streams.push(StreamAppend {
                        stream_id: b.clone(),
                        expected_version: vb,
                        events: super::events(1),
                    });
                    vb += 1;
                }
                appended += store
                    .append(Commit {
                        streams,
                        command: None,
                    })
                    .await
                    .expect("append")
                    .len();
            }
            appended
        });
    }
    let mut appended = 0;
    while let Some(finished) = writers.join_next().await {
        appended += finished.expect("writer task");
    }
    total.store(appended, Ordering::SeqCst);
    let seen = reader.await.expect("reader task");
    let all = everything(h).await;
    let seen_ids: Vec<_> = seen.iter().map(|e| (e.position, e.event_id)).collect();
    let all_ids: Vec<_> = all.iter().map(|e| (e.position, e.event_id)).collect();
    assert_eq!(
        seen_ids.len(),
        all_ids.len(),
        "the reader saw every event, once"
    );
    assert_eq!(seen_ids, all_ids, "in log order");
    println!(
        "[{}] reader followed {} events from {GAP_WRITERS} concurrent writers",
        h.backend,
        seen.len()
    );
}

pub(crate) async fn command_bus_retries_conflicts_until_every_command_lands(h: &Harness) {
    const TASKS: usize = 16;
    const COMMANDS: usize = 10;
    let bus = CommandBus::builder(Arc::clone(&h.store))
        .max_attempts(1_000)
        .build()
        .expect("bus");
    let account = AccountId::generate();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let bus = bus.clone();
        let account = account.clone();
        tasks.spawn(async move {
            let mut receipts = Vec::new();
            for _ in 0..COMMANDS {
                let deposit = Deposit {
                    account: account.clone(),
                    amount: 1,
                };
                receipts.push(bus.execute(deposit).await.expect("deposit"));
            }
            receipts
        });
    }
    let mut receipts = Vec::new();
    while let Some(done) = tasks.join_next().await {
        receipts.extend(done.expect("task"));
    }
    let total = (TASKS * COMMANDS) as u64;
    let loaded = bus
        .repository::<Account>()
        .load(&account)
        .await
        .expect("load");
    assert_eq!(
        (loaded.balance, loaded.deposits, loaded.version()),
        (total, total, total)
    );

    let commands = all_commands(&*h.store).await;
    assert_eq!(commands.len() as u64, total, "each command is logged once");
    assert!(
        commands
            .iter()
            .all(|c| c.outcome == CommandOutcome::Succeeded { events: 1 })
    );
    let logged: HashSet<_> = commands.iter().map(|c| c.command_id).collect();
    let executed: HashSet<_> = receipts.iter().map(|r| r.command_id).collect();
    assert_eq!(logged, executed);
    for event in everything(h).await {
        let command = event
            .metadata
            .command_id
            .expect("events carry their command");
        assert!(executed.contains(&command));
    }
    let retries: u64 = receipts.iter().map(|r| u64::from(r.attempts) - 1).sum();
    println!(
        "[{}] command bus: {total} commands from {TASKS} tasks on one aggregate in {:.2?}, {retries} retries",
        h.backend,
        started.elapsed(),
    );
}

/// What a commit sent in `commits_sent_at_once_each_get_their_own_result` must get back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Appended,
    Conflict,
    DuplicateId,
    /// One of two commits to the same new stream: either wins.
    Contested,
}

/// Rounds of `commits_sent_at_once_each_get_their_own_result`.
const AT_ONCE_ROUNDS: usize = 20;

/// Commits sent at the same moment (which a store may write together) succeed or fail each on
/// its own: a stale one, one reusing a stored event id, or the loser of a race for a stream
/// never takes the others down with it, and nothing of a failed one is stored.
pub(crate) async fn commits_sent_at_once_each_get_their_own_result(h: &Harness) {
    let mut appended: Vec<RecordedEvent> = Vec::new();
    let mut logged = Vec::new();
    for round in 0..AT_ONCE_ROUNDS {
        let taken = stream("taken");
        let stored = h
            .store
            .append(commit(
                &taken,
                0,
                vec![event("first", json!({ "round": round }))],
            ))
            .await
            .expect("first event");
        appended.extend(stored.iter().cloned());
        let contested = stream("contested");

        let mut sent: Vec<(Expect, Commit)> = Vec::new();
        for n in 0..6 {
            let mut fresh = commit(&stream("fresh"), 0, vec![event("fresh", json!({ "n": n }))]);
            fresh.command = Some(command(CommandOutcome::Succeeded { events: 1 }));
            sent.push((Expect::Appended, fresh));
        }
        for n in 0..2 {
            let stale = commit(&taken, 0, vec![event("stale", json!({ "n": n }))]);
            sent.push((Expect::Conflict, stale));
            let mut race = commit(&contested, 0, vec![event("race", json!({ "n": n }))]);
            race.command = Some(command(CommandOutcome::Succeeded { events: 1 }));
            sent.push((Expect::Contested, race));
        }
        let mut reused = event("reused", json!({}));
        reused.event_id = stored[0].event_id;
        let mut duplicate = commit(&stream("duplicate"), 0, vec![reused]);
        duplicate.command = Some(command(CommandOutcome::Succeeded { events: 1 }));
        sent.push((Expect::DuplicateId, duplicate));
        let only_command = Commit {
            streams: Vec::new(),
            command: Some(command(CommandOutcome::Failed {
                error: "refused".into(),
            })),
        };
        sent.push((Expect::Appended, only_command));

        let mut tasks = JoinSet::new();
        for (expect, commit) in sent {
            let store = Arc::clone(&h.store);
            tasks.spawn(async move {
                let command_id = commit.command.as_ref().map(|c| c.command_id);
                (expect, command_id, store.append(commit).await)
            });
        }
        let mut contest_winners = 0;
        while let Some(done) = tasks.join_next().await {
            let (expect, command_id, result) = done.expect("append task");
            match (expect, result) {
                (Expect::Appended, Ok(events)) => {
                    appended.extend(events);
                    logged.extend(command_id);
                }
                (Expect::Contested, Ok(events)) => {
                    contest_winners += 1;
                    appended.extend(events);
                    logged.extend(command_id);
                }
                (Expect::Conflict | Expect::Contested, Err(StoreError::Conflict { .. })) => {}
                (Expect::DuplicateId, Err(StoreError::InvalidAppend(message))) => {
                    assert!(message.contains("already stored"), "{message}");
                }
                (expect, other) => panic!("[{}] {expect:?} got {other:?}", h.backend),
            }
        }
        assert_eq!(contest_winners, 1, "exactly one writer wins a new stream");
    }

    let all = everything(h).await;
    appended.sort_by_key(|e| e.position);
    assert_eq!(
        all, appended,
        "exactly the successful commits are stored, as returned"
    );
    let commands: Vec<_> = all_commands(&*h.store)
        .await
        .into_iter()
        .map(|c| c.command_id)
        .collect();
    let commands: HashSet<_> = commands.into_iter().collect();
    let logged: HashSet<_> = logged.into_iter().collect();
    assert_eq!(
        commands, logged,
        "exactly the successful commits' commands are logged"
    );
}
