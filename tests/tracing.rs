//! The spans, as a tracing layer sees them: fields named after the OpenTelemetry semantic
//! conventions (and `eventsourcery.*` where none applies), and the W3C trace context of the
//! request that caused a command on the span of every consumer that handles its events.
#![cfg(feature = "sqlite")]

mod support;

use eventsourcery::bus::ExecuteOptions;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, Dispatcher, DomainEvent, Id, Repository,
    SerializableValue, SqliteStore,
};
use support::spans::{Capture, Seen};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;

/// The trace context of the caller's span, as an HTTP request would bring it.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[derive(SerializableValue, Clone, Debug)]
struct BellId(uuid::Uuid);

#[derive(DomainEvent)]
#[event(name = "tracing.bell_rung")]
struct BellRung {
    bell: BellId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = BellId, events(BellRung))]
struct Bell {
    rung: bool,
}

impl Apply<BellRung> for Bell {
    fn apply(&mut self, _: &BellRung) {
        self.rung = true;
    }
}

#[derive(Command, Clone)]
struct Ring {
    bell: BellId,
}

#[derive(Debug, thiserror::Error)]
#[error("the bell was rung already")]
struct RungAlready;

#[eventsourcery::handler]
async fn ring(command: Ring, bells: Repository<Bell>) -> Result<(), eventsourcery::Error> {
    let mut bell = bells.load(&command.bell).await?;
    if bell.state().rung {
        return Err(eventsourcery::Error::domain(RungAlready));
    }
    bell.raise(BellRung { bell: command.bell });
    bells.save(&mut bell).await?;
    Ok(())
}

#[eventsourcery::listener(consumer = "tracing.ringer")]
async fn ringer(_: BellRung) -> Result<(), eventsourcery::Error> {
    Ok(())
}

#[tokio::test]
async fn a_consumer_span_carries_the_trace_context_of_the_command_that_caused_its_event() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(capture.clone()));

    let store = SqliteStore::in_memory().await.unwrap();
    let bus = CommandBus::builder(store.clone()).build().unwrap();
    let dispatcher = Dispatcher::builder(&bus, store).build().unwrap();
    let bell = BellId::generate();
    bus.execute_with(
        Ring { bell: bell.clone() },
        ExecuteOptions::new().traceparent(TRACEPARENT),
    )
    .await
    .unwrap();
    // Rung again: the handler says no, and the command's span says so.
    bus.execute(Ring { bell }).await.unwrap_err();
    dispatcher.catch_up().await.unwrap();

    let commands = capture.named("command");
    assert_eq!(commands.len(), 2, "{commands:?}");
    let (ok, failed) = (&commands[0], &commands[1]);
    assert_eq!(ok.get("otel.name"), Some("execute ring"), "{ok:?}");
    assert_eq!(ok.get("otel.kind"), Some("internal"));
    assert_eq!(ok.get("eventsourcery.command.name"), Some("ring"));
    assert!(ok.get("eventsourcery.command.id").is_some(), "{ok:?}");
    assert_eq!(
        ok.get("eventsourcery.command.attempts"),
        Some("1"),
        "{ok:?}"
    );
    assert_eq!(ok.get("eventsourcery.link.traceparent"), Some(TRACEPARENT));
    assert_eq!(ok.get("otel.status_code"), None, "{ok:?}");
    assert_eq!(failed.get("otel.status_code"), Some("ERROR"), "{failed:?}");
    assert_eq!(failed.get("error.type"), Some("rejected"), "{failed:?}");
    assert_eq!(failed.get("eventsourcery.link.traceparent"), None);

    let appends = capture.named("append");
    assert!(!appends.is_empty());
    let append = &appends[0];
    assert_eq!(append.get("db.system.name"), Some("sqlite"), "{append:?}");
    assert_eq!(append.get("db.operation.name"), Some("append"));
    assert_eq!(append.get("otel.kind"), Some("client"));
    assert_eq!(append.get("eventsourcery.append.events"), Some("1"));

    let batch = capture
        .named("consumer_batch")
        .into_iter()
        .find(|s| s.get("messaging.consumer.group.name") == Some("tracing.ringer"))
        .expect("the listener's batch span");
    assert_eq!(batch.get("messaging.system"), Some("eventsourcery"));
    assert_eq!(batch.get("messaging.operation.type"), Some("process"));
    assert_eq!(batch.get("messaging.destination.name"), Some("events"));
    assert_eq!(batch.get("messaging.batch.message_count"), Some("1"));
    assert_eq!(batch.get("otel.kind"), Some("consumer"));

    let events: Vec<Seen> = capture
        .named("consumer_event")
        .into_iter()
        .filter(|s| s.get("messaging.consumer.group.name") == Some("tracing.ringer"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(
        event.get("eventsourcery.link.traceparent"),
        Some(TRACEPARENT)
    );
    assert_eq!(
        event.get("eventsourcery.event.name"),
        Some("tracing.bell_rung")
    );
    assert_eq!(event.get("eventsourcery.event.position"), Some("1"));
    assert_eq!(event.get("messaging.operation.type"), Some("process"));
    assert_eq!(
        event.get("eventsourcery.command.id"),
        ok.get("eventsourcery.command.id")
    );
    assert_eq!(
        event.get("messaging.message.conversation_id"),
        ok.get("eventsourcery.command.correlation_id")
    );
    assert!(event.get("messaging.message.id").is_some(), "{event:?}");
    assert_eq!(event.get("otel.status_code"), None, "{event:?}");
}

#[tokio::test]
async fn a_partitioned_consumer_names_the_partition_of_each_batch() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(capture.clone()));

    let store = SqliteStore::in_memory().await.unwrap();
    let bus = CommandBus::builder(store.clone()).build().unwrap();
    let dispatcher = Dispatcher::builder(&bus, store)
        .only(["tracing.ringer"])
        .partitions("tracing.ringer", 2)
        .build()
        .unwrap();
    bus.execute(Ring {
        bell: BellId::generate(),
    })
    .await
    .unwrap();
    dispatcher.catch_up().await.unwrap();

    let mut partitions: Vec<String> = capture
        .named("consumer_batch")
        .into_iter()
        .filter(|s| s.get("messaging.consumer.group.name") == Some("tracing.ringer"))
        .filter_map(|s| {
            s.get("messaging.destination.partition.id")
                .map(str::to_owned)
        })
        .collect();
    partitions.sort();
    assert_eq!(
        partitions,
        ["0/2", "1/2"],
        "one batch per partition, each named"
    );
}
