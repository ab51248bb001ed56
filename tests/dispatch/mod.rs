//! The dispatch suite, run on every backend: listeners, process managers, projections,
//! parking, rebuilds, crashes between handling and checkpointing.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsourcery::StoreError;
use eventsourcery::dispatch::ProjectionTx;
use eventsourcery::dispatch::{
    Commands, ConsumerEntry, ConsumerState, ConsumerStore, DispatchConfig, Dispatcher, EventMeta,
    Once, PersonalRefs, TxWork,
};
use eventsourcery::erasure::{SubjectErased, stream_of};
use eventsourcery::personal::PersonalRef;
use eventsourcery::store::RecordedEvent;
use eventsourcery::store::{CommandRecord, Commit, Snapshot};
use eventsourcery::value::StreamId;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, Dep, DomainEvent, EventStore, Id, MemoryStore, Personal,
    PersonalData, PersonalKey, PersonalVault, Repository, SerializableValue,
};
use uuid::Uuid;

mod partitions;
pub use partitions::*;

#[derive(SerializableValue, Clone, Debug)]
struct TicketId(Uuid);

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(DomainEvent, Debug)]
#[event(subject = holder)]
struct TicketSold {
    ticket: TicketId,
    holder: PersonalKey,
    #[personal]
    email: Personal<Email>,
}

#[derive(DomainEvent, Debug)]
struct WelcomeSent {
    ticket: TicketId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = TicketId, events(TicketSold, WelcomeSent))]
struct Ticket {
    welcomed: bool,
}

impl Apply<TicketSold> for Ticket {
    fn apply(&mut self, _: &TicketSold) {}
}

impl Apply<WelcomeSent> for Ticket {
    fn apply(&mut self, _: &WelcomeSent) {
        self.welcomed = true;
    }
}

#[derive(Command, Clone)]
#[command(subject = holder)]
struct SellTicket {
    ticket: TicketId,
    holder: PersonalKey,
    #[personal]
    email: Email,
}

#[derive(Command, Clone)]
struct SendWelcome {
    ticket: TicketId,
}

#[eventsourcery::handler]
async fn sell(cmd: SellTicket, tickets: Repository<Ticket>) -> Result<(), eventsourcery::Error> {
    let mut ticket = tickets.load(&cmd.ticket).await?;
    ticket.raise(TicketSold {
        ticket: cmd.ticket,
        holder: cmd.holder,
        email: cmd.email.into(),
    });
    tickets.save(&mut ticket).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn send_welcome(
    cmd: SendWelcome,
    tickets: Repository<Ticket>,
) -> Result<(), eventsourcery::Error> {
    let mut ticket = tickets.load(&cmd.ticket).await?;
    if !ticket.welcomed {
        ticket.raise(WelcomeSent { ticket: cmd.ticket });
        tickets.save(&mut ticket).await?;
    }
    Ok(())
}

/// What the consumers of one test saw.
#[derive(Default)]
struct Seen {
    emails: Mutex<Vec<Option<String>>>,
    metas: Mutex<Vec<EventMeta>>,
    failures_left: AtomicU32,
    poison: Mutex<Option<u64>>,
    /// Subjects the `forgetful_mailer` was told were erased.
    forgotten: Mutex<Vec<PersonalKey>>,
    /// What the `reference_model` kept of each ticket holder's address: a reference.
    references: Mutex<Vec<String>>,
}

/// Forgets the subjects the log says were erased.
#[eventsourcery::listener(consumer = "forgetful_mailer")]
async fn forget(event: SubjectErased, seen: Dep<Seen>) {
    seen.forgotten.lock().unwrap().push(event.subject);
}

/// A read model that keeps each holder's address by reference: no plaintext at all.
#[eventsourcery::listener(consumer = "reference_model")]
async fn keep_reference(_event: TicketSold, refs: PersonalRefs, seen: Dep<Seen>) {
    if let Some(email) = refs.get::<Email>("email") {
        seen.references.lock().unwrap().push(email.to_string());
    }
}

#[eventsourcery::listener(consumer = "mailer")]
async fn mailer(event: TicketSold, meta: EventMeta, seen: Dep<Seen>) -> Result<(), std::io::Error> {
    if *seen.poison.lock().unwrap() == Some(meta.position) {
        return Err(std::io::Error::other("mail server rejects this one"));
    }
    if seen.failures_left.load(Ordering::SeqCst) > 0 {
        seen.failures_left.fetch_sub(1, Ordering::SeqCst);
        return Err(std::io::Error::other("mail server down"));
    }
    seen.emails
        .lock()
        .unwrap()
        .push(event.email.present().map(|e| e.0.clone()));
    seen.metas.lock().unwrap().push(meta);
    Ok(())
}

#[eventsourcery::listener(consumer = "audit")]
async fn audit(_: TicketSold, meta: EventMeta, seen: Dep<Seen>) {
    seen.metas.lock().unwrap().push(meta);
}

#[eventsourcery::process_manager(consumer = "welcomer")]
async fn welcomer(
    event: TicketSold,
    commands: Commands,
) -> Result<(), eventsourcery::CommandError> {
    commands
        .execute(SendWelcome {
            ticket: event.ticket,
        })
        .await?;
    Ok(())
}

/// An in-memory read model: ticket holders' emails.
#[derive(Default)]
struct Holders(Mutex<Vec<(String, Option<String>)>>);

#[eventsourcery::projection(consumer = "holders", reset = clear_holders)]
async fn holders(event: TicketSold, _tx: &mut ProjectionTx<'_>, holders: Dep<Holders>) {
    holders.0.lock().unwrap().push((
        event.ticket.to_string(),
        event.email.present().map(|e| e.0.clone()),
    ));
}

async fn clear_holders(_tx: &mut ProjectionTx<'_>) {}

/// The connection behind a backend, for the read model tables of the SQL projection tests.
#[derive(Clone)]
pub enum Pool {
    Memory,
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// One backend's store.
pub struct Backend {
    pub store: Arc<dyn ConsumerStore>,
    pub pool: Pool,
}

impl Backend {
    pub fn memory() -> Self {
        Backend {
            store: Arc::new(MemoryStore::new()),
            pool: Pool::Memory,
        }
    }
}

struct Setup {
    store: Arc<dyn ConsumerStore>,
    pool: Pool,
    bus: CommandBus,
    vault: Arc<PersonalVault>,
    seen: Arc<Seen>,
}

fn setup(backend: Backend) -> Setup {
    let store = backend.store;
    let vault = Arc::new(PersonalVault::in_memory().unwrap());
    let seen = Arc::new(Seen::default());
    let bus = CommandBus::builder(store.clone())
        .personal_data(vault.clone())
        .service_shared(seen.clone())
        .build()
        .unwrap();
    Setup {
        store,
        pool: backend.pool,
        bus,
        vault,
        seen,
    }
}

fn fast() -> DispatchConfig {
    let mut config = DispatchConfig::default();
    config.backoff = Duration::from_millis(1);
    config.max_backoff = Duration::from_millis(2);
    config.max_attempts = 3;
    config.batch_size = 7;
    config
}

fn dispatcher(s: &Setup, only: &[&str]) -> Arc<Dispatcher> {
    Dispatcher::builder(&s.bus, s.store.clone())
        .only(only.iter().copied())
        .config(fast())
        .build()
        .unwrap()
}

async fn sell_one(s: &Setup, email: &str) -> (TicketId, PersonalKey) {
    let (ticket, holder) = (TicketId::generate(), PersonalKey::issue());
    s.bus
        .execute(SellTicket {
            ticket: ticket.clone(),
            holder,
            email: Email(email.into()),
        })
        .await
        .unwrap();
    (ticket, holder)
}

pub async fn a_listener_sees_each_event_once_with_personal_data_decrypted(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["mailer"]);
    for i in 0..20 {
        sell_one(&s, &format!("h{i}@example.com")).await;
    }
    let done = dispatcher.catch_up().await.unwrap();
    assert_eq!(done.handled, 20);
    assert_eq!(dispatcher.catch_up().await.unwrap().handled, 0);
    let emails = s.seen.emails.lock().unwrap().clone();
    assert_eq!(emails.len(), 20);
    assert_eq!(emails[3].as_deref(), Some("h3@example.com"));
    assert_eq!(dispatcher.state("mailer").await.unwrap().position, 20);
}

pub async fn rebuilding_an_aggregate_never_triggers_a_consumer(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["audit"]);
    let (ticket, _) = sell_one(&s, "a@example.com").await;
    dispatcher.catch_up().await.unwrap();
    for _ in 0..3 {
        s.bus.repository::<Ticket>().load(&ticket).await.unwrap();
    }
    assert_eq!(dispatcher.catch_up().await.unwrap().handled, 0);
    assert_eq!(s.seen.metas.lock().unwrap().len(), 1);
}

pub async fn a_process_manager_command_carries_correlation_and_causation(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["welcomer"]);
    let (ticket, holder) = (TicketId::generate(), PersonalKey::issue());
    let receipt = s
        .bus
        .execute(SellTicket {
            ticket: ticket.clone(),
            holder,
            email: Email("w@example.com".into()),
        })
        .await
        .unwrap();
    dispatcher.catch_up().await.unwrap();
    let events = s
        .store
        .read_stream(
            &eventsourcery::value::StreamId::for_aggregate("ticket", &ticket),
            0,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let (sold, welcome) = (&events[0], &events[1]);
    assert_eq!(welcome.event_name, "welcome_sent");
    assert_eq!(
        welcome.metadata.correlation_id,
        Some(receipt.correlation_id)
    );
    let command_log = s.store.read_commands(0, 10).await.unwrap();
    let send = command_log
        .iter()
        .find(|c| c.name == "send_welcome")
        .unwrap();
    assert_eq!(send.metadata.causation_id, Some(sold.event_id));
    assert_eq!(send.metadata.correlation_id, Some(receipt.correlation_id));
    assert_eq!(welcome.metadata.causation_id, Some(sold.event_id));
    assert_eq!(welcome.metadata.command_id, Some(send.command_id));
}

pub async fn request_metadata_reaches_consumers_and_carries_on(backend: Backend) {
    use eventsourcery::bus::ExecuteOptions;
    use eventsourcery::event::RequestMetadata;

    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["audit", "welcomer"]);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let options = ExecuteOptions::correlated_by("req-7Yc2 from the gateway")
        .actor("user:42")
        .tenant("acme")
        .traceparent(traceparent)
        .with("channel", "web");
    let expected = RequestMetadata::new()
        .request_id("req-7Yc2 from the gateway")
        .actor("user:42")
        .tenant("acme")
        .traceparent(traceparent)
        .with("channel", "web");
    let correlation = options.correlation_id;
    let ticket = TicketId::generate();
    s.bus
        .execute_with(
            SellTicket {
                ticket: ticket.clone(),
                holder: PersonalKey::issue(),
                email: Email("meta@example.com".into()),
            },
            options,
        )
        .await
        .unwrap();
    dispatcher.catch_up().await.unwrap();

    // The listener's EventMeta.
    let metas = s.seen.metas.lock().unwrap().clone();
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].request, expected);
    assert_eq!(metas[0].correlation_id, correlation);

    // The stored events, the process manager's included, and both command log entries.
    let events = s
        .store
        .read_stream(&StreamId::for_aggregate("ticket", &ticket), 0)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event.metadata.request, expected, "{}", event.event_name);
        assert_eq!(event.metadata.correlation_id, correlation);
    }
    let log = s.store.read_commands(0, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    for command in &log {
        assert_eq!(command.metadata.request, expected, "{}", command.name);
    }

    // Metadata that breaks a limit is refused before anything is stored, and the message
    // names the key, not the value.
    let refused = s
        .bus
        .execute_with(
            SellTicket {
                ticket: TicketId::generate(),
                holder: PersonalKey::issue(),
                email: Email("refused@example.com".into()),
            },
            ExecuteOptions::new().actor("ann@example.com\n"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, eventsourcery::CommandError::InvalidMetadata { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.kind(), eventsourcery::command::ErrorKind::Invalid);
    assert!(!refused.to_string().contains("ann@"), "{refused}");
    assert_eq!(s.store.read_all(0, 100).await.unwrap().len(), 2);
    assert_eq!(s.store.read_commands(0, 10).await.unwrap().len(), 2);
}

pub async fn a_failing_consumer_is_retried_then_parked_while_others_run(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["mailer", "audit"]);
    sell_one(&s, "1@example.com").await;
    s.seen.failures_left.store(2, Ordering::SeqCst);
    sell_one(&s, "2@example.com").await;
    // Two failures, then success within 3 attempts: not parked.
    dispatcher.catch_up().await.unwrap();
    assert_eq!(s.seen.emails.lock().unwrap().len(), 2);

    *s.seen.poison.lock().unwrap() = Some(4);
    sell_one(&s, "3@example.com").await;
    sell_one(&s, "4@example.com").await;
    sell_one(&s, "5@example.com").await;
    let done = dispatcher.catch_up().await.unwrap();
    assert_eq!(done.parked, vec!["mailer".to_owned()]);
    let state = dispatcher.state("mailer").await.unwrap();
    let parked = state.parked.clone().unwrap();
    assert_eq!(parked.position, 4);
    // The event carries personal data, which the consumer saw decrypted: its message is not
    // kept, since a parked error is never erased.
    assert!(parked.error.contains("withheld"), "{}", parked.error);
    assert!(!parked.error.contains("@example.com"), "{}", parked.error);
    assert_eq!(
        state.position, 3,
        "the events before the poison one are done"
    );
    // The audit consumer went on to the end.
    assert_eq!(dispatcher.state("audit").await.unwrap().position, 5);
    // Parked, the mailer stays put.
    dispatcher.catch_up().await.unwrap();
    assert_eq!(s.seen.emails.lock().unwrap().len(), 3);

    let skipped = dispatcher
        .skip_parked("mailer", "ticket 4 bounced, handled by hand")
        .await
        .unwrap();
    assert_eq!(skipped, 4);
    dispatcher.catch_up().await.unwrap();
    let emails = s.seen.emails.lock().unwrap().clone();
    assert_eq!(emails.last().unwrap().as_deref(), Some("5@example.com"));
    assert_eq!(emails.len(), 4);
    assert_eq!(
        s.store.skipped("mailer").await.unwrap(),
        vec![(4, "ticket 4 bounced, handled by hand".to_owned())]
    );
}

pub async fn projections_rebuild_to_the_same_read_model_and_hold_no_erased_data(backend: Backend) {
    let s = setup(backend);
    let holders = Arc::new(Holders::default());
    let dispatcher = Dispatcher::builder(&s.bus, s.store.clone())
        .only(["holders"])
        .config(fast())
        .service_shared(holders.clone())
        .build()
        .unwrap();
    let mut subjects = Vec::new();
    for i in 0..30 {
        subjects.push(sell_one(&s, &format!("p{i}@example.com")).await.1);
    }
    dispatcher.catch_up().await.unwrap();
    let before = holders.0.lock().unwrap().clone();
    assert_eq!(before.len(), 30);

    holders.0.lock().unwrap().clear();
    let mut reports = Vec::new();
    let progress = dispatcher
        .rebuild("holders", |p| reports.push(p))
        .await
        .unwrap();
    assert_eq!(holders.0.lock().unwrap().clone(), before);
    assert_eq!((progress.done, progress.total), (30, 30));
    assert!(reports.len() >= 30 / 7, "progress per batch: {reports:?}");
    assert!(progress.rate > 0.0);

    s.vault.erase(subjects[5], "request").await.unwrap();
    holders.0.lock().unwrap().clear();
    dispatcher.rebuild("holders", |_| {}).await.unwrap();
    let after = holders.0.lock().unwrap().clone();
    assert_eq!(after.len(), 30);
    assert_eq!(after[5].1, None, "erased");
    assert!(
        !after
            .iter()
            .any(|(_, e)| e.as_deref() == Some("p5@example.com"))
    );
    assert_eq!(after[6].1.as_deref(), Some("p6@example.com"));
}

pub async fn inline_mode_dispatches_before_execute_returns(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["mailer", "welcomer"]);
    dispatcher.dispatch_inline();
    let (ticket, _) = sell_one(&s, "inline@example.com").await;
    assert_eq!(s.seen.emails.lock().unwrap().len(), 1);
    // The process manager's command, dispatched inline too, already ran.
    assert!(
        s.bus
            .repository::<Ticket>()
            .load(&ticket)
            .await
            .unwrap()
            .welcomed
    );
}

pub async fn worker_mode_wakes_on_commit(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["mailer"]);
    let worker = dispatcher.spawn();
    for i in 0..5 {
        sell_one(&s, &format!("w{i}@example.com")).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.seen.emails.lock().unwrap().len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker did not deliver"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.shutdown().await;
    assert_eq!(s.seen.emails.lock().unwrap().len(), 5);
}

pub async fn only_one_instance_runs_a_consumer_at_a_time(backend: Backend) {
    let s = setup(backend);
    let first = dispatcher(&s, &["audit"]);
    let second = dispatcher(&s, &["audit"]);
    sell_one(&s, "x@example.com").await;
    assert_eq!(first.catch_up().await.unwrap().handled, 1);
    let done = second.catch_up().await.unwrap();
    assert_eq!(done.not_claimed, vec!["audit".to_owned()]);
    assert_eq!(s.seen.metas.lock().unwrap().len(), 1);
}

/// A store that fails the next checkpoint move: a crash between handling and checkpointing.
pub struct CrashBeforeCheckpoint {
    inner: Arc<dyn ConsumerStore>,
    crash: std::sync::atomic::AtomicBool,
}

#[eventsourcery::store::async_trait]
impl EventStore for CrashBeforeCheckpoint {
    async fn append(&self, commit: Commit) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.append(commit).await
    }
    async fn read_stream_page(
        &self,
        stream: &StreamId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_page(stream, after, limit).await
    }
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }
    async fn read_commands(
        &self,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        self.inner.read_commands(offset, limit).await
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
}

#[eventsourcery::store::async_trait]
impl ConsumerStore for CrashBeforeCheckpoint {
    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState, StoreError> {
        self.inner.consumer_state(consumer).await
    }
    async fn advance(&self, consumer: &str, from: u64, to: u64) -> Result<(), StoreError> {
        if self.crash.swap(false, Ordering::SeqCst) {
            return Err(StoreError::InvalidAppend(
                "simulated crash before the checkpoint".into(),
            ));
        }
        self.inner.advance(consumer, from, to).await
    }
    async fn advance_with(
        &self,
        consumer: &str,
        from: u64,
        to: u64,
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), eventsourcery::error::BoxError>, StoreError> {
        self.inner.advance_with(consumer, from, to, work).await
    }
    async fn reset(
        &self,
        consumers: &[String],
        retire: &[String],
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), eventsourcery::error::BoxError>, StoreError> {
        self.inner.reset(consumers, retire, work).await
    }
    async fn park(&self, consumer: &str, position: u64, error: &str) -> Result<(), StoreError> {
        self.inner.park(consumer, position, error).await
    }
    async fn unpark(&self, consumer: &str) -> Result<(), StoreError> {
        self.inner.unpark(consumer).await
    }
    async fn skip(&self, consumer: &str, position: u64, reason: &str) -> Result<(), StoreError> {
        self.inner.skip(consumer, position, reason).await
    }
    async fn skipped(&self, consumer: &str) -> Result<Vec<(u64, String)>, StoreError> {
        self.inner.skipped(consumer).await
    }
    async fn claim(
        &self,
        consumer: &str,
        owner: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.claim(consumer, owner, lease).await
    }
    async fn release(&self, consumer: &str, owner: Uuid) -> Result<(), StoreError> {
        self.inner.release(consumer, owner).await
    }
    async fn consumers(&self, prefix: &str) -> Result<Vec<ConsumerEntry>, StoreError> {
        self.inner.consumers(prefix).await
    }
    async fn forget(&self, consumer: &str) -> Result<(), StoreError> {
        self.inner.forget(consumer).await
    }
    async fn forget_expired(&self, consumer: &str) -> Result<bool, StoreError> {
        self.inner.forget_expired(consumer).await
    }
    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        self.inner.mark_processed(consumer, event_id).await
    }
    async fn is_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        self.inner.is_processed(consumer, event_id).await
    }
}

/// What the idempotent listener delivered and did.
#[derive(Default)]
struct Effects {
    deliveries: AtomicU32,
    actions: AtomicU32,
}

#[eventsourcery::listener(consumer = "charger")]
async fn charger(_: TicketSold, once: Once, effects: Dep<Effects>) -> Result<(), StoreError> {
    effects.deliveries.fetch_add(1, Ordering::SeqCst);
    once.run(|| async {
        effects.actions.fetch_add(1, Ordering::SeqCst);
        Ok::<_, StoreError>(())
    })
    .await?;
    Ok(())
}

pub async fn a_crash_before_the_checkpoint_redelivers_and_once_absorbs_it(backend: Backend) {
    let crashing = Arc::new(CrashBeforeCheckpoint {
        inner: backend.store.clone(),
        crash: true.into(),
    });
    let s = setup(backend);
    let effects = Arc::new(Effects::default());
    let dispatcher = Dispatcher::builder(&s.bus, crashing.clone())
        .only(["charger"])
        .config(fast())
        .service_shared(effects.clone())
        .build()
        .unwrap();
    for i in 0..5 {
        sell_one(&s, &format!("c{i}@example.com")).await;
    }
    // The batch is handled, then the process "dies" before its checkpoint moves.
    assert!(dispatcher.catch_up().await.is_err());
    assert_eq!(s.store.consumer_state("charger").await.unwrap().position, 0);
    assert_eq!(effects.deliveries.load(Ordering::SeqCst), 5);
    // Redelivered, nothing lost, and the action happened once per event.
    dispatcher.catch_up().await.unwrap();
    assert_eq!(effects.deliveries.load(Ordering::SeqCst), 10);
    assert_eq!(effects.actions.load(Ordering::SeqCst), 5);
    assert_eq!(s.store.consumer_state("charger").await.unwrap().position, 5);
}

/// Fails a projection once, after its write, before its checkpoint.
#[derive(Default)]
struct CrashAfterWrite(std::sync::atomic::AtomicBool);

#[eventsourcery::projection(consumer = "sold_count", reset = reset_sold_count)]
async fn sold_count(
    _: TicketSold,
    tx: &mut ProjectionTx<'_>,
    crash: Dep<CrashAfterWrite>,
) -> Result<(), eventsourcery::error::BoxError> {
    const UPSERT: &str = "INSERT INTO sold_count (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = sold_count.n + 1";
    #[cfg(feature = "sqlite")]
    if let Some(conn) = tx.sqlite() {
        sqlx::query(UPSERT).execute(conn).await?;
    }
    #[cfg(feature = "postgres")]
    if let Some(conn) = tx.postgres() {
        sqlx::query(UPSERT).execute(conn).await?;
    }
    if !tx.is_transaction() {
        return Err("this projection lives in a SQL database".into());
    }
    if crash.0.swap(false, Ordering::SeqCst) {
        return Err("simulated crash after the write, before the checkpoint".into());
    }
    Ok(())
}

async fn reset_sold_count(tx: &mut ProjectionTx<'_>) -> Result<(), eventsourcery::error::BoxError> {
    #[cfg(feature = "sqlite")]
    if let Some(conn) = tx.sqlite() {
        sqlx::query("DELETE FROM sold_count").execute(conn).await?;
    }
    #[cfg(feature = "postgres")]
    if let Some(conn) = tx.postgres() {
        sqlx::query("DELETE FROM sold_count").execute(conn).await?;
    }
    Ok(())
}

async fn sold(pool: &Pool) -> i64 {
    const COUNT: &str = "SELECT COALESCE(MAX(n), 0) FROM sold_count";
    match pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await.unwrap(),
        #[cfg(feature = "postgres")]
        Pool::Postgres(pool) => sqlx::query_scalar::<_, i64>(COUNT)
            .fetch_one(pool)
            .await
            .unwrap(),
        Pool::Memory => panic!("SQL backends only"),
    }
}

async fn create_read_model(pool: &Pool) {
    const DDL: &str = "CREATE TABLE sold_count (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)";
    match pool {
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(pool) => {
            sqlx::query(DDL).execute(pool).await.unwrap();
        }
        #[cfg(feature = "postgres")]
        Pool::Postgres(pool) => {
            sqlx::query(DDL).execute(pool).await.unwrap();
        }
        Pool::Memory => panic!("SQL backends only"),
    }
}

/// SQL backends: a projection's write and its checkpoint commit together, so a crash between
/// them rolls the write back and the retry applies each event exactly once.
pub async fn a_projection_write_and_its_checkpoint_commit_together(backend: Backend) {
    let s = setup(backend);
    create_read_model(&s.pool).await;
    let crash = Arc::new(CrashAfterWrite(true.into()));
    let dispatcher = Dispatcher::builder(&s.bus, s.store.clone())
        .only(["sold_count"])
        .config(fast())
        .service_shared(crash.clone())
        .build()
        .unwrap();
    for i in 0..20 {
        sell_one(&s, &format!("s{i}@example.com")).await;
    }
    dispatcher.catch_up().await.unwrap();
    assert!(!crash.0.load(Ordering::SeqCst), "the crash happened");
    assert_eq!(sold(&s.pool).await, 20, "every event counted exactly once");
    assert_eq!(dispatcher.state("sold_count").await.unwrap().position, 20);
    // A rebuild clears the read model in the reset transaction and counts again.
    dispatcher.rebuild("sold_count", |_| {}).await.unwrap();
    assert_eq!(sold(&s.pool).await, 20);
}

/// The suite as tests; `$make` is an async expression giving `Option<(Backend, finish)>`.
/// Erasing through the bus appends the PII-free fact once per erasure, and a consumer
/// registered for it hears of it once; again after re-enrolment and a new erasure; concurrent
/// erasures append one fact.
pub async fn an_erasure_reaches_the_consumers_once(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["forgetful_mailer"]);
    let (_, ann) = sell_one(&s, "ann@example.com").await;
    s.bus.erase(ann, "request 1").await.unwrap();
    s.bus.erase(ann, "request 1, again").await.unwrap();
    dispatcher.catch_up().await.unwrap();
    assert_eq!(*s.seen.forgotten.lock().unwrap(), [ann]);
    let facts = s.store.read_stream(&stream_of(ann), 0).await.unwrap();
    assert_eq!(facts.len(), 1, "one fact per erasure");
    assert!(
        !facts[0].payload.to_string().contains("ann@example.com"),
        "the fact holds no personal data"
    );
    assert_eq!(facts[0].payload["reason"], "request 1");

    s.vault.re_enroll(ann).await.unwrap();
    s.bus
        .execute(SellTicket {
            ticket: TicketId::generate(),
            holder: ann,
            email: Email("ann@new.example".into()),
        })
        .await
        .unwrap();
    s.bus.erase(ann, "request 2").await.unwrap();
    dispatcher.catch_up().await.unwrap();
    assert_eq!(*s.seen.forgotten.lock().unwrap(), [ann, ann]);
    dispatcher.catch_up().await.unwrap();
    assert_eq!(s.seen.forgotten.lock().unwrap().len(), 2, "each fact once");

    let (_, bob) = sell_one(&s, "bob@example.com").await;
    let erasures: Vec<_> = (0..4)
        .map(|i| {
            let bus = s.bus.clone();
            tokio::spawn(async move { bus.erase(bob, &format!("request {i}")).await })
        })
        .collect();
    for erasure in erasures {
        erasure.await.unwrap().unwrap();
    }
    assert_eq!(
        s.store.read_stream(&stream_of(bob), 0).await.unwrap().len(),
        1,
        "concurrent erasures append one fact"
    );
}

/// A read model that keeps personal values by reference holds no plaintext, reads the values
/// through the vault, and reads them as erased once the subject is forgotten.
pub async fn a_read_model_holds_references_and_reads_erasures(backend: Backend) {
    let s = setup(backend);
    let dispatcher = dispatcher(&s, &["reference_model"]);
    let (_, ann) = sell_one(&s, "ann@example.com").await;
    sell_one(&s, "bob@example.com").await;
    dispatcher.catch_up().await.unwrap();
    let kept = s.seen.references.lock().unwrap().clone();
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|r| !r.contains("@example.com")), "{kept:?}");
    let refs: Vec<PersonalRef<Email>> = kept.iter().map(|r| r.parse().unwrap()).collect();
    let read = s.vault.resolve_refs(&refs).await.unwrap();
    let emails: Vec<Option<&str>> = read
        .iter()
        .map(|e| e.present().map(|e| e.0.as_str()))
        .collect();
    assert_eq!(emails, [Some("ann@example.com"), Some("bob@example.com")]);

    s.bus.erase(ann, "request").await.unwrap();
    let read = s.vault.resolve_refs(&refs).await.unwrap();
    assert!(read[0].is_erased());
    assert_eq!(
        read[1].present().map(|e| e.0.as_str()),
        Some("bob@example.com")
    );
}

#[macro_export]
macro_rules! dispatch_suite {
    ($make:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some((backend, finish)) = $make(stringify!($test)).await {
                    dispatch::$test(backend).await;
                    finish.await;
                }
            }
        )*
    };
}

/// PostgreSQL: a worker wakes when another process appends (LISTEN/NOTIFY), long before its
/// poll interval.
#[cfg(feature = "postgres")]
pub async fn a_worker_wakes_on_appends_from_another_process(backend: Backend) {
    let Pool::Postgres(pool) = &backend.pool else {
        panic!("PostgreSQL only")
    };
    let other: Arc<dyn ConsumerStore> = Arc::new(
        eventsourcery::PostgresStore::from_pool(pool.clone())
            .await
            .unwrap(),
    );
    let s = setup(backend);
    let mut config = fast();
    config.poll_interval = Duration::from_secs(60);
    let dispatcher = Dispatcher::builder(&s.bus, s.store.clone())
        .only(["mailer"])
        .config(config)
        .build()
        .unwrap();
    let worker = dispatcher.spawn();
    // Let the worker finish its first round and start listening.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // "Another process": a bus of its own, which the dispatcher knows nothing about.
    let elsewhere = CommandBus::builder(other)
        .personal_data(s.vault.clone())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    elsewhere
        .execute(SellTicket {
            ticket: TicketId::generate(),
            holder: PersonalKey::issue(),
            email: Email("far@example.com".into()),
        })
        .await
        .unwrap();
    while s.seen.emails.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker did not wake on NOTIFY"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("woke after {:?}", started.elapsed());
    worker.shutdown().await;
}

/// PostgreSQL: after a worker ran (and LISTENed), shutting it down gives every connection
/// back: closing the pool returns within a second while the store is still alive. Dropping a
/// worker instead of shutting it down stops it too, and so gives them back as well.
#[cfg(feature = "postgres")]
pub async fn closing_the_pool_after_a_worker_returns_at_once(backend: Backend) {
    let Pool::Postgres(pool) = backend.pool.clone() else {
        panic!("PostgreSQL only")
    };
    let s = setup(backend);
    for shut_down in [true, false] {
        let dispatcher = dispatcher(&s, &["mailer"]);
        let worker = dispatcher.spawn();
        let before = s.seen.emails.lock().unwrap().len();
        sell_one(&s, "closing@example.com").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while s.seen.emails.lock().unwrap().len() == before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker did not deliver"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let it finish the round and wait on LISTEN, holding its connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if shut_down {
            worker.shutdown().await;
        } else {
            drop(worker);
        }
    }
    tokio::time::timeout(Duration::from_secs(1), pool.close())
        .await
        .expect("PgPool::close did not return within a second after the workers stopped");
    drop(s);
}

/// The PostgreSQL pool of `backend`, and its setup: for the cases that run on PostgreSQL only.
#[cfg(feature = "postgres")]
fn postgres_setup(backend: Backend) -> (sqlx::PgPool, Setup) {
    let Pool::Postgres(pool) = backend.pool.clone() else {
        panic!("PostgreSQL only");
    };
    (pool, setup(backend))
}

/// What the `conflicted` consumers fail with, and how often: the SQLSTATE they raise and the
/// raises left; `raised` counts them.
#[cfg(feature = "postgres")]
struct Conflicts {
    pool: sqlx::PgPool,
    code: Mutex<&'static str>,
    left: AtomicU32,
    raised: AtomicU32,
}

#[cfg(feature = "postgres")]
impl Conflicts {
    /// Raises the current SQLSTATE on `conn` while raises are left, as PostgreSQL does when it
    /// refuses a transaction.
    async fn raise(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Ok(());
        }
        self.raised.fetch_add(1, Ordering::SeqCst);
        let code = *self.code.lock().unwrap();
        let sql = format!(
            "DO $$ BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '{code}'; END $$"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await?;
        Ok(())
    }

    fn arm(&self, code: &'static str, raises: u32) {
        *self.code.lock().unwrap() = code;
        self.left.store(raises, Ordering::SeqCst);
        self.raised.store(0, Ordering::SeqCst);
    }
}

#[cfg(feature = "postgres")]
#[eventsourcery::projection(consumer = "conflicted_projection")]
async fn conflicted_projection(
    _: TicketSold,
    tx: &mut ProjectionTx<'_>,
    conflicts: Dep<Conflicts>,
) -> Result<(), sqlx::Error> {
    let Some(conn) = tx.postgres() else {
        return Err(sqlx::Error::Protocol("PostgreSQL only".into()));
    };
    conflicts.raise(conn).await
}

#[cfg(feature = "postgres")]
#[eventsourcery::listener(consumer = "conflicted_listener")]
async fn conflicted_listener(
    _: TicketSold,
    conflicts: Dep<Conflicts>,
) -> Result<(), eventsourcery::error::BoxError> {
    let mut conn = conflicts.pool.acquire().await?;
    // Wrapped as a handler often does: the conflict is found among the error's sources.
    conflicts
        .raise(&mut conn)
        .await
        .map_err(|source| StoreError::Database {
            operation: "the listener's write",
            source,
        })?;
    Ok(())
}

/// PostgreSQL: a transaction refused for meeting another one (serialization failure `40001`,
/// deadlock `40P01`, as between partitions writing the same read-model row) is not the event's
/// fault. It is tried again without counting toward `max_attempts` (3 here), so eight in a row
/// park neither a projection nor a listener; any other database error still parks after three.
#[cfg(feature = "postgres")]
pub async fn transaction_conflicts_are_retried_without_parking(backend: Backend) {
    let (pool, s) = postgres_setup(backend);
    let conflicts = Arc::new(Conflicts {
        pool,
        code: Mutex::new("40001"),
        left: AtomicU32::new(0),
        raised: AtomicU32::new(0),
    });
    let mut config = fast();
    config.max_attempts = 3;
    for consumer in ["conflicted_projection", "conflicted_listener"] {
        let dispatcher = Dispatcher::builder(&s.bus, s.store.clone())
            .only([consumer])
            .config(config)
            .service_shared(conflicts.clone())
            .build()
            .unwrap();
        for (round, code) in ["40001", "40P01"].into_iter().enumerate() {
            // More than a projection's batch and event-alone tries together (3 + 3).
            conflicts.arm(code, 8);
            sell_one(&s, &format!("{consumer}{round}@example.com")).await;
            let done = dispatcher.catch_up().await.unwrap();
            assert!(done.parked.is_empty(), "{consumer}, {code}: parked");
            assert_eq!(
                conflicts.raised.load(Ordering::SeqCst),
                8,
                "{consumer}, {code}"
            );
            let state = dispatcher.state(consumer).await.unwrap();
            assert_eq!(state.position, s.store.head_position().await.unwrap());
        }
        // Not a conflict: parked after max_attempts, as before.
        conflicts.arm("P0001", 10);
        sell_one(&s, &format!("{consumer}-poison@example.com")).await;
        let done = dispatcher.catch_up().await.unwrap();
        assert_eq!(done.parked, vec![consumer.to_owned()]);
        let raised = conflicts.raised.load(Ordering::SeqCst);
        // A projection tries the batch, then the event alone: max_attempts each.
        let expected = if consumer == "conflicted_projection" {
            6
        } else {
            3
        };
        assert_eq!(raised, expected, "{consumer}");
    }
}

/// Two rows every event adds one to, in an order the event sets: partitions whose batches run
/// at once lock them crosswise, and PostgreSQL breaks the deadlock by refusing one (`40P01`),
/// after a `deadlock_timeout` shortened so that it happens often (setting it takes a
/// superuser, as the test databases' `postgres` is).
#[cfg(feature = "postgres")]
#[eventsourcery::projection(consumer = "crossed_totals", partitions = 4)]
async fn crossed_totals(
    _: TicketSold,
    meta: EventMeta,
    tx: &mut ProjectionTx<'_>,
) -> Result<(), sqlx::Error> {
    let Some(conn) = tx.postgres() else {
        return Err(sqlx::Error::Protocol("PostgreSQL only".into()));
    };
    sqlx::query("SET LOCAL deadlock_timeout = '10ms'")
        .execute(&mut *conn)
        .await?;
    let first = if meta.position.is_multiple_of(2) {
        1
    } else {
        2
    };
    for id in [first, 3 - first] {
        sqlx::query("UPDATE crossed_totals SET n = n + 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        // Long enough for another partition to take the other row meanwhile.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// PostgreSQL, for real: the partitions of one projection deadlock on the rows they share, and
/// the database refuses one transaction at a time; every refused batch is tried again, so the
/// totals count each event exactly once and no partition is parked.
#[cfg(feature = "postgres")]
pub async fn partitions_that_deadlock_on_shared_rows_are_not_parked(backend: Backend) {
    const EVENTS: i64 = 120;
    let (pool, s) = postgres_setup(backend);
    sqlx::query("CREATE TABLE crossed_totals (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO crossed_totals (id, n) VALUES (1, 0), (2, 0)")
        .execute(&pool)
        .await
        .unwrap();
    let deadlocks = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = deadlocks().await;
    for i in 0..EVENTS {
        sell_one(&s, &format!("crossed{i}@example.com")).await;
    }
    // One try in the batch and one alone: without the conflict allowance, an event that meets
    // a deadlock twice parks its partition.
    let mut config = fast();
    config.max_attempts = 1;
    let dispatcher = Dispatcher::builder(&s.bus, s.store.clone())
        .only(["crossed_totals"])
        .config(config)
        .build()
        .unwrap();
    let done = dispatcher.catch_up().await.unwrap();
    assert!(done.parked.is_empty(), "parked: {:?}", done.parked);
    let totals: Vec<i64> = sqlx::query_scalar("SELECT n FROM crossed_totals ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        totals,
        [EVENTS, EVENTS],
        "each event counted once in each row"
    );
    // The statistics are sent by the backends a moment after their transactions end.
    let mut met = deadlocks().await - before;
    for _ in 0..50 {
        if met > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&pool)
            .await
            .unwrap();
        met = deadlocks().await - before;
    }
    assert!(
        met > 0,
        "no deadlock happened: the test did not test anything"
    );
}

/// A read-model table whose rows are refused at commit, with `40001`, by a deferred constraint
/// trigger, as often as the sequence `commit_refusals` says: what a serializable transaction
/// meeting another gets from PostgreSQL at `COMMIT`.
#[cfg(feature = "postgres")]
const REFUSED_AT_COMMIT: &[&str] = &[
    "CREATE SEQUENCE commit_refusals",
    "CREATE TABLE at_commit (event_id UUID PRIMARY KEY)",
    "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
         IF nextval('commit_refusals') <= 8 THEN \
             RAISE EXCEPTION 'refused at commit' USING ERRCODE = '40001'; \
         END IF; \
         RETURN NULL; \
     END $$",
    "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON at_commit \
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()",
];

#[cfg(feature = "postgres")]
#[eventsourcery::projection(consumer = "refused_at_commit")]
async fn refused_at_commit(
    _: TicketSold,
    meta: EventMeta,
    tx: &mut ProjectionTx<'_>,
) -> Result<(), sqlx::Error> {
    let Some(conn) = tx.postgres() else {
        return Err(sqlx::Error::Protocol("PostgreSQL only".into()));
    };
    sqlx::query("INSERT INTO at_commit (event_id) VALUES ($1)")
        .bind(meta.event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// PostgreSQL: a projection's transaction refused when it commits (here eight times in a row,
/// by a deferred trigger raising `40001`) is a conflict too: the batch is tried again, the
/// round does not fail, the consumer is not parked, and the event is written once.
#[cfg(feature = "postgres")]
pub async fn a_batch_refused_at_commit_is_tried_again(backend: Backend) {
    let (pool, s) = postgres_setup(backend);
    for sql in REFUSED_AT_COMMIT {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    sell_one(&s, "commit@example.com").await;
    let dispatcher = Dispatcher::builder(&s.bus, s.store.clone())
        .only(["refused_at_commit"])
        .config(fast())
        .build()
        .unwrap();
    let done = dispatcher
        .catch_up()
        .await
        .expect("the round does not fail");
    assert!(done.parked.is_empty(), "parked: {:?}", done.parked);
    let refusals: i64 = sqlx::query_scalar("SELECT last_value FROM commit_refusals")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(refusals, 9, "eight commits refused, the ninth taken");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM at_commit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let state = dispatcher.state("refused_at_commit").await.unwrap();
    assert_eq!(state.position, s.store.head_position().await.unwrap());
}

/// What the `erased_between_tries` consumers saw on each try, and the vault they erase with:
/// the first try of each erases the ticket's holder and fails, as a handler whose write met
/// another transaction does.
struct ErasedBetweenTries {
    vault: Arc<PersonalVault>,
    /// The holder whose ticket each consumer looks at; the others' events pass.
    targets: Mutex<Vec<(&'static str, PersonalKey)>>,
    seen: Mutex<Vec<(&'static str, Option<String>)>>,
}

impl ErasedBetweenTries {
    async fn run(&self, consumer: &'static str, event: TicketSold) -> Result<(), String> {
        let target = self
            .targets
            .lock()
            .unwrap()
            .contains(&(consumer, event.holder));
        if !target {
            return Ok(());
        }
        let email = event.email.present().map(|e| e.0.clone());
        let first = {
            let mut seen = self.seen.lock().unwrap();
            let first = !seen.iter().any(|(c, _)| *c == consumer);
            seen.push((consumer, email));
            first
        };
        if first {
            self.vault
                .erase(event.holder, "erased between two tries")
                .await
                .unwrap();
            return Err("failed before the write".into());
        }
        Ok(())
    }
}

#[eventsourcery::projection(consumer = "erased_between_tries_projection")]
async fn erased_between_tries_projection(
    event: TicketSold,
    _: &mut ProjectionTx<'_>,
    state: Dep<ErasedBetweenTries>,
) -> Result<(), String> {
    state.run("erased_between_tries_projection", event).await
}

#[eventsourcery::listener(consumer = "erased_between_tries_listener")]
async fn erased_between_tries_listener(
    event: TicketSold,
    state: Dep<ErasedBetweenTries>,
) -> Result<(), String> {
    state.run("erased_between_tries_listener", event).await
}

/// A retry and an erasure meet: the subject is erased after a consumer's first try decrypted
/// its email, and the try fails. The retry must see the value erased, not the plaintext
/// decrypted before the erasure (which a copy written on the retry would keep, out of reach
/// of a handling of the erasure fact that already ran in another partition).
pub async fn a_retry_after_an_erasure_sees_the_value_erased(backend: Backend) {
    let s = setup(backend);
    let state = Arc::new(ErasedBetweenTries {
        vault: s.vault.clone(),
        targets: Mutex::default(),
        seen: Mutex::default(),
    });
    for consumer in [
        "erased_between_tries_projection",
        "erased_between_tries_listener",
    ] {
        let (_, holder) = sell_one(&s, &format!("{consumer}@example.com")).await;
        state.targets.lock().unwrap().push((consumer, holder));
        let dispatcher = Dispatcher::builder(&s.bus, s.store.clone())
            .only([consumer])
            .config(fast())
            .service_shared(state.clone())
            .build()
            .unwrap();
        let done = dispatcher.catch_up().await.unwrap();
        assert!(done.parked.is_empty(), "{consumer}: {:?}", done.parked);
        let seen: Vec<Option<String>> = state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == consumer)
            .map(|(_, email)| email.clone())
            .collect();
        assert_eq!(
            seen,
            [Some(format!("{consumer}@example.com")), None],
            "{consumer}: the first try decrypted the email, the retry must see it erased"
        );
    }
}
