//! The JetStream publisher against a real `nats-server -js` that each test starts on a free
//! port with its own store directory. Runs with the `nats` feature and `EVENTSOURCERY_NATS=1`
//! (skipped otherwise, with a line saying so); `.ci/run` checks that they really ran.
#![cfg(feature = "nats")]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use eventsourcery::bus::ExecuteOptions;
use eventsourcery::dispatch::{ConsumerStore, DispatchConfig, Dispatcher};
use eventsourcery::publish::JetStreamPublisher;
use eventsourcery::store::RecordedEvent;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, DomainEvent, EventStore, Id, MemoryStore, Personal,
    PersonalData, PersonalKey, PersonalVault, Repository, SerializableValue,
};
use futures_util::StreamExt;
use support::nats::NatsServer;
use support::spans::Capture;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct TicketId(Uuid);

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(PersonalData, Clone)]
struct HolderName(String);

/// A dotted name, to check that subject tokens are sanitized.
#[derive(DomainEvent, Debug)]
#[event(name = "nats.ticket_sold", subject = holder)]
struct TicketSold {
    ticket: TicketId,
    holder: PersonalKey,
    #[personal]
    email: Personal<Email>,
    #[personal]
    name: Personal<HolderName>,
}

#[derive(DomainEvent, Debug)]
#[event(name = "nats_ticket_scanned")]
struct TicketScanned {
    ticket: TicketId,
    gate: u32,
    note: String,
}

#[derive(Aggregate, Default)]
#[aggregate(id = TicketId, name = "nats_ticket", events(TicketSold, TicketScanned))]
struct Ticket;

impl Apply<TicketSold> for Ticket {
    fn apply(&mut self, _: &TicketSold) {}
}

impl Apply<TicketScanned> for Ticket {
    fn apply(&mut self, _: &TicketScanned) {}
}

#[derive(Command, Clone)]
#[command(subject = holder)]
struct SellNatsTicket {
    ticket: TicketId,
    holder: PersonalKey,
    #[personal]
    email: Email,
    #[personal]
    name: HolderName,
}

#[derive(Command, Clone)]
struct ScanNatsTicket {
    ticket: TicketId,
    gate: u32,
    note: String,
}

#[eventsourcery::handler]
async fn sell(
    cmd: SellNatsTicket,
    tickets: Repository<Ticket>,
) -> Result<(), eventsourcery::Error> {
    let mut ticket = tickets.load(&cmd.ticket).await?;
    ticket.raise(TicketSold {
        ticket: cmd.ticket,
        holder: cmd.holder,
        email: cmd.email.into(),
        name: cmd.name.into(),
    });
    tickets.save(&mut ticket).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn scan(
    cmd: ScanNatsTicket,
    tickets: Repository<Ticket>,
) -> Result<(), eventsourcery::Error> {
    let mut ticket = tickets.load(&cmd.ticket).await?;
    ticket.raise(TicketScanned {
        ticket: cmd.ticket,
        gate: cmd.gate,
        note: cmd.note,
    });
    tickets.save(&mut ticket).await?;
    Ok(())
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Setup {
    store: Arc<MemoryStore>,
    bus: CommandBus,
    /// A bus over the same store without personal data stores: the publisher decrypts
    /// nothing, so its process needs none.
    publishing_bus: CommandBus,
    /// The personal values written, to look for in every message.
    secrets: Vec<String>,
}

fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    let vault = Arc::new(PersonalVault::in_memory().unwrap());
    let bus = CommandBus::builder(store.clone())
        .personal_data(vault)
        .build()
        .unwrap();
    let publishing_bus = CommandBus::builder(store.clone()).build().unwrap();
    Setup {
        store,
        bus,
        publishing_bus,
        secrets: Vec::new(),
    }
}

impl Setup {
    /// Sells a ticket and scans it twice: three events in one stream.
    async fn sell_and_scan(&mut self, i: usize) {
        let ticket = TicketId::generate();
        let email = format!("holder{i}@example.com");
        let name = format!("Holder Number{i} Plaintext");
        let options = ExecuteOptions::new()
            .actor("user:42")
            .tenant("acme")
            .request_id(format!("req-{i}"))
            .traceparent(TRACEPARENT)
            .with("channel", "web");
        self.bus
            .execute_with(
                SellNatsTicket {
                    ticket: ticket.clone(),
                    holder: PersonalKey::issue(),
                    email: Email(email.clone()),
                    name: HolderName(name.clone()),
                },
                options,
            )
            .await
            .unwrap();
        for gate in 1..=2 {
            self.bus
                .execute(ScanNatsTicket {
                    ticket: ticket.clone(),
                    gate,
                    note: String::new(),
                })
                .await
                .unwrap();
        }
        self.secrets.push(email);
        self.secrets.push(name);
    }
}

/// A JetStream context whose publishes wait 1 s for their ack (async-nats' default is 5 s):
/// while the broker is down, each attempt lasts that long.
async fn connect(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.unwrap();
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client)
}

/// The test's stream, covering `test.>`, with the default two-minute duplicate window.
async fn create_stream(jetstream: &jetstream::Context) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let created = jetstream
            .get_or_create_stream(stream::Config {
                name: "ES_TEST".into(),
                subjects: vec!["test.>".into()],
                ..Default::default()
            })
            .await;
        match created {
            Ok(_) => return,
            // JetStream may still be starting up.
            Err(error) if Instant::now() < deadline => {
                println!("stream not created yet: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("creating the stream: {error}"),
        }
    }
}

/// A publisher that retries briefly in place, in a dispatcher that would park a consumer
/// after two failed attempts: an outage must not count as one.
fn publishing(s: &Setup, name: &str, jetstream: jetstream::Context) -> Arc<Dispatcher> {
    let publisher = JetStreamPublisher::new(name, jetstream, "test")
        .unwrap()
        .retry_for(Duration::from_millis(500));
    Dispatcher::builder(&s.publishing_bus, s.store.clone())
        .without_registered()
        .consumer(publisher)
        .config(
            DispatchConfig::default()
                .max_attempts(2)
                .backoff(Duration::from_millis(10))
                .max_backoff(Duration::from_millis(200))
                .batch_size(16)
                .poll_interval(Duration::from_millis(50)),
        )
        .build()
        .unwrap()
}

async fn wait_for_checkpoint(store: &MemoryStore, consumer: &str, position: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = store.consumer_state(consumer).await.unwrap();
        assert!(
            state.parked.is_none(),
            "the publisher was parked: {state:?}"
        );
        if state.position >= position {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher is stuck at {} of {position}",
            state.position
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message as the test's JetStream consumer received it.
struct Received {
    stream_sequence: u64,
    subject: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Every message of the stream, in stream order, read with an ephemeral pull consumer.
async fn read_all(jetstream: &jetstream::Context) -> Vec<Received> {
    let stream = jetstream.get_stream("ES_TEST").await.unwrap();
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut received = Vec::new();
    loop {
        let mut batch = consumer.fetch().max_messages(500).messages().await.unwrap();
        let before = received.len();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            let stream_sequence = message.info().unwrap().stream_sequence;
            let headers = message
                .headers
                .as_ref()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|(name, values)| {
                            let values: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
                            (name.to_string(), values.join(","))
                        })
                        .collect()
                })
                .unwrap_or_default();
            received.push(Received {
                stream_sequence,
                subject: message.subject.to_string(),
                headers,
                body: String::from_utf8(message.payload.to_vec()).unwrap(),
            });
        }
        if received.len() == before {
            return received;
        }
    }
}

/// Every event arrives once, in log order (so in stream order per subject), with its headers
/// and its stored payload; a broker killed mid-run and started again loses nothing and
/// duplicates nothing; a second publisher over the same log (a redelivery of everything) is
/// dropped by the duplicate window; no personal value is in any message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_once_in_order_across_a_broker_outage_without_personal_data() {
    const TEST: &str = "events_arrive_once_in_order_across_a_broker_outage_without_personal_data";
    let Some(mut server) = NatsServer::start(TEST) else {
        return;
    };
    let jetstream = connect(&server).await;
    create_stream(&jetstream).await;
    let mut s = setup();
    let dispatcher = publishing(&s, "jetstream", jetstream.clone());
    let worker = dispatcher.spawn();

    for i in 0..10 {
        s.sell_and_scan(i).await;
    }
    // An outage: events keep being recorded while the broker is down.
    server.kill();
    for i in 10..20 {
        s.sell_and_scan(i).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = s.store.consumer_state("jetstream").await.unwrap();
    assert!(
        held.position <= 30 && held.parked.is_none(),
        "nothing is acknowledged while the broker is down, and the publisher waits: {held:?}"
    );
    server.resume();
    for i in 20..30 {
        s.sell_and_scan(i).await;
    }
    let events: Vec<RecordedEvent> = s.store.read_all(0, 10_000).await.unwrap();
    assert_eq!(events.len(), 90);
    let head = events.last().unwrap().position;
    wait_for_checkpoint(&s.store, "jetstream", head).await;
    worker.shutdown().await;

    // Everything again under another name, as after a crash before any checkpoint moved.
    let again = publishing(&s, "jetstream_again", jetstream.clone());
    again.catch_up().await.unwrap();
    wait_for_checkpoint(&s.store, "jetstream_again", head).await;

    let reader = connect(&server).await;
    let received = read_all(&reader).await;

    // Once each, in log order.
    assert_eq!(received.len(), events.len(), "one message per event");
    let ids: Vec<String> = received
        .iter()
        .map(|m| m.headers["Nats-Msg-Id"].clone())
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no duplicate"
    );
    let expected: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, expected, "in the order of the log");
    assert!(
        received
            .windows(2)
            .all(|w| w[0].stream_sequence < w[1].stream_sequence)
    );

    for (message, event) in received.iter().zip(&events) {
        let aggregate = event.stream_id.as_str().split_once('-').unwrap().0;
        assert_eq!(aggregate, "nats_ticket");
        let name = event.event_name.replace('.', "_");
        assert_eq!(message.subject, format!("test.nats_ticket.{name}"));
        let h = &message.headers;
        assert_eq!(h["Es-Event-Id"], event.event_id.to_string());
        assert_eq!(h["Es-Event-Name"], event.event_name);
        assert_eq!(h["Es-Stream-Id"], event.stream_id.as_str());
        assert_eq!(h["Es-Position"], event.position.to_string());
        assert_eq!(h["Es-Stream-Version"], event.stream_version.to_string());
        assert_eq!(h["Es-Schema-Version"], event.schema_version.to_string());
        assert_eq!(h["Content-Type"], "application/json");
        let metadata = &event.metadata;
        assert_eq!(
            h["Es-Causation-Id"],
            metadata.causation_id.unwrap().to_string()
        );
        assert_eq!(
            h["Es-Correlation-Id"],
            metadata.correlation_id.unwrap().to_string()
        );
        assert_eq!(h["Es-Command-Id"], metadata.command_id.unwrap().to_string());
        if event.event_name == "nats.ticket_sold" {
            assert_eq!(h["Es-Actor"], "user:42");
            assert_eq!(h["Es-Tenant"], "acme");
            assert!(h["Es-Request-Id"].starts_with("req-"));
            assert_eq!(h["traceparent"], TRACEPARENT);
            assert_eq!(h["Es-Meta-channel"], "web");
        } else {
            assert!(!h.contains_key("Es-Actor"));
            assert!(!h.contains_key("traceparent"));
        }
        // The body is the payload as stored.
        let body: serde_json::Value = serde_json::from_str(&message.body).unwrap();
        assert_eq!(body, event.payload);
    }

    // No personal value anywhere: bodies, subjects, header names and values.
    let everything: String = received
        .iter()
        .map(|m| {
            let headers: String = m
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}\n"))
                .collect();
            format!("{}\n{headers}{}\n", m.subject, m.body)
        })
        .collect();
    for secret in &s.secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "a personal value was published"
        );
    }

    server.finish(TEST);
}

/// During an outage a round ends at once with the publisher `unavailable`, not parked, its
/// checkpoint before the first unpublished event; a worker shuts down promptly; once the
/// broker is back, the next rounds publish the rest, each event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_never_parks_the_publisher_nor_holds_up_shutdown() {
    const TEST: &str = "an_outage_never_parks_the_publisher_nor_holds_up_shutdown";
    let Some(mut server) = NatsServer::start(TEST) else {
        return;
    };
    let jetstream = connect(&server).await;
    create_stream(&jetstream).await;
    let mut s = setup();
    let dispatcher = publishing(&s, "waiting", jetstream.clone());
    s.sell_and_scan(0).await;
    dispatcher.catch_up().await.unwrap();
    assert_eq!(dispatcher.state("waiting").await.unwrap().position, 3);

    server.kill();
    s.sell_and_scan(1).await;
    for _ in 0..3 {
        let round = dispatcher.catch_up().await.unwrap();
        assert_eq!(round.unavailable, ["waiting"]);
        assert!(round.parked.is_empty());
        let state = dispatcher.state("waiting").await.unwrap();
        assert_eq!(state.position, 3);
        assert!(state.parked.is_none());
    }
    let worker = dispatcher.spawn();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    worker.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?} for the broker",
        stopping.elapsed()
    );

    server.resume();
    let head = s.store.read_all(0, 100).await.unwrap().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while dispatcher.state("waiting").await.unwrap().position < head {
        // The client reconnects in the background.
        assert!(Instant::now() < deadline, "the publisher did not resume");
        dispatcher.catch_up().await.unwrap();
    }
    let events = s.store.read_all(0, 100).await.unwrap();
    let received = read_all(&connect(&server).await).await;
    let ids: Vec<&str> = received
        .iter()
        .map(|m| m.headers["Nats-Msg-Id"].as_str())
        .collect();
    let expected: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, expected, "each once, in log order");
    server.finish(TEST);
}

/// An event the broker refuses for good (over its 1 MiB `max_payload`) is an ordinary
/// failure: the publisher is parked at it, with what came before published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_broker_refuses_parks_the_publisher_at_it() {
    const TEST: &str = "an_event_the_broker_refuses_parks_the_publisher_at_it";
    let Some(server) = NatsServer::start(TEST) else {
        return;
    };
    let jetstream = connect(&server).await;
    create_stream(&jetstream).await;
    let mut s = setup();
    let dispatcher = publishing(&s, "refused", jetstream.clone());
    s.sell_and_scan(0).await;
    let ticket = TicketId::generate();
    s.bus
        .execute(ScanNatsTicket {
            ticket,
            gate: 9,
            note: "x".repeat(2 << 20),
        })
        .await
        .unwrap();
    let round = dispatcher.catch_up().await.unwrap();
    assert_eq!(round.parked, ["refused"]);
    let state = dispatcher.state("refused").await.unwrap();
    assert_eq!(state.position, 3, "what came before is published");
    let parked = state.parked.expect("parked");
    assert_eq!(parked.position, 4);
    assert!(parked.error.contains("position 4"), "{}", parked.error);
    assert_eq!(read_all(&jetstream).await.len(), 3);
    server.finish(TEST);
}

/// Each publish has a span named after the OpenTelemetry messaging conventions: the subject,
/// the event id as the message id, the correlation id, the stored name and position, and the
/// trace context of the request as a link; a refused publish says so in `error.type`. No field
/// of any span holds a personal value.
#[tokio::test]
async fn a_publish_span_names_the_message_and_never_its_personal_data() {
    const TEST: &str = "a_publish_span_names_the_message_and_never_its_personal_data";
    let Some(server) = NatsServer::start(TEST) else {
        return;
    };
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(capture.clone()));
    let jetstream = connect(&server).await;
    create_stream(&jetstream).await;
    let mut s = setup();
    let dispatcher = publishing(&s, "spanned", jetstream.clone());
    s.sell_and_scan(0).await;
    s.bus
        .execute(ScanNatsTicket {
            ticket: TicketId::generate(),
            gate: 9,
            note: "x".repeat(2 << 20),
        })
        .await
        .unwrap();
    // An ack slower than the publisher's retries ends a round early (the broker unavailable,
    // not the event's fault): rounds go on until the oversized event parks the publisher.
    let mut rounds = 0;
    while dispatcher.catch_up().await.unwrap().parked.is_empty() {
        rounds += 1;
        assert!(rounds < 20, "the oversized event is never refused");
    }

    let events = s.store.read_all(0, 10).await.unwrap();
    let spans = capture.named("publish");
    let of = |event: &RecordedEvent| -> Vec<_> {
        let id = event.event_id.to_string();
        spans
            .iter()
            .filter(|span| span.get("messaging.message.id") == Some(id.as_str()))
            .cloned()
            .collect()
    };
    for event in &events[..3] {
        let published = of(event);
        assert!(
            !published.is_empty(),
            "no span for position {}",
            event.position
        );
        for span in &published {
            assert_eq!(span.get("otel.kind"), Some("producer"), "{span:?}");
            assert_eq!(span.get("messaging.system"), Some("nats"));
            assert_eq!(span.get("messaging.operation.type"), Some("send"));
            let subject = span.get("messaging.destination.name").expect("a subject");
            assert!(subject.starts_with("test.nats_ticket."), "{subject}");
            assert_eq!(
                span.get("otel.name"),
                Some(format!("send {subject}").as_str())
            );
            assert_eq!(
                span.get("eventsourcery.event.position"),
                Some(event.position.to_string().as_str())
            );
            assert_eq!(
                span.get("eventsourcery.event.name"),
                Some(event.event_name.as_str())
            );
            assert_eq!(span.get("eventsourcery.publisher.name"), Some("spanned"));
        }
        // Its last publish was acknowledged (an earlier one may have timed out).
        assert_eq!(published.last().unwrap().get("error.type"), None);
    }
    let sold = &of(&events[0])[0];
    assert_eq!(
        sold.get("eventsourcery.link.traceparent"),
        Some(TRACEPARENT)
    );
    assert_eq!(
        sold.get("messaging.message.conversation_id"),
        events[0]
            .metadata
            .correlation_id
            .map(|id| id.to_string())
            .as_deref()
    );
    let refused = of(&events[3]);
    // Tried `max_attempts` (2) times, each publish in a span of its own.
    assert_eq!(refused.len(), 2, "{refused:?}");
    for span in &refused {
        assert_eq!(span.get("eventsourcery.event.position"), Some("4"));
        assert_eq!(span.get("error.type"), Some("refused"), "{span:?}");
    }

    let all = capture.all();
    assert!(!all.is_empty());
    for span in &all {
        for (field, value) in &span.fields {
            for secret in &s.secrets {
                assert!(
                    !value.contains(secret.as_str()),
                    "span {} field {field} holds a personal value",
                    span.name
                );
            }
        }
    }
    server.finish(TEST);
}

/// A prefix that is not a subject is refused, and names it.
#[tokio::test]
async fn a_prefix_with_wildcards_is_refused() {
    const TEST: &str = "a_prefix_with_wildcards_is_refused";
    let Some(server) = NatsServer::start(TEST) else {
        return;
    };
    let jetstream = connect(&server).await;
    for prefix in ["", "acme.*", "acme..orders", "a>", "acme orders"] {
        let error = JetStreamPublisher::new("p", jetstream.clone(), prefix).unwrap_err();
        assert!(
            error.to_string().contains(&format!("`{prefix}`")),
            "{error}"
        );
    }
    assert!(JetStreamPublisher::new("p", jetstream, "acme.orders").is_ok());
    server.finish(TEST);
}
