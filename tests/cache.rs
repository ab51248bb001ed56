//! `#[aggregate(cache)]`: commands skip the stream read, and stale states are caught by the
//! concurrency check or retried after a rejection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use eventsourcery::store::RecordedEvent;
use eventsourcery::store::{CommandRecord, Commit, Snapshot};
use eventsourcery::value::StreamId;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, DomainEvent, EventStore, Id, MemoryStore, Personal,
    PersonalData, PersonalKey, PersonalVault, Repository, SerializableValue, StoreError,
};
use uuid::Uuid;

/// A memory store that counts stream reads.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    stream_reads: AtomicU32,
}

#[eventsourcery::store::async_trait]
impl EventStore for Counting {
    async fn append(&self, commit: Commit) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.append(commit).await
    }
    async fn read_stream_page(
        &self,
        stream: &StreamId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
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

#[derive(SerializableValue, Clone, Debug)]
struct CardId(Uuid);

#[derive(PersonalData, Clone)]
struct Name(String);

#[derive(DomainEvent)]
#[event(subject = owner)]
struct Issued {
    card: CardId,
    owner: PersonalKey,
    #[personal]
    name: Personal<Name>,
}

#[derive(DomainEvent)]
struct Charged {
    card: CardId,
    cents: u64,
}

#[derive(Aggregate, Default, Clone)]
#[aggregate(id = CardId, events(Issued, Charged), cache)]
struct Card {
    issued: bool,
    name: Option<Personal<Name>>,
    charged: u64,
}

impl Apply<Issued> for Card {
    fn apply(&mut self, e: &Issued) {
        self.issued = true;
        self.name = Some(e.name.clone());
    }
}

impl Apply<Charged> for Card {
    fn apply(&mut self, e: &Charged) {
        self.charged += e.cents;
    }
}

#[derive(Command, Clone)]
struct Charge {
    card: CardId,
    cents: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("card not issued")]
struct NotIssued;

#[derive(Debug, thiserror::Error)]
enum CardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NotIssued(#[from] NotIssued),
}

#[eventsourcery::handler]
async fn charge(cmd: Charge, cards: Repository<Card>) -> Result<(), CardError> {
    let mut card = cards.load(&cmd.card).await?;
    if !card.issued {
        return Err(NotIssued.into());
    }
    card.raise(Charged {
        card: cmd.card,
        cents: cmd.cents,
    });
    cards.save(&mut card).await?;
    Ok(())
}

struct Setup {
    store: Arc<Counting>,
    bus: CommandBus,
    vault: Arc<PersonalVault>,
    outsider: Repository<Card>,
}

fn setup() -> Setup {
    let store = Arc::new(Counting::default());
    let vault = Arc::new(PersonalVault::in_memory().unwrap());
    let bus = CommandBus::builder(store.clone())
        .personal_data(vault.clone())
        .build()
        .unwrap();
    // Another process, as far as the bus's cache knows.
    let outsider = Repository::<Card>::with_personal_data(store.clone(), vault.clone());
    Setup {
        store,
        bus,
        vault,
        outsider,
    }
}

async fn issue(s: &Setup, card: &CardId, owner: PersonalKey) {
    let mut root = s.outsider.load(card).await.unwrap();
    root.raise(Issued {
        card: card.clone(),
        owner,
        name: Name("Ann".into()).into(),
    });
    s.outsider.save(&mut root).await.unwrap();
}

#[tokio::test]
async fn commands_on_a_cached_aggregate_skip_the_stream_read() {
    let s = setup();
    let card = CardId::generate();
    issue(&s, &card, PersonalKey::issue()).await;
    let before = s.store.stream_reads.load(Ordering::SeqCst);
    for _ in 0..10 {
        s.bus
            .execute(Charge {
                card: card.clone(),
                cents: 1,
            })
            .await
            .unwrap();
    }
    assert_eq!(
        s.store.stream_reads.load(Ordering::SeqCst) - before,
        1,
        "only the first command reads"
    );
    assert_eq!(s.outsider.load(&card).await.unwrap().charged, 10);
}

#[tokio::test]
async fn a_stale_cached_state_conflicts_and_is_retried_fresh() {
    let s = setup();
    let card = CardId::generate();
    issue(&s, &card, PersonalKey::issue()).await;
    s.bus
        .execute(Charge {
            card: card.clone(),
            cents: 1,
        })
        .await
        .unwrap();
    // Another process charges behind the cache's back.
    let mut root = s.outsider.load(&card).await.unwrap();
    root.raise(Charged {
        card: card.clone(),
        cents: 100,
    });
    s.outsider.save(&mut root).await.unwrap();

    let receipt = s
        .bus
        .execute(Charge {
            card: card.clone(),
            cents: 1,
        })
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 2, "the cached version conflicted once");
    assert_eq!(receipt.events[0].stream_version, 4);
    assert_eq!(s.outsider.load(&card).await.unwrap().charged, 102);
}

#[tokio::test]
async fn a_rejection_on_cached_state_is_decided_again_on_fresh_state() {
    let s = setup();
    let card = CardId::generate();
    // The bus caches the card as not issued...
    let error = s
        .bus
        .execute(Charge {
            card: card.clone(),
            cents: 1,
        })
        .await
        .unwrap_err();
    assert!(error.rejection::<CardError>().is_some());
    // ...then another process issues it.
    issue(&s, &card, PersonalKey::issue()).await;
    let receipt = s
        .bus
        .execute(Charge {
            card: card.clone(),
            cents: 5,
        })
        .await
        .unwrap();
    assert_eq!(receipt.events.len(), 1);
}

#[tokio::test]
async fn an_erasure_drops_cached_personal_data() {
    let s = setup();
    let (card, owner) = (CardId::generate(), PersonalKey::issue());
    issue(&s, &card, owner).await;
    s.bus
        .execute(Charge {
            card: card.clone(),
            cents: 1,
        })
        .await
        .unwrap();
    s.vault.erase(owner, "request").await.unwrap();
    let reads = s.store.stream_reads.load(Ordering::SeqCst);
    s.bus
        .execute(Charge {
            card: card.clone(),
            cents: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        s.store.stream_reads.load(Ordering::SeqCst),
        reads + 1,
        "re-read after the erasure"
    );
    assert!(
        s.outsider
            .load(&card)
            .await
            .unwrap()
            .name
            .as_ref()
            .unwrap()
            .is_erased()
    );
}
