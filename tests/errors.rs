//! What a command's failure is reported as: a rejection only when the handler decided it; a
//! failure of the store (or the vault) that the handler met, however it passed it on, as
//! such; each with its kind, for callers that map failures.

mod support;

use std::sync::Arc;

use eventsourcery::command::ErrorKind;
use eventsourcery::value::StreamId;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, CommandError, DomainEvent, EventStore, Id, MemoryStore,
    Repository, SerializableValue, StoreError,
};
use uuid::Uuid;

use support::BrokenReads;

#[derive(SerializableValue, Clone, Debug)]
struct ShelfId(Uuid);

#[derive(DomainEvent)]
struct Stocked {
    shelf: ShelfId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = ShelfId, events(Stocked))]
struct Shelf {
    stocked: bool,
}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {
        self.stocked = true;
    }
}

/// The domain's own error, which knows nothing of stores.
#[derive(Debug, thiserror::Error)]
#[error("the shelf is closed")]
struct Closed;

/// Loads the shelf and passes a failure on with `?`.
#[derive(Command, Clone)]
struct PassOn {
    shelf: ShelfId,
}

#[eventsourcery::handler]
async fn pass_on(cmd: PassOn, shelves: Repository<Shelf>) -> Result<(), eventsourcery::Error> {
    shelves.load(&cmd.shelf).await?;
    Ok(())
}

/// Loads the shelf and, when that fails, answers with a domain error of its own that does not
/// wrap the store's: still the store's failure, not a rejection.
#[derive(Command, Clone)]
struct HideIt {
    shelf: ShelfId,
}

#[eventsourcery::handler]
async fn hide_it(cmd: HideIt, shelves: Repository<Shelf>) -> Result<(), Closed> {
    match shelves.load(&cmd.shelf).await {
        Ok(_) => Ok(()),
        Err(_) => Err(Closed),
    }
}

/// Reads the event store itself, returning its error as the handler's.
#[derive(Command, Clone)]
struct ReadDirectly {
    shelf: ShelfId,
}

#[eventsourcery::handler]
async fn read_directly(cmd: ReadDirectly, store: Arc<dyn EventStore>) -> Result<(), StoreError> {
    store
        .read_stream(&StreamId::for_aggregate("shelf", &cmd.shelf), 0)
        .await?;
    Ok(())
}

/// Says no.
#[derive(Command, Clone)]
struct Refuse {
    shelf: ShelfId,
}

#[eventsourcery::handler]
async fn refuse(_cmd: Refuse) -> Result<(), Closed> {
    Err(Closed)
}

/// Has no handler.
#[derive(Command, Clone)]
struct Orphan {
    shelf: ShelfId,
}

fn bus(store: impl eventsourcery::EventStore) -> CommandBus {
    CommandBus::builder(store).build().unwrap()
}

fn is_store_failure(error: &CommandError) -> bool {
    matches!(
        error,
        CommandError::Store {
            source: StoreError::Corrupt { .. },
            ..
        }
    ) && error.kind() == ErrorKind::Unavailable
}

#[tokio::test]
async fn a_store_failure_passed_on_with_question_mark_is_the_stores() {
    let error = bus(BrokenReads::default())
        .execute(PassOn {
            shelf: ShelfId::generate(),
        })
        .await
        .unwrap_err();
    assert!(is_store_failure(&error), "{error:?}");
}

#[tokio::test]
async fn a_store_failure_hidden_in_a_domain_error_is_still_the_stores() {
    let error = bus(BrokenReads::default())
        .execute(HideIt {
            shelf: ShelfId::generate(),
        })
        .await
        .unwrap_err();
    assert!(is_store_failure(&error), "{error:?}");
    assert!(error.rejection::<Closed>().is_none());
}

#[tokio::test]
async fn a_store_error_the_handler_returns_itself_is_the_stores() {
    let error = bus(BrokenReads::default())
        .execute(ReadDirectly {
            shelf: ShelfId::generate(),
        })
        .await
        .unwrap_err();
    assert!(is_store_failure(&error), "{error:?}");
}

#[tokio::test]
async fn a_domain_rejection_is_a_rejection_and_is_logged() {
    let store = Arc::new(MemoryStore::new());
    let bus = CommandBus::builder(store.clone()).build().unwrap();
    let error = bus
        .execute(Refuse {
            shelf: ShelfId::generate(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Rejected);
    assert!(error.rejection::<Closed>().is_some(), "{error}");
    let log = eventsourcery::EventStore::read_commands(&*store, 0, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "the rejection is logged");
}

#[tokio::test]
async fn every_kind_maps_its_variants() {
    let error = bus(MemoryStore::new())
        .execute(Orphan {
            shelf: ShelfId::generate(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Misconfigured);
    let conflict = CommandError::Conflict {
        command: "c",
        attempts: 3,
    };
    assert_eq!(conflict.kind(), ErrorKind::Conflict);
    let erased = CommandError::SubjectErased {
        command: "c",
        subject: eventsourcery::PersonalKey::issue(),
    };
    assert_eq!(erased.kind(), ErrorKind::SubjectErased);
}
