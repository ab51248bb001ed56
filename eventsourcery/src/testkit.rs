#![doc = include_str!("docs/testkit.md")]

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{Aggregate, AggregateRoot, EventOf};
use crate::backend::MemoryStore;
use crate::bus::CommandBus;
use crate::codec::{DecodeContext, EncodeContext};
use crate::command::{Command, CommandError, CommandReceipt, ErrorKind};
use crate::event::{DomainEvent, Metadata, decode_stored};
use crate::personal::{Personal, PersonalKey};
use crate::service::Services;
use crate::store::{
    CommandOutcome, CommandRecord, Commit, EventStore, NewEvent, RecordedEvent, Shared,
    StreamAppend,
};
use crate::value::StreamId;
use crate::vault::PersonalVault;

/// The reason recorded for an erasure made by [`Scenario::erase`] or [`Then::erase`].
pub const ERASURE_REASON: &str = "testkit scenario";

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

/// An expected event. Personal fields compare by their encoded form (a fresh reference each
/// time), so check events with personal data through [`Then::decoded`] instead.
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

/// What a scenario does before its command, in order.
enum Step {
    /// An event appended to a stream, with the personal values it refers to.
    Given {
        stream: StreamId,
        event: Box<NewEvent>,
        personal: EncodeContext,
    },
    /// A data subject forgotten.
    Erase(PersonalKey),
}

/// A test: past events and erasures, then one command.
#[derive(Default)]
pub struct Scenario {
    steps: Vec<Step>,
    services: Services,
    store: Option<Arc<dyn EventStore>>,
    vault: Option<Arc<PersonalVault>>,
}

crate::redact::debug_fields!(Scenario { steps.len(), services });

impl Scenario {
    /// A scenario on a fresh in-memory store, with a fresh in-memory personal data vault.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `store` instead of a fresh in-memory one.
    pub fn on_store(mut self, store: impl Shared<dyn EventStore>) -> Self {
        self.store = Some(store.shared());
        self
    }

    /// Routes personal data through `vault` (or an `Arc<PersonalVault>` the test keeps a handle
    /// to) instead of a fresh in-memory one.
    pub fn personal_data(mut self, vault: impl Shared<PersonalVault>) -> Self {
        self.vault = Some(vault.shared());
        self
    }

    /// Registers a service for the handler.
    pub fn service<T: Send + Sync + 'static>(mut self, service: T) -> Self {
        self.services.insert(service);
        self
    }

    /// An event that already happened to aggregate `id`. Its personal fields are stored
    /// through the scenario's vault, as a save stores them.
    ///
    /// # Panics
    /// If the event cannot be encoded.
    pub fn given<A, E>(mut self, id: &A::Id, event: E) -> Self
    where
        A: Aggregate,
        // On the event, as `AggregateRoot::raise` has it: with `A: Apply<E>`, rustc infers `E`
        // from the aggregate's only `Apply` impl and reports a mismatched argument instead.
        E: DomainEvent + EventOf<A>,
    {
        let mut personal = EncodeContext::new();
        let payload = match event.encode(&mut personal) {
            Ok(payload) => payload,
            Err(error) => panic!(
                "given event `{}` does not encode: {error}",
                event.event_name()
            ),
        };
        self.steps.push(Step::Given {
            stream: StreamId::for_aggregate(A::NAME, id),
            event: Box::new(NewEvent {
                event_id: Uuid::now_v7(),
                event_name: event.event_name().to_owned(),
                schema_version: event.event_version(),
                payload,
                metadata: Metadata::default(),
            }),
            personal,
        });
        self
    }

    /// Erases data subject `subject`, after the events given so far, with reason
    /// [`ERASURE_REASON`].
    pub fn erase(mut self, subject: PersonalKey) -> Self {
        self.steps.push(Step::Erase(subject));
        self
    }

    /// Executes `command` after the given events and erasures.
    ///
    /// # Panics
    /// If the vault cannot be made, the bus cannot be built, or a given event or erasure fails.
    pub async fn when<C: Command>(self, command: C) -> Then {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn EventStore>);
        let vault = match self.vault {
            Some(vault) => vault,
            None => match PersonalVault::in_memory() {
                Ok(vault) => Arc::new(vault),
                Err(error) => panic!("making the scenario's in-memory vault failed: {error}"),
            },
        };
        let mut builder = CommandBus::builder(Arc::clone(&store)).personal_data(Arc::clone(&vault));
        builder.services_mut().extend(self.services);
        let bus = match builder.build() {
            Ok(bus) => bus,
            Err(error) => panic!("building the command bus failed: {error}"),
        };
        let mut versions = HashMap::<StreamId, u64>::new();
        for step in self.steps {
            match step {
                Step::Given {
                    stream,
                    event,
                    personal,
                } => {
                    let name = event.event_name.clone();
                    if let Err(error) = bus.engine().store_personal(personal).await {
                        panic!(
                            "storing the personal fields of given event `{name}` failed: {error}"
                        );
                    }
                    let expected = versions.entry(stream.clone()).or_default();
                    let commit = Commit {
                        streams: vec![StreamAppend {
                            stream_id: stream,
                            expected_version: *expected,
                            events: vec![*event],
                        }],
                        command: None,
                    };
                    *expected += 1;
                    if let Err(error) = store.append(commit).await {
                        panic!("appending given event `{name}` failed: {error}");
                    }
                }
                Step::Erase(subject) => erase(&vault, subject).await,
            }
        }
        Then::run(bus, vault, command).await
    }
}

async fn erase(vault: &PersonalVault, subject: PersonalKey) {
    if let Err(error) = vault.erase(subject, ERASURE_REASON).await {
        panic!("erasing data subject {subject} failed: {error}");
    }
}

/// The outcome of a [`Scenario`]'s command, and the store and vault it ran on.
///
/// Its `Debug` output says what happened as a failed assertion does, with no personal value.
pub struct Then {
    result: Result<CommandReceipt, CommandError>,
    /// What the command log holds as the handler's message, if it rejected the command: the
    /// only form of the message a failed assertion may print (it is withheld there when the
    /// command touched personal data).
    logged: Option<String>,
    bus: CommandBus,
    vault: Arc<PersonalVault>,
}

impl fmt::Debug for Then {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then")
            .field("outcome", &self.what_happened())
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl Then {
    async fn run<C: Command>(bus: CommandBus, vault: Arc<PersonalVault>, command: C) -> Self {
        let logged_before = command_log(bus.store(), 0).await.map(|log| log.len());
        let result = bus.execute(command).await;
        let logged = match (&result, logged_before) {
            (Err(CommandError::Rejected { .. }), Some(before)) => {
                command_log(bus.store(), before as u64)
                    .await
                    .into_iter()
                    .flatten()
                    .filter(|record| record.name == C::NAME)
                    .find_map(|record| match record.outcome {
                        CommandOutcome::Failed { error } => Some(error),
                        _ => None,
                    })
            }
            _ => None,
        };
        Self {
            result,
            logged,
            bus,
            vault,
        }
    }

    /// What the bus returned.
    pub fn result(&self) -> &Result<CommandReceipt, CommandError> {
        &self.result
    }

    /// The bus the command ran on: its store, its vault, its repositories.
    pub fn bus(&self) -> &CommandBus {
        &self.bus
    }

    /// The scenario's personal data vault (for exports and lookups).
    pub fn vault(&self) -> &Arc<PersonalVault> {
        &self.vault
    }

    /// Executes another command on the same store, vault and services.
    pub async fn when<C: Command>(&self, command: C) -> Then {
        Self::run(self.bus.clone(), Arc::clone(&self.vault), command).await
    }

    /// Erases data subject `subject` now, with reason [`ERASURE_REASON`].
    ///
    /// # Panics
    /// If the vault fails.
    pub async fn erase(&self, subject: PersonalKey) -> &Self {
        erase(&self.vault, subject).await;
        self
    }

    /// Replays aggregate `id` from the store, its personal fields read through the vault as
    /// they are now (erased once their subject is).
    ///
    /// # Panics
    /// If it cannot be loaded.
    pub async fn load<A: Aggregate>(&self, id: &A::Id) -> AggregateRoot<A> {
        match self.bus.repository::<A>().load(id).await {
            Ok(root) => root,
            Err(error) => panic!("loading aggregate `{}` failed: {error}", A::NAME),
        }
    }

    /// The events the command appended, in order.
    ///
    /// # Panics
    /// If the command failed.
    #[track_caller]
    pub fn events(&self) -> &[RecordedEvent] {
        match &self.result {
            Ok(receipt) => &receipt.events,
            Err(_) => panic!(
                "expected the command to succeed, but {}",
                self.what_happened()
            ),
        }
    }

    /// The events the command appended that are of type `E`, decoded, with their personal
    /// fields read through the vault as they are now (erased once their subject is).
    ///
    /// # Panics
    /// If the command failed or an event does not decode.
    pub async fn decoded<E: DomainEvent>(&self) -> Vec<E> {
        let events: Vec<&RecordedEvent> = self
            .events()
            .iter()
            .filter(|e| E::handles(&e.event_name))
            .collect();
        let references =
            crate::codec::references(events.iter().map(|e| (e.event_name.as_str(), &e.payload)));
        let resolved = match self.vault.resolve(&references).await {
            Ok(resolved) => resolved,
            Err(error) => panic!("reading the events' personal fields failed: {error}"),
        };
        let mut cx = DecodeContext::with(&resolved);
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            let payload = event.payload.clone();
            match decode_stored(&event.event_name, event.schema_version, payload, &mut cx) {
                Ok(event) => decoded.push(event),
                Err(error) => panic!(
                    "event `{}` at stream `{}` version {} does not decode: {error}",
                    event.event_name, event.stream_id, event.stream_version
                ),
            }
        }
        decoded
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
    /// A failure of the store or the vault that the handler passed on (`load(..).await?`) is
    /// not a rejection, even in an `E` (see [the module docs](self#rejections-and-failures)).
    ///
    /// # Panics
    /// If it did not, saying what happened instead.
    #[track_caller]
    pub fn assert_rejected<E: StdError + 'static>(&self) -> &E {
        match self.rejection() {
            Some(source) => match source.downcast_ref::<E>() {
                Some(rejection) => rejection,
                None => panic!(
                    "expected a rejection of type `{}`, but the handler rejected the command with an error of another type: {}",
                    std::any::type_name::<E>(),
                    self.logged_message()
                ),
            },
            None => panic!(
                "expected a rejection of type `{}`, but {}",
                std::any::type_name::<E>(),
                self.what_happened()
            ),
        }
    }

    /// Asserts that the handler rejected the command with an error whose message is `message`.
    ///
    /// As with [`assert_rejected`](Self::assert_rejected), a store or vault failure is not a
    /// rejection.
    ///
    /// # Panics
    /// If it did not, saying what happened instead.
    #[track_caller]
    pub fn assert_rejected_with(&self, message: &str) -> &Self {
        match self.rejection() {
            Some(source) => {
                if source.to_string() != message {
                    panic!(
                        "expected a rejection with message {message:?}, but the handler rejected the command with another message: {}",
                        self.logged_message()
                    );
                }
            }
            None => panic!(
                "expected a rejection with message {message:?}, but {}",
                self.what_happened()
            ),
        }
        self
    }

    /// The handler's error, if it decided to reject the command (the bus reports a failure of
    /// the store or the vault that the handler passed on as such, not as a rejection).
    fn rejection(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.result {
            Err(CommandError::Rejected { source, .. }) => Some(&**source),
            _ => None,
        }
    }

    /// What happened, for a failed assertion, with no personal value in it.
    fn what_happened(&self) -> String {
        match &self.result {
            Ok(receipt) => match receipt.events.len() {
                1 => "the command succeeded and appended 1 event".to_owned(),
                n => format!("the command succeeded and appended {n} events"),
            },
            Err(CommandError::Rejected { .. }) => format!(
                "the handler rejected the command: {}",
                self.logged_message()
            ),
            // The machinery's errors name streams, positions, fields and subjects, never a
            // personal value.
            Err(error) => match error.kind() {
                ErrorKind::Unavailable => format!(
                    "the handler failed on an error of the store or the vault, which is not a rejection: {}",
                    crate::error::chain(error)
                ),
                _ => format!("the command failed: {}", crate::error::chain(error)),
            },
        }
    }

    /// The handler's message as the command log holds it.
    fn logged_message(&self) -> String {
        match &self.logged {
            Some(message) if message != crate::command::WITHHELD => format!("{message:?}"),
            _ => {
                "(its message is not shown: the command touched personal data; see `Then::result`)"
                    .to_owned()
            }
        }
    }
}

/// The command log from entry `offset` on; `None` if it cannot be read (a failed assertion
/// then shows no handler message).
async fn command_log(store: &Arc<dyn EventStore>, offset: u64) -> Option<Vec<CommandRecord>> {
    const PAGE: usize = 1_000;
    let mut log = Vec::new();
    loop {
        let page = store
            .read_commands(offset + log.len() as u64, PAGE)
            .await
            .ok()?;
        let done = page.len() < PAGE;
        log.extend(page);
        if done {
            return Some(log);
        }
    }
}

/// Asserts that a personal field holds a value, and returns it.
///
/// # Panics
/// If it was erased.
#[track_caller]
pub fn assert_present<T>(field: &Personal<T>) -> &T {
    match field.present() {
        Some(value) => value,
        None => panic!(
            "expected a present `{}`, but it was erased",
            std::any::type_name::<T>()
        ),
    }
}

/// Asserts that a personal field holds `expected`.
///
/// # Panics
/// If it was erased or holds another value (neither value is printed).
#[track_caller]
pub fn assert_present_eq<T: PartialEq>(field: &Personal<T>, expected: &T) {
    if assert_present(field) != expected {
        panic!(
            "the `{}` differs from the expected one (personal values are not shown)",
            std::any::type_name::<T>()
        );
    }
}

/// Asserts that a personal field reads as erased.
///
/// # Panics
/// If it holds a value (which is not printed).
#[track_caller]
pub fn assert_erased<T>(field: &Personal<T>) {
    if !field.is_erased() {
        panic!(
            "expected an erased `{}`, but it holds a value (not shown)",
            std::any::type_name::<T>()
        );
    }
}
