//! Group commit: concurrent appends share one statement, so one round trip, one transaction and
//! one WAL flush serve many commits (queued by [`Batcher`]).
//!
//! A group is all or nothing in the database, but each commit gets its own answer: the
//! statement checks every stream's version first and writes nothing unless all match; commits
//! that do not match are answered with their conflict and the rest go again. Commits that
//! write to the same stream go in successive rounds, and any other failure of a group (a lost
//! race on the unique constraints, an event id already stored, a payload PostgreSQL refuses)
//! sends its commits one by one, each to its own precise result. A failed connection is the
//! exception: whether the group was written is unknown, so every commit of it gets the error.

use std::collections::{HashMap, HashSet};

use sqlx::PgPool;
use uuid::Uuid;

use super::PostgresStore;
use crate::backend::sql::{self, PreparedCommit, db};
use crate::batch::{Batcher, Queued, Reply};
use crate::store::{RecordedEvent, StoreError};
use crate::value::StreamId;

/// Group statements in flight at once. Two let one group travel while the next is written;
/// more make groups smaller and have appends queue on the position allocator's lock instead.
/// Measured with 8 writers on a 2-core machine: 1 or 2 slots about 8,200 appends/s, 3 slots
/// about 4,900, 4 slots about 3,800, one statement per append about 4,900.
const SLOTS: usize = 2;

/// At most this many commits in one group.
const MAX_COMMITS: usize = 128;

/// A group stops taking commits once it holds this many events (a single commit may have
/// more).
const MAX_EVENTS: usize = 2_048;

type Answer = Result<Vec<RecordedEvent>, StoreError>;

/// A commit waiting for its group.
type Pending = sql::PendingAppend;

/// The append queue of one store and its clones.
pub(super) struct Group(sql::AppendQueue);

impl Default for Group {
    fn default() -> Self {
        Self(Batcher::new(SLOTS, MAX_COMMITS, MAX_EVENTS, |commit| {
            commit.events.len()
        }))
    }
}

impl Group {
    /// Appends `commit` together with whatever else is queued (see
    /// [`sql::append_in_group`]), and returns its own result.
    pub(super) async fn append(&self, store: &PostgresStore, commit: PreparedCommit) -> Answer {
        sql::append_in_group(&self.0, store, commit, |store, group| async move {
            store.write_group(group).await
        })
        .await
    }
}

impl PostgresStore {
    /// Writes `group`, answering every commit in it.
    async fn write_group(&self, mut group: Vec<Pending>) {
        // Each stream's version after the commits of this group written so far.
        let mut written = HashMap::new();
        while !group.is_empty() {
            // A stream appears at most once per statement: its version check reads the
            // version before the statement, so a second append to it must wait its turn. One
            // that expects a version an earlier round moved past conflicts without asking.
            let mut streams = HashSet::new();
            let mut now = Vec::new();
            let mut later = Vec::new();
            for pending in group {
                if let Some(conflict) = stale(&pending.item, &written) {
                    pending.answer(Err(conflict));
                } else if pending
                    .item
                    .streams
                    .iter()
                    .all(|(s, _)| !streams.contains(s))
                {
                    streams.extend(pending.item.streams.iter().map(|(s, _)| s.clone()));
                    now.push(pending);
                } else {
                    later.push(pending);
                }
            }
            self.write_round(now, &mut written).await;
            group = later;
        }
    }

    /// Writes commits on distinct streams as one statement, retrying without those that
    /// conflict; on any other failure, writes them one by one. Records the versions that
    /// successful commits leave their streams at in `written`.
    async fn write_round(&self, mut round: Vec<Pending>, written: &mut HashMap<StreamId, i64>) {
        loop {
            if let [_] = round.as_slice() {
                if let Some((commit, reply)) = round.pop().map(Queued::split) {
                    answer(reply, self.append_prepared(commit).await, written);
                }
                return;
            }
            let commits: Vec<&PreparedCommit> = round.iter().map(|p| &p.item).collect();
            match append_statement(&self.pool, &commits).await {
                Ok((Some(first), _)) => {
                    let Ok(mut position) = u64::try_from(first) else {
                        for pending in round {
                            pending.answer(Err(super::negative_position(first)));
                        }
                        return;
                    };
                    self.appended();
                    for (commit, reply) in round.into_iter().map(Queued::split) {
                        let count = commit.events.len() as u64;
                        answer(reply, Ok(commit.into_recorded(position)), written);
                        position += count;
                    }
                    return;
                }
                Ok((None, versions)) => {
                    // Either every check passed and there were no events to write (the
                    // command log entries are written), or nothing was written.
                    let mut offset = 0;
                    let mut waiting = Vec::with_capacity(round.len());
                    let mut conflicts = false;
                    for pending in round {
                        let streams = pending.item.streams.len();
                        let checked = versions.get(offset..offset + streams).unwrap_or(&[]);
                        offset += streams;
                        match PostgresStore::first_conflict(&pending.item, checked) {
                            Some(conflict) => {
                                conflicts = true;
                                pending.answer(Err(conflict));
                            }
                            None => waiting.push(pending),
                        }
                    }
                    if !conflicts {
                        for pending in waiting {
                            pending.answer(Ok(Vec::new()));
                        }
                        return;
                    }
                    round = waiting;
                    if round.is_empty() {
                        return;
                    }
                }
                Err(sqlx::Error::Database(_)) => {
                    // The server refused the statement and rolled it back: nothing was
                    // written. One by one, each commit gets its precise error (or succeeds, if
                    // another's failed the group).
                    for (commit, reply) in round.into_iter().map(Queued::split) {
                        answer(reply, self.append_prepared(commit).await, written);
                    }
                    return;
                }
                Err(error) => {
                    // The connection failed: the group may have been written or not, and
                    // sending each commit again would misreport one that was written as a
                    // conflict. Every commit gets the error, as a single append would.
                    return sql::fail_group(round, &db("append")(error));
                }
            }
        }
    }
}

/// Sends a commit its result, first noting in `written` the versions it left its streams at.
fn answer(reply: Reply<Answer>, result: Answer, written: &mut HashMap<StreamId, i64>) {
    if let Ok(events) = &result {
        for event in events {
            written.insert(event.stream_id.clone(), event.stream_version as i64);
        }
    }
    reply.send(result);
}

/// The conflict of a commit expecting a stream version that this group already moved past.
fn stale(commit: &PreparedCommit, written: &HashMap<StreamId, i64>) -> Option<StoreError> {
    commit
        .streams
        .iter()
        .enumerate()
        .find_map(|(index, (stream, expected))| match written.get(stream) {
            Some(actual) if actual != expected => Some(commit.conflict(index, *actual)),
            _ => None,
        })
}

/// Appends `commits` as one statement, so one round trip and one implicit transaction.
///
/// It checks every stream's version; only if all match does it allocate positions (which also
/// gives the transaction its id: nothing may write before it, so the commands are logged after
/// it), log the commands, and insert the events, the commits' events one after the other.
/// Rows go in in stream order, whatever their positions, so that two statements that touch
/// the same streams take their unique-index locks in the same order and cannot deadlock.
/// Returns the first position (`None` if nothing was inserted) and each stream's version as
/// checked, in commit order.
///
/// The first array of each `UNNEST` is read through a scalar subquery, which hides its length
/// from the planner. PostgreSQL estimates an `UNNEST`'s rows as the largest of its arrays'
/// estimates, and a hidden array counts as 10 rows, so a plan made for the bound arrays never
/// looks cheaper than the prepared statement's generic plan: after its first five executions
/// PostgreSQL keeps the generic plan instead of planning the statement again on every bind.
/// Planning this statement costs about as much as running it: measured with one writer, this
/// made appends 30% faster (1,250 to 1,620 a second).
pub(super) async fn append_statement(
    pool: &PgPool,
    commits: &[&PreparedCommit],
) -> Result<(Option<i64>, Vec<i64>), sqlx::Error> {
    let mut streams: Vec<&str> = Vec::new();
    let mut expected: Vec<i64> = Vec::new();
    let mut command_ids: Vec<Uuid> = Vec::new();
    let mut command_names: Vec<&str> = Vec::new();
    let mut command_payloads: Vec<&str> = Vec::new();
    let mut command_metadata: Vec<&str> = Vec::new();
    let mut outcomes: Vec<&str> = Vec::new();
    let mut outcome_details: Vec<&str> = Vec::new();
    let mut command_times: Vec<i64> = Vec::new();
    let events = commits.iter().map(|c| c.events.len()).sum();
    let mut ids: Vec<Uuid> = Vec::with_capacity(events);
    let mut event_streams: Vec<&str> = Vec::with_capacity(events);
    let mut versions: Vec<i64> = Vec::with_capacity(events);
    let mut names: Vec<&str> = Vec::with_capacity(events);
    let mut schema_versions: Vec<i64> = Vec::with_capacity(events);
    let mut payloads: Vec<&str> = Vec::with_capacity(events);
    let mut metadata: Vec<&str> = Vec::with_capacity(events);
    let mut times: Vec<i64> = Vec::with_capacity(events);
    for commit in commits {
        for (stream, version) in &commit.streams {
            streams.push(stream.as_str());
            expected.push(*version);
        }
        if let Some(command) = &commit.command {
            command_ids.push(command.command_id);
            command_names.push(&command.name);
            command_payloads.push(&command.payload);
            command_metadata.push(&command.metadata);
            outcomes.push(command.outcome);
            outcome_details.push(&command.outcome_detail);
            command_times.push(command.recorded_at_ns);
        }
        for event in &commit.events {
            ids.push(event.event.event_id);
            event_streams.push(commit.streams[event.stream].0.as_str());
            versions.push(event.stream_version);
            names.push(&event.event.event_name);
            schema_versions.push(event.schema_version);
            payloads.push(&event.payload);
            metadata.push(&event.metadata);
            times.push(commit.recorded_at_ns);
        }
    }
    sqlx::query_as(
        "WITH current AS (
             SELECT s.ord,
                    (SELECT COALESCE(MAX(e.stream_version), 0) FROM eventsourcery_events e
                     WHERE e.stream_id = s.stream_id) AS actual,
                    s.expected
             FROM UNNEST((SELECT $1::text[]), $2::bigint[]) WITH ORDINALITY AS s(stream_id, expected, ord)
         ), verdict AS (
             SELECT COALESCE(bool_and(actual = expected), TRUE) AS ok FROM current
         ), allocated AS (
             SELECT eventsourcery_allocate_positions($10) AS first
             FROM verdict WHERE verdict.ok AND $10 > 0
         ), commands AS (
             INSERT INTO eventsourcery_commands (command_id, name, payload, metadata,
                 outcome, outcome_detail, recorded_at_ns)
             SELECT c.command_id, c.name, c.payload::jsonb, c.metadata::jsonb, c.outcome,
                    c.outcome_detail::jsonb, c.recorded_at_ns
             FROM verdict LEFT JOIN allocated ON TRUE,
                  UNNEST((SELECT $3::uuid[]), $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::bigint[])
                  WITH ORDINALITY AS c(command_id, name, payload, metadata, outcome,
                                       outcome_detail, recorded_at_ns, ord)
             WHERE verdict.ok AND ($10 = 0 OR allocated.first IS NOT NULL)
             ORDER BY c.ord
             RETURNING 1
         ), inserted AS (
             INSERT INTO eventsourcery_events (position, event_id, stream_id, stream_version,
                 event_name, schema_version, payload, metadata, recorded_at_ns)
             SELECT allocated.first + e.ord - 1, e.event_id, e.stream_id, e.stream_version,
                    e.event_name, e.schema_version, e.payload::jsonb, e.metadata::jsonb,
                    e.recorded_at_ns
             FROM allocated,
                  UNNEST((SELECT $11::uuid[]), $12::text[], $13::bigint[], $14::text[], $15::bigint[],
                         $16::text[], $17::text[], $18::bigint[])
                  WITH ORDINALITY AS e(event_id, stream_id, stream_version, event_name,
                                       schema_version, payload, metadata, recorded_at_ns, ord)
             ORDER BY e.stream_id, e.stream_version
             RETURNING 1
         )
         SELECT (SELECT first FROM allocated), ARRAY(SELECT actual FROM current ORDER BY ord)",
    )
    .bind(streams)
    .bind(expected)
    .bind(command_ids)
    .bind(command_names)
    .bind(command_payloads)
    .bind(command_metadata)
    .bind(outcomes)
    .bind(outcome_details)
    .bind(command_times)
    .bind(events as i64)
    .bind(ids)
    .bind(event_streams)
    .bind(versions)
    .bind(names)
    .bind(schema_versions)
    .bind(payloads)
    .bind(metadata)
    .bind(times)
    .fetch_one(pool)
    .await
}
