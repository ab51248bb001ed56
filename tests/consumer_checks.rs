//! Start-up checks of consumers, and the read-only repository a consumer may take.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsourcery::dispatch::{DispatchConfig, DispatchError, Dispatcher};
use eventsourcery::service::ResolveError;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, Dep, DomainEvent, EventStore, Id, MemoryStore,
    Repository, SerializableValue, StoreError,
};
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct ShelfId(Uuid);

#[derive(DomainEvent)]
struct BookShelved {
    shelf: ShelfId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = ShelfId, events(BookShelved))]
struct Shelf {
    books: u32,
}

impl Apply<BookShelved> for Shelf {
    fn apply(&mut self, _: &BookShelved) {
        self.books += 1;
    }
}

#[derive(Command, Clone)]
struct ShelveBook {
    shelf: ShelfId,
}

#[eventsourcery::handler]
async fn shelve(cmd: ShelveBook, shelves: Repository<Shelf>) -> Result<(), eventsourcery::Error> {
    let mut shelf = shelves.load(&cmd.shelf).await?;
    shelf.raise(BookShelved { shelf: cmd.shelf });
    shelves.save(&mut shelf).await?;
    Ok(())
}

/// A service only `announce` needs.
struct Announcer;

#[eventsourcery::listener(consumer = "announcements")]
async fn announce(_: BookShelved, _announcer: Dep<Announcer>) {}

/// What `count_books` saw: the shelf's book count as loaded, and the error of a save.
#[derive(Default)]
struct Counts {
    loaded: Mutex<Vec<u32>>,
    saved: Mutex<Vec<String>>,
}

#[eventsourcery::listener(consumer = "book_counter")]
async fn count_books(
    event: BookShelved,
    shelves: Repository<Shelf>,
    counts: Dep<Counts>,
) -> Result<(), eventsourcery::Error> {
    let mut shelf = shelves.load(&event.shelf).await?;
    counts.loaded.lock().unwrap().push(shelf.books);
    shelf.raise(BookShelved { shelf: event.shelf });
    let refused = shelves.save(&mut shelf).await.unwrap_err();
    assert!(matches!(refused, StoreError::ReadOnly { .. }), "{refused}");
    counts.saved.lock().unwrap().push(refused.to_string());
    Ok(())
}

fn config() -> DispatchConfig {
    DispatchConfig::default()
        .max_attempts(1)
        .backoff(Duration::from_millis(1))
}

#[test]
fn a_consumer_service_that_is_not_registered_is_found_at_start_up() {
    let store = Arc::new(MemoryStore::new());
    let bus = CommandBus::builder(Arc::clone(&store)).build().unwrap();
    let dispatcher = Dispatcher::builder(&bus, Arc::clone(&store))
        .only(["announcements", "book_counter"])
        .build()
        .unwrap();
    let problems = dispatcher.check().unwrap_err();
    let mut missing: Vec<(String, &str, &str)> = problems
        .iter()
        .map(|problem| match problem {
            DispatchError::Unresolved {
                consumer,
                handler,
                source: ResolveError::MissingService { service, .. },
            } => (consumer.clone(), *handler, *service),
            other => panic!("unexpected problem: {other}"),
        })
        .collect();
    missing.sort();
    assert_eq!(
        missing,
        [
            (
                "announcements".to_owned(),
                "consumer_checks::announce",
                "consumer_checks::Announcer"
            ),
            (
                "book_counter".to_owned(),
                "consumer_checks::count_books",
                "consumer_checks::Counts"
            ),
        ]
    );
    let message = problems[0].to_string();
    assert!(message.contains(".service("), "{message}");
}

#[test]
fn a_service_registered_with_the_dispatcher_or_the_bus_passes_the_check() {
    let store = Arc::new(MemoryStore::new());
    let bus = CommandBus::builder(Arc::clone(&store))
        .service(Counts::default())
        .build()
        .unwrap();
    let dispatcher = Dispatcher::builder(&bus, Arc::clone(&store))
        .only(["announcements", "book_counter"])
        .service(Announcer)
        .build()
        .unwrap();
    dispatcher.check().unwrap();
}

#[tokio::test]
async fn a_listener_loads_aggregates_and_cannot_save_them() {
    let store = Arc::new(MemoryStore::new());
    let counts = Arc::new(Counts::default());
    let bus = CommandBus::builder(Arc::clone(&store)).build().unwrap();
    let dispatcher = Dispatcher::builder(&bus, Arc::clone(&store))
        .only(["book_counter"])
        .service_shared(Arc::clone(&counts))
        .config(config())
        .build()
        .unwrap();
    dispatcher.check().unwrap();
    let shelf = ShelfId::generate();
    for _ in 0..3 {
        bus.execute(ShelveBook {
            shelf: shelf.clone(),
        })
        .await
        .unwrap();
    }
    let caught_up = dispatcher.catch_up().await.unwrap();
    assert_eq!(caught_up.handled, 3);
    assert!(caught_up.parked.is_empty(), "{caught_up:?}");
    // The listener ran after the three commands: it loaded the shelf as it is now.
    assert_eq!(*counts.loaded.lock().unwrap(), [3, 3, 3]);
    let saved = counts.saved.lock().unwrap().clone();
    assert_eq!(saved.len(), 3);
    assert!(saved[0].contains("execute a command"), "{}", saved[0]);
    // Nothing the listener raised was appended.
    let shelf = bus.repository::<Shelf>().load(&shelf).await.unwrap();
    assert_eq!(shelf.books, 3);
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 3);
}
