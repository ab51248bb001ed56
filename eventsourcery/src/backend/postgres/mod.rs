//! The PostgreSQL event store: many processes, one database.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::backend::sql::{self, PreparedCommit, Schema, db};
use crate::store::{RecordedEvent, StoreError};

mod group;
mod keys;
mod personal;

pub use keys::PostgresKeyStore;
pub use personal::PostgresPersonalStore;

/// The event store's statements in PostgreSQL's dialect: UUIDs and `jsonb` are selected as
/// text, and JSON text is cast to `jsonb` on the way in.
const EVENT_SQL: sql::EventSql = sql::EventSql {
    read_stream: "SELECT position, event_id::text, stream_id, stream_version, event_name, \
            schema_version, payload::text, metadata::text, recorded_at_ns \
        FROM eventsourcery_events WHERE stream_id = $1 AND stream_version > $2 \
        ORDER BY stream_version LIMIT $3",
    load_stream: "SELECT position, stream_version, event_name, schema_version, payload::text \
        FROM eventsourcery_events WHERE stream_id = $1 AND stream_version > $2 \
        ORDER BY stream_version LIMIT $3",
    read_commands: "SELECT seq, command_id::text, name, payload::text, metadata::text, \
            outcome_detail::text, recorded_at_ns \
        FROM eventsourcery_commands ORDER BY seq LIMIT $2 OFFSET $1",
    load_snapshot: "SELECT stream_version, snapshot_version, state::text \
        FROM eventsourcery_snapshots WHERE stream_id = $1",
    lock_checkpoint: "SELECT position FROM eventsourcery_consumers WHERE name = $1 FOR UPDATE",
    save_snapshot: "INSERT INTO eventsourcery_snapshots \
            (stream_id, stream_version, snapshot_version, state, saved_at_ns) \
        VALUES ($1, $2, $3, $4::jsonb, $5) \
        ON CONFLICT (stream_id) DO UPDATE SET stream_version = excluded.stream_version, \
            snapshot_version = excluded.snapshot_version, state = excluded.state, \
            saved_at_ns = excluded.saved_at_ns \
        WHERE excluded.stream_version >= eventsourcery_snapshots.stream_version",
};

/// The embedded migrations, newest last.
const SCHEMA: Schema = Schema {
    database: "PostgreSQL event store",
    migrations: &[
        sql::migration!(1, "event store", "postgres/0001_event_store.sql"),
        sql::migration!(2, "consumers", "postgres/0002_consumers.sql"),
        sql::migration!(3, "parallel appends", "postgres/0003_parallel_appends.sql"),
        sql::migration!(4, "notify appends", "postgres/0004_notify_appends.sql"),
        sql::migration!(
            5,
            "notify from the store",
            "postgres/0005_notify_from_the_store.sql"
        ),
    ],
};

/// Connections opened by [`PostgresStore::connect`].
const MAX_CONNECTIONS: u32 = 10;

/// A pooled connection idle for longer than this is checked with a round trip before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How long `read_all` waits for committed events that older transactions hold back.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// The shortest time between two notifications of appends to other processes: the longest a
/// busy store delays their wake-up, against one notifying transaction per append.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);

/// The constraint a second writer at the same stream version violates.
const STREAM_VERSION_KEY: &str = "eventsourcery_events_stream_version_key";

/// The constraint a second event with the same id violates.
const EVENT_ID_KEY: &str = "eventsourcery_events_event_id_key";

/// An event store in a PostgreSQL database, shared by any number of processes.
///
/// # Global positions
///
/// A reader of [`read_all`](crate::store::EventStore::read_all) must never skip an event that
/// commits late. PostgreSQL sequences hand out values in call order, but transactions commit in
/// any order:
/// with positions from a plain sequence, a reader can see position 11 committed while 10 is
/// still in flight, move its checkpoint past 10, and never see it.
///
/// This store lets appends commit in parallel and makes readers wait instead. Each event
/// records its transaction's id (`xid8`). An append's positions come from
/// `eventsourcery_allocate_positions`, which assigns the transaction its id and takes the
/// positions from a sequence inside one short critical section (an advisory lock held only
/// for those two steps, not until commit), so transaction ids and positions are handed out in
/// the same order. `read_all` returns events in position order and stops at the first one
/// whose transaction is not older than the oldest transaction still running,
/// `pg_snapshot_xmin(pg_current_snapshot())`: every event before a returned one belongs to a
/// transaction that has already ended, so none can appear behind a reader's checkpoint later.
/// An event whose transaction id is beyond any this cluster has issued (restored from another
/// cluster) counts as ended. Transaction ids as `xid8` need PostgreSQL 13 or newer.
///
/// What this costs: an event can be returned by `read_all` only once every transaction that
/// writes anything and is older than its own has ended, anywhere in the cluster. That is
/// normally a matter of milliseconds, and `read_all` waits for it (up to ten seconds) rather
/// than return a short page, so a page holds every event committed before the call. A
/// writing transaction longer than that holds readers back until it ends (it never holds
/// appends back). `read_stream` is not affected. Positions increase strictly but may skip a
/// value where an append lost a race and rolled back.
///
/// The alternative, allocating positions from a counter row that each append locks until it
/// commits, gives gapless positions and immediate visibility, but commits appends one at a
/// time, so throughput is bounded by one commit's latency whatever the number of writers.
/// Measured on PostgreSQL 15 with 2 cores, 8 writers of single-event appends against a loop of
/// raw single-row inserts on one connection: 0.7 times its rate with the counter row, 1.2
/// times with this design.
///
/// # Group commit
///
/// An append is one statement, hence one round trip and one implicit transaction. Appends
/// made at the same time by one store (and its clones) share a statement: while one is being
/// written, the next queue up and go together, so one round trip and one WAL flush serve them
/// all. Each still gets its own result: a commit that conflicts, reuses a stored event id or
/// holds a payload PostgreSQL refuses fails alone, having changed nothing, and the others are
/// written. Commits written together take consecutive positions, and at most two statements
/// per store are in flight. Measured with 8 writers on a 2-core machine, against single-row
/// inserts of the same rows in a plain table: 0.8 to 0.9 times their rate, against 0.5 times
/// with one statement per append (see BENCHMARKS.md).
///
/// # Notifications
///
/// Dispatch workers of other processes LISTEN on the channel `eventsourcery_events`. The
/// store notifies it after its appends commit, from a statement of its own, at most once
/// every 5 ms while appends keep coming (a notifying transaction holds a database-wide lock
/// through its commit, so notifying from the appends would queue them behind each other).
/// Workers also poll, so events inserted by anything but a `PostgresStore` reach them at their
/// next poll.
///
/// # Concurrency
///
/// Each stream's version is checked in the appending statement, so the common conflict is
/// reported with the precise current version. Two writers that pass the check at once are
/// told apart by the unique constraint on `(stream_id, stream_version)` (SQLSTATE 23505),
/// never by message text, and the loser gets [`StoreError::Conflict`], having changed
/// nothing.
///
/// Tables are created unqualified, in the first schema of the connections' `search_path`; to
/// keep them in a schema of their own, create it and set `search_path` in the connect options
/// of the pool given to [`from_pool`](Self::from_pool). JSON is stored as `jsonb`, which
/// cannot hold the character U+0000: an append whose payload contains it fails.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    shared: Arc<Shared>,
}

/// What the clones of one store share.
#[derive(Default)]
struct Shared {
    /// The connection that LISTENs for appends of other processes, opened on first use by a
    /// dispatch worker.
    listener: tokio::sync::Mutex<Option<sqlx::postgres::PgListener>>,
    /// Appends waiting to be written together.
    group: group::Group,
    /// Wakes the task that notifies other processes of appends; started on the first append.
    notifier: std::sync::Mutex<Option<mpsc::Sender<()>>>,
}

impl sql::Backend for Postgres {
    const REFUSES_MALFORMED_JSON: bool = true;

    type Uuid = Uuid;
    type Uuids = Vec<Uuid>;
    type After = Option<Uuid>;

    fn uuid(id: Uuid) -> Uuid {
        id
    }

    fn uuids(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
        ids.collect()
    }

    fn after(id: Option<Uuid>) -> Option<Uuid> {
        id
    }

    async fn has_table(pool: &PgPool, table: &'static str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(pool)
            .await
    }

    async fn run_migrator(
        pool: &PgPool,
        migrator: Migrator,
    ) -> Result<Result<(), MigrateError>, sqlx::Error> {
        // sqlx's migrator serialises migrating processes with a session-level advisory lock,
        // which it does not release when a migration fails. It gets a connection of its own,
        // closed afterwards, so a failure cannot leave the lock on a pooled connection.
        let options = (*pool.connect_options()).clone();
        let dedicated = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let migrated = migrator.run(&dedicated).await;
        dedicated.close().await;
        Ok(migrated)
    }
}

/// The error of a sequence that handed out a negative position.
fn negative_position(first: i64) -> StoreError {
    StoreError::Corrupt {
        table: "eventsourcery_position_seq",
        location: "the sequence".into(),
        reason: format!("it allocated a negative position: {first}"),
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = self.pool.connect_options();
        f.debug_struct("PostgresStore")
            .field("host", &options.get_host())
            .field("database", &options.get_database())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:5432/database`) with a pool of
    /// up to 10 connections, and migrates its schema.
    ///
    /// Fails with [`StoreError::SchemaTooNew`] if a newer program migrated the database.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = Self::pool_options()
            .connect(url)
            .await
            .map_err(db("connect"))?;
        Self::from_pool(pool).await
    }

    /// The pool options that [`connect`](Self::connect) and the PostgreSQL personal data stores'
    /// `connect` use, for a pool of your own that behaves the same (with more connections, or
    /// a `search_path` in its connect options, say): up to 10 connections, and a connection is
    /// checked with a ping on its way out of the pool only if it sat idle there for more than a
    /// second.
    ///
    /// sqlx's default pings every connection on its way out, a round trip in front of every
    /// statement: measured with one writer, appends are 10 to 15% faster without it. (sqlx
    /// still pings a connection when it goes back to the pool, off the caller's path.) The
    /// cost: a connection that broke while idle for less than a second, in a server restart
    /// say, fails its next statement instead of being replaced before it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventsourcery::PostgresStore;
    /// use eventsourcery::sqlx::postgres::PgConnectOptions;
    ///
    /// // The tables in a schema of their own, which must exist: set in the connect options,
    /// // so that the connection that migrates the schema has it too.
    /// let options: PgConnectOptions = "postgres://postgres@localhost/app".parse()?;
    /// let pool = PostgresStore::pool_options()
    ///     .max_connections(20)
    ///     .connect_with(options.options([("search_path", "orders")]))
    ///     .await?;
    /// let store = PostgresStore::from_pool(pool).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
    }

    /// A store over an existing pool, whose schema is migrated first.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        let store = Self {
            pool,
            shared: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The connection pool, for tables of the application kept beside the event store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Waits up to `timeout` for a notification that events were appended (by any process).
    pub(crate) async fn wait_for_append(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(), StoreError> {
        let mut slot = self.shared.listener.lock().await;
        if slot.is_none() {
            let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
                .await
                .map_err(db("listen"))?;
            listener
                .listen("eventsourcery_events")
                .await
                .map_err(db("listen"))?;
            *slot = Some(listener);
        }
        let Some(listener) = slot.as_mut() else {
            return Ok(());
        };
        match tokio::time::timeout(timeout, listener.recv()).await {
            Ok(Ok(_)) | Err(_) => Ok(()),
            Ok(Err(error)) => {
                // Reconnect on the next wait.
                *slot = None;
                Err(db("listen")(error))
            }
        }
    }

    /// Closes the LISTEN connection of [`wait_for_append`](Self::wait_for_append), if open, so
    /// that it does not keep the pool from closing.
    pub(crate) async fn stop_waiting(&self) {
        // Dropped, the listener hands its connection back to the pool from a task of its own
        // (after `UNLISTEN *`); `close` waits for it.
        drop(self.shared.listener.lock().await.take());
    }

    /// Tells dispatch workers of other processes (LISTENing on `eventsourcery_events`) that
    /// events were appended.
    ///
    /// The notification is sent by a task of its own, from a statement of its own after the
    /// append committed: PostgreSQL makes a transaction that notifies hold a database-wide lock
    /// through its commit, which would queue every append's commit behind the others'. While
    /// one notification is being sent, and for [`NOTIFY_INTERVAL`] after, the appends that
    /// follow share the next one.
    fn appended(&self) {
        let mut notifier = self
            .shared
            .notifier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Started on the first append, and again if the runtime it ran on has shut down.
        let sender = match notifier.as_ref() {
            Some(sender) if !sender.is_closed() => sender,
            _ => notifier.insert(self.spawn_notifier()),
        };
        // Full means a notification is already due, and it will cover this append.
        let _ = sender.try_send(());
    }

    /// The task that sends the notifications; it ends when the last clone of the store is
    /// dropped, with the sender.
    fn spawn_notifier(&self) -> mpsc::Sender<()> {
        let (sender, mut poked) = mpsc::channel::<()>(1);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            while poked.recv().await.is_some() {
                let notified = sqlx::query("SELECT pg_notify('eventsourcery_events', '')")
                    .execute(&pool)
                    .await;
                if let Err(error) = notified {
                    // Workers also poll, so they only notice later.
                    tracing::warn!(%error, "could not notify other processes of appends");
                }
                tokio::time::sleep(NOTIFY_INTERVAL).await;
            }
        });
        sender
    }

    /// Applies the embedded migrations that the database does not have yet.
    ///
    /// Run by every constructor; safe to call again and from several processes at once (they
    /// take turns on an advisory lock). Fails with [`StoreError::SchemaTooNew`], changing
    /// nothing, if a newer program migrated the database.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        SCHEMA.migrate(&self.pool, sql::MIGRATIONS_TABLE).await
    }

    /// The current version of each stream of `commit`, in order.
    async fn versions<'c, E>(
        &self,
        executor: E,
        commit: &PreparedCommit,
    ) -> Result<Vec<i64>, StoreError>
    where
        E: sqlx::Executor<'c, Database = Postgres>,
    {
        let streams: Vec<&str> = commit.streams.iter().map(|(s, _)| s.as_str()).collect();
        // A scalar subquery per stream, so each MAX is one index probe.
        sqlx::query_scalar(
            "SELECT (SELECT COALESCE(MAX(e.stream_version), 0)
                     FROM eventsourcery_events e WHERE e.stream_id = s.stream_id)
             FROM UNNEST($1::text[]) WITH ORDINALITY AS s(stream_id, ord)
             ORDER BY s.ord",
        )
        .bind(streams)
        .fetch_all(executor)
        .await
        .map_err(db("append"))
    }

    /// The first stream of `commit` whose version is not the expected one.
    fn first_conflict(commit: &PreparedCommit, versions: &[i64]) -> Option<StoreError> {
        commit
            .streams
            .iter()
            .zip(versions)
            .position(|((_, expected), actual)| actual != expected)
            .map(|index| commit.conflict(index, versions[index]))
    }

    async fn append_prepared(
        &self,
        commit: PreparedCommit,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match group::append_statement(&self.pool, &[&commit]).await {
            Ok((Some(first), _)) => {
                let first = u64::try_from(first).map_err(|_| negative_position(first))?;
                self.appended();
                Ok(commit.into_recorded(first))
            }
            Ok((None, versions)) => match Self::first_conflict(&commit, &versions) {
                Some(conflict) => Err(conflict),
                // Nothing to insert: a command-only commit, or streams without events.
                None => Ok(Vec::new()),
            },
            Err(error) => match sql::unique_violation(&error) {
                Some(Some(STREAM_VERSION_KEY)) => Err(self.lost_race(&commit).await?),
                Some(Some(EVENT_ID_KEY)) => Err(self.duplicate_id(&commit).await?),
                _ => Err(db("append")(error)),
            },
        }
    }

    /// Up to `limit` events after `after_position`, stopping at the first one whose
    /// transaction may have predecessors still running (an event after it could move a
    /// reader's checkpoint past one that commits late); and whether one was held back.
    async fn read_settled(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, bool), StoreError> {
        // One statement, so the horizon is taken from the snapshot the rows are read with.
        let rows = sqlx::query(
            "WITH horizon AS (SELECT pg_current_snapshot() AS snapshot)
             SELECT position, event_id::text, stream_id, stream_version, event_name,
                    schema_version, payload::text, metadata::text, recorded_at_ns,
                    transaction_id < pg_snapshot_xmin(horizon.snapshot)
                        OR transaction_id >= pg_snapshot_xmax(horizon.snapshot) AS settled
             FROM eventsourcery_events, horizon
             WHERE position > $1
             ORDER BY position
             LIMIT $2",
        )
        .bind(sql::bound(after_position))
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("read_all"))?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let settled: bool = row.try_get(9).map_err(db("read_all"))?;
            if !settled {
                return Ok((events, true));
            }
            events.push(sql::StoreRow::event(row)?);
        }
        Ok((events, false))
    }

    /// The conflict of an append that lost a race after its version check passed.
    async fn lost_race(&self, commit: &PreparedCommit) -> Result<StoreError, StoreError> {
        let versions = self.versions(&self.pool, commit).await?;
        Ok(Self::first_conflict(commit, &versions).unwrap_or_else(|| {
            // The winner's events are committed, so this is unreachable short of a deletion;
            // report the lowest version the clash proves.
            let (_, expected) = commit.streams[0];
            commit.conflict(0, expected + 1)
        }))
    }

    /// The error of an append whose event id is already stored.
    async fn duplicate_id(&self, commit: &PreparedCommit) -> Result<StoreError, StoreError> {
        let ids: Vec<Uuid> = commit.events.iter().map(|e| e.event.event_id).collect();
        let stored: Vec<Uuid> = sqlx::query_scalar(
            "SELECT event_id FROM eventsourcery_events WHERE event_id = ANY($1::uuid[])",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db("append"))?;
        let id = ids.iter().find(|id| stored.contains(id)).or(ids.first());
        Ok(StoreError::InvalidAppend(match id {
            Some(id) => format!("event id {id} is already stored"),
            None => "an event id is already stored".to_owned(),
        }))
    }
}

impl sql::SqlStore for PostgresStore {
    type Db = Postgres;
    type Writer = ();

    const NAME: &'static str = "postgres";
    const SQL: &'static sql::EventSql = &EVENT_SQL;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn append_prepared(
        &self,
        commit: PreparedCommit,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.shared.group.append(self, commit).await
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // When an event of the page is held back by older transactions, wait for them (they
        // are usually done within milliseconds) rather than return a short page, so that a
        // page holds every event committed before the call. Past the deadline, return the
        // events that are settled.
        let deadline = Instant::now() + SETTLE_WAIT;
        let mut pause = Duration::from_micros(200);
        loop {
            let (events, held_back) = self.read_settled(after_position, limit).await?;
            if !held_back || Instant::now() >= deadline {
                return Ok(events);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    async fn writer(&self) {}

    async fn begin_write(&self) -> Result<((), Transaction<'static, Postgres>), StoreError> {
        Ok(((), self.pool.begin().await.map_err(db("begin"))?))
    }

    async fn wait_for_append(&self, timeout: Duration) -> Result<(), StoreError> {
        self.wait_for_append(timeout).await
    }

    async fn stop_waiting(&self) {
        self.stop_waiting().await
    }
}

impl sql::consumers::RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}
