//! Dispatch on the memory store: listeners, process managers, projections, parking, rebuilds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsourcery::dispatch::{Commands, ConsumerStore, DispatchConfig, Dispatcher, EventMeta};
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, Dep, DomainEvent, EventStore, Id, MemoryStore, Personal,
    PersonalData, PersonalKey, PersonalVault, ProjectionTx, Repository, SerializableValue,
};
use uuid::Uuid;

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

struct Setup {
    store: Arc<MemoryStore>,
    bus: CommandBus,
    vault: Arc<PersonalVault>,
    seen: Arc<Seen>,
}

fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    let vault = Arc::new(PersonalVault::in_memory().unwrap());
    let seen = Arc::new(Seen::default());
    let bus = CommandBus::builder_shared(store.clone())
        .personal_data_shared(vault.clone())
        .service_shared(seen.clone())
        .build()
        .unwrap();
    Setup {
        store,
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
    Dispatcher::builder(&s.bus, s.store.clone() as Arc<dyn ConsumerStore>)
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

#[tokio::test]
async fn a_listener_sees_each_event_once_with_personal_data_decrypted() {
    let s = setup();
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

#[tokio::test]
async fn rebuilding_an_aggregate_never_triggers_a_consumer() {
    let s = setup();
    let dispatcher = dispatcher(&s, &["audit"]);
    let (ticket, _) = sell_one(&s, "a@example.com").await;
    dispatcher.catch_up().await.unwrap();
    for _ in 0..3 {
        s.bus.repository::<Ticket>().load(&ticket).await.unwrap();
    }
    assert_eq!(dispatcher.catch_up().await.unwrap().handled, 0);
    assert_eq!(s.seen.metas.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_process_manager_command_carries_correlation_and_causation() {
    let s = setup();
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
            &eventsourcery::StreamId::for_aggregate("ticket", &ticket),
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

#[tokio::test]
async fn a_failing_consumer_is_retried_then_parked_while_others_run() {
    let s = setup();
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
    assert!(
        parked.error.contains("rejects this one"),
        "{}",
        parked.error
    );
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

#[tokio::test]
async fn projections_rebuild_to_the_same_read_model_and_hold_no_erased_data() {
    let s = setup();
    let holders = Arc::new(Holders::default());
    let dispatcher = Dispatcher::builder(&s.bus, s.store.clone() as Arc<dyn ConsumerStore>)
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

#[tokio::test]
async fn inline_mode_dispatches_before_execute_returns() {
    let s = setup();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_mode_wakes_on_commit() {
    let s = setup();
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

#[tokio::test]
async fn only_one_instance_runs_a_consumer_at_a_time() {
    let s = setup();
    let first = dispatcher(&s, &["audit"]);
    let second = dispatcher(&s, &["audit"]);
    sell_one(&s, "x@example.com").await;
    assert_eq!(first.catch_up().await.unwrap().handled, 1);
    let done = second.catch_up().await.unwrap();
    assert_eq!(done.not_claimed, vec!["audit".to_owned()]);
    assert_eq!(s.seen.metas.lock().unwrap().len(), 1);
}
