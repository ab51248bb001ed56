//! Given/when/then testing of aggregates and command handlers, on an in-memory store.
//!
//! ```
//! # use eventsourcery::testkit::{Scenario, event};
//! # use eventsourcery::{Aggregate, Apply, Command, DomainEvent, Repository, SerializableValue, Id};
//! #[derive(SerializableValue, Clone, Debug)]
//! struct AccountId(uuid::Uuid);
//!
//! #[derive(DomainEvent)]
//! struct Opened { account: AccountId }
//!
//! #[derive(DomainEvent)]
//! struct Closed { account: AccountId }
//!
//! #[derive(Aggregate, Default)]
//! #[aggregate(id = AccountId, events(Opened, Closed))]
//! struct Account { open: bool }
//!
//! impl Apply<Opened> for Account { fn apply(&mut self, _: &Opened) { self.open = true } }
//! impl Apply<Closed> for Account { fn apply(&mut self, _: &Closed) { self.open = false } }
//!
//! #[derive(Command, Clone)]
//! struct Close { account: AccountId }
//!
//! #[eventsourcery::handler]
//! async fn close(cmd: Close, accounts: Repository<Account>) -> Result<(), eventsourcery::Error> {
//!     let mut account = accounts.load(&cmd.account).await?;
//!     if !account.open {
//!         return Err(eventsourcery::Error::rejected("the account is not open"));
//!     }
//!     account.raise(Closed { account: cmd.account });
//!     accounts.save(&mut account).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let id = AccountId::generate();
//! Scenario::new()
//!     .given::<Account, _>(&id, Opened { account: id.clone() })
//!     .when(Close { account: id.clone() })
//!     .await
//!     .assert_events(vec![event(Closed { account: id.clone() })]);
//!
//! Scenario::new()
//!     .when(Close { account: id })
//!     .await
//!     .assert_rejected_with("the account is not open");
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{Aggregate, Apply};
use crate::bus::CommandBus;
use crate::command::{Command, CommandError, CommandReceipt};
use crate::event::{DomainEvent, Metadata};
use crate::personal::EncodeContext;
use crate::service::Services;
use crate::store::{Commit, EventStore, MemoryStore, NewEvent, RecordedEvent, StreamAppend};
use crate::value::StreamId;

/// An event as a test expects it: its name and encoded payload.
#[derive(Clone, PartialEq)]
pub struct ExpectedEvent {
    name: String,
    payload: Value,
}

impl fmt::Debug for ExpectedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.payload)
    }
}

/// An expected event. Personal fields compare by their encoded form, so expect events with
/// personal data through [`Then::events`] instead.
///
/// # Panics
/// If the event cannot be encoded.
pub fn event<E: DomainEvent>(event: E) -> ExpectedEvent {
    let payload = match event.encode(&mut EncodeContext::new()) {
        Ok(payload) => payload,
        Err(error) => panic!(
            "expected event `{}` does not encode: {error}",
            event.event_name()
        ),
    };
    ExpectedEvent {
        name: event.event_name().to_owned(),
        payload,
    }
}

/// A test: past events, then one command.
#[derive(Default)]
pub struct Scenario {
    given: Vec<(StreamId, NewEvent)>,
    services: Services,
    store: Option<Arc<dyn EventStore>>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("given", &self.given.len())
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// A scenario on a fresh in-memory store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `store` instead of a fresh in-memory one.
    pub fn on_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Registers a service for the handler.
    pub fn service<T: Send + Sync + 'static>(mut self, service: T) -> Self {
        self.services.insert(service);
        self
    }

    /// An event that already happened to aggregate `id`.
    ///
    /// # Panics
    /// If the event cannot be encoded.
    pub fn given<A, E>(mut self, id: &A::Id, event: E) -> Self
    where
        A: Aggregate + Apply<E>,
        E: DomainEvent,
    {
        let payload = match event.encode(&mut EncodeContext::new()) {
            Ok(payload) => payload,
            Err(error) => panic!(
                "given event `{}` does not encode: {error}",
                event.event_name()
            ),
        };
        self.given.push((
            StreamId::for_aggregate(A::NAME, id),
            NewEvent {
                event_id: Uuid::now_v7(),
                event_name: event.event_name().to_owned(),
                schema_version: event.event_version(),
                payload,
                metadata: Metadata::default(),
            },
        ));
        self
    }

    /// Executes `command` after appending the given events.
    ///
    /// # Panics
    /// If the given events cannot be appended or the bus cannot be built.
    pub async fn when<C: Command>(self, command: C) -> Then {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn EventStore>);
        let mut versions = std::collections::HashMap::<StreamId, u64>::new();
        for (stream_id, event) in self.given {
            let expected = versions.entry(stream_id.clone()).or_default();
            let commit = Commit {
                streams: vec![StreamAppend {
                    stream_id,
                    expected_version: *expected,
                    events: vec![event],
                }],
                command: None,
            };
            *expected += 1;
            if let Err(error) = store.append(commit).await {
                panic!("appending a given event failed: {error}");
            }
        }
        let mut builder = CommandBus::builder_shared(Arc::clone(&store));
        builder.services_mut().extend(self.services);
        let bus = match builder.build() {
            Ok(bus) => bus,
            Err(error) => panic!("building the command bus failed: {error}"),
        };
        let result = bus.execute(command).await;
        Then { result }
    }
}

/// The outcome of a [`Scenario`].
#[derive(Debug)]
pub struct Then {
    result: Result<CommandReceipt, CommandError>,
}

impl Then {
    /// What the bus returned.
    pub fn result(&self) -> &Result<CommandReceipt, CommandError> {
        &self.result
    }

    /// The events the command appended.
    ///
    /// # Panics
    /// If the command failed.
    pub fn events(&self) -> &[RecordedEvent] {
        match &self.result {
            Ok(receipt) => &receipt.events,
            Err(error) => panic!("expected the command to succeed, but it failed: {error}"),
        }
    }

    /// Asserts that the command appended exactly `expected`, in order.
    ///
    /// # Panics
    /// If it did not.
    #[track_caller]
    pub fn assert_events(&self, expected: Vec<ExpectedEvent>) -> &Self {
        let actual: Vec<ExpectedEvent> = self
            .events()
            .iter()
            .map(|e| ExpectedEvent {
                name: e.event_name.clone(),
                payload: e.payload.clone(),
            })
            .collect();
        assert_eq!(
            actual, expected,
            "the command appended other events than expected"
        );
        self
    }

    /// Asserts that the command succeeded and appended nothing.
    ///
    /// # Panics
    /// If it did not.
    #[track_caller]
    pub fn assert_no_events(&self) -> &Self {
        self.assert_events(Vec::new())
    }

    /// Asserts that the handler rejected the command with an error of type `E`, and returns it.
    ///
    /// # Panics
    /// If it did not.
    #[track_caller]
    pub fn assert_rejected<E: std::error::Error + 'static>(&self) -> &E {
        match &self.result {
            Err(error) => match error.rejection::<E>() {
                Some(rejection) => rejection,
                None => panic!(
                    "expected a rejection of type `{}`, got: {error}",
                    std::any::type_name::<E>()
                ),
            },
            Ok(receipt) => panic!(
                "expected a rejection, but the command appended {} events",
                receipt.events.len()
            ),
        }
    }

    /// Asserts that the handler rejected the command with an error whose message is `message`.
    ///
    /// # Panics
    /// If it did not.
    #[track_caller]
    pub fn assert_rejected_with(&self, message: &str) -> &Self {
        match &self.result {
            Err(CommandError::Rejected { source, .. }) => {
                assert_eq!(
                    source.to_string(),
                    message,
                    "the command was rejected for another reason"
                );
            }
            Err(error) => panic!("expected a rejection, got: {error}"),
            Ok(receipt) => panic!(
                "expected a rejection, but the command appended {} events",
                receipt.events.len()
            ),
        }
        self
    }
}
