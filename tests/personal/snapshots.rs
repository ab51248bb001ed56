//! Snapshots of aggregates holding personal values: the snapshot keeps references, never a
//! value, and loading from it resolves them, or reads them as erased once their subject is
//! forgotten, also when the erasure meets the load.

use std::collections::BTreeMap;

use eventsourcery::{
    Aggregate, AggregateRoot, Apply, DomainEvent, Id, Personal, PersonalKey, Repository,
    SerializableValue,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Backend, EMAIL, Email, FullName, NAME, assert_no_plaintext};

#[derive(SerializableValue, Clone, Debug)]
pub struct ClubId(Uuid);

#[derive(DomainEvent)]
#[event(name = "member_joined", subject = member)]
pub struct MemberJoined {
    number: u32,
    member: PersonalKey,
    #[personal]
    email: Personal<Email>,
    #[personal]
    name: Option<Personal<FullName>>,
}

/// The state of a club, snapshotted every three events: personal values in every shape the
/// snapshot can hold, beside plain state.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(id = ClubId, events(MemberJoined), name = "club", snapshot(every = 3, version = 1))]
pub struct Club {
    joined: u32,
    #[serde(with = "eventsourcery::aggregate::snapshot")]
    founder: Option<Personal<Email>>,
    #[serde(with = "eventsourcery::aggregate::snapshot")]
    emails: Vec<Personal<Email>>,
    #[serde(with = "eventsourcery::aggregate::snapshot")]
    names: BTreeMap<u32, Option<Personal<FullName>>>,
}

impl Apply<MemberJoined> for Club {
    fn apply(&mut self, e: &MemberJoined) {
        self.joined += 1;
        if self.founder.is_none() {
            self.founder = Some(e.email.clone());
        }
        self.emails.push(e.email.clone());
        self.names.insert(e.number, e.name.clone());
    }
}

fn joined(number: u32, member: PersonalKey, email: &str, name: &str) -> MemberJoined {
    MemberJoined {
        number,
        member,
        email: Email(email.into()).into(),
        name: Some(FullName(name.into()).into()),
    }
}

/// Saves a club of Ann and two others, and loads it once, which snapshots it. Gives the club
/// and Ann's key.
pub async fn snapshotted_club(backend: &Backend) -> (ClubId, PersonalKey, Repository<Club>) {
    let repository =
        Repository::<Club>::with_personal_data(backend.store.clone(), backend.vault.clone());
    let club = ClubId::generate();
    let ann = PersonalKey::issue();
    let mut root = repository.load(&club).await.unwrap();
    root.raise(joined(1, ann, EMAIL, NAME));
    root.raise(joined(2, PersonalKey::issue(), "bob@example.com", "Bob"));
    root.raise(joined(3, PersonalKey::issue(), "cy@example.com", "Cy"));
    repository.save(&mut root).await.unwrap();
    repository.load(&club).await.unwrap();
    (club, ann, repository)
}

async fn stored_snapshot(backend: &Backend, root: &AggregateRoot<Club>) -> serde_json::Value {
    backend
        .store
        .load_snapshot(root.stream_id())
        .await
        .unwrap()
        .expect("the load took a snapshot")
        .state
}

/// Changes the plain part of the stored snapshot, so that a load that comes from it shows,
/// and whatever else `edit` changes.
async fn mark_snapshot_and(
    backend: &Backend,
    root: &AggregateRoot<Club>,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let mut snapshot = backend
        .store
        .load_snapshot(root.stream_id())
        .await
        .unwrap()
        .unwrap();
    snapshot.state["$state"]["joined"] = 999.into();
    edit(&mut snapshot.state);
    backend.store.save_snapshot(snapshot).await.unwrap();
}

async fn mark_snapshot(backend: &Backend, root: &AggregateRoot<Club>) {
    mark_snapshot_and(backend, root, |_| {}).await;
}

fn email(value: &Personal<Email>) -> Option<&str> {
    value.present().map(|e| e.0.as_str())
}

/// The snapshot holds references only; a load from it resolves them; after Ann's erasure a
/// load from the same snapshot reads her values as erased and the others' as they were.
pub async fn a_snapshot_holds_references_and_reads_erased_after_erasure(backend: Backend) {
    let (club, ann, repository) = snapshotted_club(&backend).await;
    let root = repository.load(&club).await.unwrap();
    let snapshot = stored_snapshot(&backend, &root).await;
    let text = snapshot.to_string();
    assert_no_plaintext("the snapshot", text.as_bytes());
    assert!(!text.contains("bob@example.com"), "{text}");
    assert_eq!(
        snapshot["$personal"].as_array().map(Vec::len),
        Some(6),
        "each value listed once: {text}"
    );
    assert!(
        snapshot["$state"]["founder"]["$personal"].is_string(),
        "{text}"
    );

    mark_snapshot(&backend, &root).await;
    let loaded = repository.load(&club).await.unwrap();
    assert_eq!(loaded.joined, 999, "loaded from the snapshot");
    assert_eq!(loaded.founder.as_ref().and_then(email), Some(EMAIL));
    assert_eq!(
        loaded.emails.iter().map(email).collect::<Vec<_>>(),
        [Some(EMAIL), Some("bob@example.com"), Some("cy@example.com")]
    );
    let ann_name = loaded.names[&1].as_ref().unwrap();
    assert_eq!(ann_name.present().map(|n| n.0.as_str()), Some(NAME));
    // A value loaded from a snapshot knows its reference, as one loaded from its event does.
    let reference = loaded.emails[0].reference().unwrap();
    assert_eq!(reference.subject(), ann);
    assert_eq!(reference.field(), "member_joined.email");

    backend.vault.erase(ann, "request 11").await.unwrap();
    let loaded = repository.load(&club).await.unwrap();
    assert_eq!(loaded.joined, 999, "still loaded from the snapshot");
    assert!(loaded.founder.as_ref().unwrap().is_erased());
    assert!(loaded.emails[0].is_erased());
    assert!(loaded.names[&1].as_ref().unwrap().is_erased());
    assert_eq!(email(&loaded.emails[1]), Some("bob@example.com"));
    assert_eq!(
        loaded.names[&3]
            .as_ref()
            .and_then(|n| n.present())
            .map(|n| n.0.as_str()),
        Some("Cy")
    );
    // Ann cannot be given a value again without re-enrolment.
    let mut root = loaded;
    root.raise(joined(4, ann, EMAIL, NAME));
    let refused = repository.save(&mut root).await;
    assert!(
        refused.is_err(),
        "an erased subject's value is not stored again"
    );
}

/// A snapshot whose list of references was tampered with (one dropped) is not used: the load
/// replays the events instead, and gets every value from them.
pub async fn a_snapshot_with_a_reference_left_out_is_ignored(backend: Backend) {
    let (club, _, repository) = snapshotted_club(&backend).await;
    let root = repository.load(&club).await.unwrap();
    mark_snapshot_and(&backend, &root, |state| {
        state["$personal"].as_array_mut().unwrap().pop();
    })
    .await;
    let loaded = repository.load(&club).await.unwrap();
    assert_eq!(loaded.joined, 3, "replayed from the events");
    assert_eq!(loaded.emails.len(), 3);
    assert!(loaded.emails.iter().all(|e| !e.is_erased()));
}

/// A tampered snapshot whose references are all genuine and listed, but moved: Ann's name put
/// in the place of an email, then an email of another aggregate's event. Neither is served; the
/// load replays the events instead.
pub async fn a_snapshot_reference_moved_to_another_field_is_refused(backend: Backend) {
    let (club, _, repository) = snapshotted_club(&backend).await;
    let root = repository.load(&club).await.unwrap();
    mark_snapshot_and(&backend, &root, |state| {
        state["$state"]["founder"] = state["$state"]["names"]["1"].clone();
    })
    .await;
    let loaded = repository.load(&club).await.unwrap();
    assert_eq!(loaded.joined, 3, "replayed from the events");
    assert_eq!(loaded.founder.as_ref().and_then(email), Some(EMAIL));

    // A genuine email reference of a voucher's event, listed and put in the club's state.
    let voucher = super::VoucherId::generate();
    backend
        .bus()
        .execute(super::register_cmd(
            &voucher,
            PersonalKey::issue(),
            "x@example.com",
            "X",
        ))
        .await
        .unwrap();
    let foreign = backend
        .store
        .read_all(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_name == "candidate_registered")
        .map(|e| e.payload["email"].clone())
        .unwrap();
    let root = repository.load(&club).await.unwrap();
    mark_snapshot_and(&backend, &root, |state| {
        let mut listed = foreign.clone();
        listed["field"] = "candidate_registered.email".into();
        state["$personal"]
            .as_array_mut()
            .unwrap()
            .push(listed.clone());
        state["$state"]["founder"] = listed;
    })
    .await;
    let loaded = repository.load(&club).await.unwrap();
    assert_eq!(loaded.joined, 3, "replayed from the events");
    assert_eq!(loaded.founder.as_ref().and_then(email), Some(EMAIL));
}

#[derive(DomainEvent)]
#[event(name = "alias_chosen", subject = member)]
pub struct AliasChosen {
    member: PersonalKey,
    #[personal]
    email: Personal<Email>,
}

/// An aggregate that makes a personal value of its own in `apply`: it has no reference, so the
/// state is not snapshotted (and still loads).
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(id = ClubId, events(AliasChosen), name = "alias", snapshot(every = 2, version = 1))]
pub struct Alias {
    #[serde(with = "eventsourcery::aggregate::snapshot")]
    alias: Option<Personal<Email>>,
}

impl Apply<AliasChosen> for Alias {
    fn apply(&mut self, e: &AliasChosen) {
        self.alias = e
            .email
            .present()
            .map(|email| Personal::new(Email(email.0.to_uppercase())));
    }
}

pub async fn a_state_holding_a_value_of_its_own_is_not_snapshotted(backend: Backend) {
    let repository =
        Repository::<Alias>::with_personal_data(backend.store.clone(), backend.vault.clone());
    let id = ClubId::generate();
    let member = PersonalKey::issue();
    let mut root = repository.load(&id).await.unwrap();
    for _ in 0..2 {
        root.raise(AliasChosen {
            member,
            email: Email(EMAIL.into()).into(),
        });
    }
    repository.save(&mut root).await.unwrap();
    let loaded = repository.load(&id).await.unwrap();
    assert_eq!(
        loaded
            .alias
            .as_ref()
            .and_then(|a| a.present())
            .map(|a| a.0.clone()),
        Some(EMAIL.to_uppercase())
    );
    assert!(loaded.alias.as_ref().unwrap().reference().is_none());
    let snapshot = backend
        .store
        .load_snapshot(loaded.stream_id())
        .await
        .unwrap();
    assert!(snapshot.is_none(), "no snapshot without references");
}

/// Deterministic: a load from a snapshot is paused just before it reads the personal values
/// that the snapshot refers to; the subject is erased meanwhile; the load then reads them as
/// erased (no value read before the erasure is served after it).
pub async fn an_erasure_while_a_snapshot_loads_reads_erased(backend: Backend) {
    let (club, ann, repository) = snapshotted_club(&backend).await;
    let root = repository.load(&club).await.unwrap();
    mark_snapshot(&backend, &root).await;
    let (paused, gate) = super::races::pausing(&backend);
    let pausing =
        Repository::<Club>::with_personal_data(paused.store.clone(), paused.vault.clone());
    let mut at_get = gate.arm(super::races::Point::BeforeGet);
    let load = tokio::spawn({
        let club = club.clone();
        async move { pausing.load(&club).await }
    });
    at_get.arrived().await;
    backend.vault.erase(ann, "request 12").await.unwrap();
    at_get.release();
    let loaded = load.await.unwrap().unwrap();
    assert_eq!(loaded.joined, 999, "loaded from the snapshot");
    assert!(loaded.founder.as_ref().unwrap().is_erased());
    assert!(loaded.emails[0].is_erased());
    assert_eq!(email(&loaded.emails[1]), Some("bob@example.com"));
}

/// For real: writers keep adding members and loading (each load past three new events takes a
/// snapshot) while Ann is erased. The eraser starts once the writers have run a few rounds,
/// and the writers go on a few rounds after it returned, so the erasure falls among their
/// loads and snapshots on every backend. Once it has returned, every load, from whatever
/// snapshot, reads every value of Ann as erased, and no snapshot ever held plaintext.
pub async fn snapshots_and_an_eraser_race_for_real(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    for round in 0..8u32 {
        let (iterations, erased) = (
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let repository =
            Repository::<Club>::with_personal_data(backend.store.clone(), backend.vault.clone());
        let club = ClubId::generate();
        let ann = PersonalKey::issue();
        let mut root = repository.load(&club).await.unwrap();
        root.raise(joined(0, ann, EMAIL, NAME));
        repository.save(&mut root).await.unwrap();
        let writers: Vec<_> = (0..3u32)
            .map(|writer| {
                let (repository, club) = (repository.clone(), club.clone());
                let (iterations, erased) = (iterations.clone(), erased.clone());
                tokio::spawn(async move {
                    let mut after = 0;
                    // Bounded, should the eraser never run.
                    for i in 0..5_000u32 {
                        if erased.load(Ordering::SeqCst) {
                            after += 1;
                            if after > 4 {
                                break;
                            }
                        }
                        iterations.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut root) = repository.load(&club).await else {
                            continue;
                        };
                        // Ann joins again now and then; others always.
                        let member = if i % 3 == 0 {
                            ann
                        } else {
                            PersonalKey::issue()
                        };
                        root.raise(joined(100 * writer + i, member, EMAIL, NAME));
                        // A conflict with another writer, or Ann erased: go on.
                        let _ = repository.save(&mut root).await;
                    }
                })
            })
            .collect();
        // Later each round: from the writers' first loads to well into their snapshots.
        while iterations.load(Ordering::SeqCst) < 1 + 4 * round {
            tokio::task::yield_now().await;
        }
        backend.vault.erase(ann, "request 13").await.unwrap();
        erased.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.await.unwrap();
        }
        let loaded = repository.load(&club).await.unwrap();
        let ann_values = loaded
            .emails
            .iter()
            .filter(|e| e.reference().is_none_or(|r| r.subject() == ann));
        assert!(
            ann_values.clone().all(Personal::is_erased),
            "round {round}: Ann's values read as erased"
        );
        assert!(
            loaded.founder.as_ref().unwrap().is_erased(),
            "round {round}"
        );
        let snapshot = backend
            .store
            .load_snapshot(loaded.stream_id())
            .await
            .unwrap()
            .expect("the writers took snapshots");
        // Every other member's email is the same text as Ann's: none may be in it.
        assert_no_plaintext("a snapshot", snapshot.state.to_string().as_bytes());
    }
}

/// A club as a cached aggregate that is also snapshotted.
#[derive(Aggregate, Default, Clone, Serialize, Deserialize)]
#[aggregate(
    id = ClubId,
    events(MemberJoined),
    name = "cached_club",
    snapshot(every = 3, version = 1),
    cache
)]
pub struct CachedClub {
    joined: u32,
    #[serde(with = "eventsourcery::aggregate::snapshot")]
    founder: Option<Personal<Email>>,
}

impl Apply<MemberJoined> for CachedClub {
    fn apply(&mut self, e: &MemberJoined) {
        self.joined += 1;
        if self.founder.is_none() {
            self.founder = Some(e.email.clone());
        }
    }
}

/// What `inspect_club` saw: the number of members and the founder's email.
#[derive(Default)]
pub struct SeenFounder(std::sync::Mutex<Vec<(u32, Option<String>)>>);

/// Reads the cached club inside a command, where the cache serves it.
#[derive(eventsourcery::Command, Clone)]
pub struct InspectClub {
    club: ClubId,
}

#[eventsourcery::handler]
async fn inspect_club(
    cmd: InspectClub,
    clubs: Repository<CachedClub>,
    seen: eventsourcery::Dep<SeenFounder>,
) -> Result<(), eventsourcery::Error> {
    let club = clubs.load(&cmd.club).await?;
    let founder = club.founder.as_ref().and_then(email).map(str::to_owned);
    seen.0.lock().unwrap().push((club.joined, founder));
    Ok(())
}

/// Another process: a command loads a cached aggregate from its snapshot and caches the state
/// it decrypted; a second vault over the same stores (an admin tool) erases the founder. The
/// next command does not get the cached plaintext: it loads again, from the snapshot, and reads
/// the founder as erased.
pub async fn a_cached_state_loaded_from_a_snapshot_is_not_served_after_an_erasure_elsewhere(
    backend: Backend,
) {
    let backend = backend.with_lease(eventsourcery::vault::DEFAULT_CACHE_LEASE);
    let admin = backend.with_lease(eventsourcery::vault::DEFAULT_CACHE_LEASE);
    let writer =
        Repository::<CachedClub>::with_personal_data(backend.store.clone(), backend.vault.clone());
    let club = ClubId::generate();
    let ann = PersonalKey::issue();
    let mut root = writer.load(&club).await.unwrap();
    root.raise(joined(1, ann, EMAIL, NAME));
    root.raise(joined(2, PersonalKey::issue(), "bob@example.com", "Bob"));
    root.raise(joined(3, PersonalKey::issue(), "cy@example.com", "Cy"));
    writer.save(&mut root).await.unwrap();
    writer.load(&club).await.unwrap(); // takes the snapshot
    let mut snapshot = backend
        .store
        .load_snapshot(root.stream_id())
        .await
        .unwrap()
        .expect("the load took a snapshot");
    snapshot.state["$state"]["joined"] = 999.into();
    backend.store.save_snapshot(snapshot).await.unwrap();

    let seen = std::sync::Arc::new(SeenFounder::default());
    let bus = eventsourcery::CommandBus::builder(backend.store.clone())
        .personal_data(backend.vault.clone())
        .service_shared(seen.clone())
        .build()
        .unwrap();
    let inspect = || InspectClub { club: club.clone() };
    bus.execute(inspect()).await.unwrap();
    bus.execute(inspect()).await.unwrap();
    admin.vault.erase(ann, "request 14").await.unwrap();
    bus.execute(inspect()).await.unwrap();
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (999, Some(EMAIL.to_owned())),
            (999, Some(EMAIL.to_owned())),
            (999, None),
        ],
        "loaded from the snapshot, cached, then read again after the erasure"
    );
}

/// For the raw scans: a snapshotted aggregate holding personal values.
pub async fn snapshot_for_the_scans(backend: &Backend) {
    let (club, _, repository) = snapshotted_club(backend).await;
    let root = repository.load(&club).await.unwrap();
    let _ = stored_snapshot(backend, &root).await;
}
