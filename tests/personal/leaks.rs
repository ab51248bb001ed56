//! The ways personal data could outlive an erasure or reach a place no erasure touches: a
//! cache in another process, values left by retries, error texts, a value that does not
//! serialize.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use eventsourcery::event::EventError;
use eventsourcery::personal::{PersonalError, PersonalKey};
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, CommandError, Dep, Id, Personal, PersonalData,
    Repository,
};
use serde_json::Value;
use uuid::Uuid;

use super::{
    Backend, CandidateRegistered, EMAIL, Email, NAME, Referred, VoucherId, assert_no_plaintext,
    register_cmd,
};

/// The voucher's stream as a cached aggregate: its state holds decrypted addresses.
#[derive(Aggregate, Default, Clone)]
#[aggregate(id = VoucherId, name = "voucher", events(CandidateRegistered, Referred), cache)]
pub struct CachedVoucher {
    emails: Vec<Personal<Email>>,
}

impl Apply<CandidateRegistered> for CachedVoucher {
    fn apply(&mut self, e: &CandidateRegistered) {
        self.emails.push(e.email.clone());
    }
}

impl Apply<Referred> for CachedVoucher {
    fn apply(&mut self, _: &Referred) {}
}

/// What the `inspect` handler saw, command after command.
#[derive(Default)]
pub struct Seen(Mutex<Vec<Vec<Option<String>>>>);

impl Seen {
    fn last(&self) -> Vec<Option<String>> {
        self.0.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

/// Reads the cached voucher inside a command (where the cache serves it) and notes the
/// addresses it holds.
#[derive(Command, Clone)]
pub struct Inspect {
    voucher: VoucherId,
}

#[eventsourcery::handler]
async fn inspect(
    cmd: Inspect,
    vouchers: Repository<CachedVoucher>,
    seen: Dep<Seen>,
) -> Result<(), eventsourcery::Error> {
    let voucher = vouchers.load(&cmd.voucher).await?;
    let emails = voucher
        .emails
        .iter()
        .map(|e| e.present().map(|e| e.0.clone()))
        .collect();
    seen.0.lock().unwrap().push(emails);
    Ok(())
}

/// Registers through the cached aggregate, so the state cached after the command holds the
/// value the command wrote.
#[derive(Command, Clone)]
#[command(subject = candidate)]
pub struct RegisterCached {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal]
    email: Email,
}

#[eventsourcery::handler]
async fn register_cached(
    cmd: RegisterCached,
    vouchers: Repository<CachedVoucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    voucher.raise(CandidateRegistered {
        voucher: cmd.voucher,
        candidate: cmd.candidate,
        email: cmd.email.into(),
        name: super::FullName("Cached".into()).into(),
        address: Personal::erased(),
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

fn inspecting_bus(backend: &Backend, seen: &Arc<Seen>) -> CommandBus {
    CommandBus::builder(backend.store.clone())
        .personal_data(backend.vault.clone())
        .service_shared(seen.clone())
        .build()
        .unwrap()
}

/// A load of a stream longer than one page (4,096 events) meets an erasure between its pages:
/// the first page's values were read before it, the second page's after (paused there
/// deterministically). The command sees the first page's values, as it read them before the
/// erasure, and the second page's as erased; the state it cached is not served again: the next
/// load reads every value as erased.
pub async fn an_erasure_between_two_pages_of_a_load_is_seen_by_the_next_one(backend: Backend) {
    let backend = backend.with_lease(eventsourcery::vault::DEFAULT_CACHE_LEASE);
    let (paused, gate) = super::races::pausing(&backend);
    let seen = Arc::new(Seen::default());
    let bus = inspecting_bus(&paused, &seen);
    let voucher = VoucherId::generate();
    let ann = PersonalKey::issue();
    const EVENTS: usize = 4_200;
    let writer = backend.bus().repository::<super::Voucher>();
    let mut root = writer.load(&voucher).await.unwrap();
    for i in 0..EVENTS {
        root.raise(CandidateRegistered {
            voucher: voucher.clone(),
            candidate: ann,
            email: Email(format!("ann{i}@example.com")).into(),
            name: super::FullName(NAME.into()).into(),
            address: super::Address {
                street: "1 Main St".into(),
                city: "Springfield".into(),
            }
            .into(),
        });
    }
    writer.save(&mut root).await.unwrap();

    // The first page's values are read; the second page's read waits.
    let mut at_second_page = gate.arm_after(super::races::Point::BeforeGet, 1);
    let inspect = tokio::spawn({
        let (bus, voucher) = (bus.clone(), voucher.clone());
        async move { bus.execute(Inspect { voucher }).await }
    });
    at_second_page.arrived().await;
    backend.vault.erase(ann, "request 9").await.unwrap();
    at_second_page.release();
    inspect.await.unwrap().unwrap();
    let first = seen.last();
    assert_eq!(first.len(), EVENTS);
    assert!(
        first[..4_096].iter().all(Option::is_some),
        "read before the erasure"
    );
    assert!(first[4_096..].iter().all(Option::is_none), "read after it");

    bus.execute(Inspect {
        voucher: voucher.clone(),
    })
    .await
    .unwrap();
    assert!(
        seen.last().iter().all(Option::is_none),
        "the state cached with the first page's values is not served after the erasure"
    );
}

/// A process caches an aggregate holding decrypted values; another process (a second vault
/// over the same stores, an admin tool) erases the subject. The first process's next load
/// reads the erasure, whether the state was cached from the stream or after a command that
/// wrote the value.
pub async fn no_cache_serves_plaintext_after_an_erasure_elsewhere(backend: Backend) {
    // Both processes with the default lease (the suite's vaults use a short one).
    let backend = backend.with_lease(eventsourcery::vault::DEFAULT_CACHE_LEASE);
    let seen = Arc::new(Seen::default());
    let bus = inspecting_bus(&backend, &seen);
    let admin = backend.with_lease(eventsourcery::vault::DEFAULT_CACHE_LEASE);
    let voucher = VoucherId::generate();
    let (ann, bob) = (PersonalKey::issue(), PersonalKey::issue());
    bus.execute(register_cmd(&voucher, ann, EMAIL, NAME))
        .await
        .unwrap();
    bus.execute(Inspect {
        voucher: voucher.clone(),
    })
    .await
    .unwrap();
    assert_eq!(seen.last(), [Some(EMAIL.to_owned())], "read and cached");
    bus.execute(Inspect {
        voucher: voucher.clone(),
    })
    .await
    .unwrap();
    assert_eq!(seen.last(), [Some(EMAIL.to_owned())], "from the cache");

    admin
        .vault
        .erase(ann, "request from the admin process")
        .await
        .unwrap();
    bus.execute(Inspect {
        voucher: voucher.clone(),
    })
    .await
    .unwrap();
    assert_eq!(seen.last(), [None], "the erasure elsewhere is seen");

    // A state cached after a command that wrote the value.
    bus.execute(RegisterCached {
        voucher: voucher.clone(),
        candidate: bob,
        email: Email("bob@example.com".into()),
    })
    .await
    .unwrap();
    bus.execute(Inspect {
        voucher: voucher.clone(),
    })
    .await
    .unwrap();
    assert_eq!(seen.last(), [None, Some("bob@example.com".to_owned())]);
    admin.vault.erase(bob, "request").await.unwrap();
    bus.execute(Inspect {
        voucher: voucher.clone(),
    })
    .await
    .unwrap();
    assert_eq!(seen.last(), [None, None]);
}

/// Registers once per command, all at the same version of one voucher, so that every command
/// but one loses the race on its first attempt and is retried.
#[derive(Command, Clone)]
#[command(subject = candidate)]
pub struct RacingRegister {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal]
    email: Email,
    token: Uuid,
}

/// Holds first attempts until all of them loaded the voucher.
pub struct StartLine {
    barrier: tokio::sync::Barrier,
    waited: Mutex<HashSet<Uuid>>,
}

#[eventsourcery::handler]
async fn racing_register(
    cmd: RacingRegister,
    vouchers: Repository<super::Voucher>,
    start: Dep<StartLine>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    let first_attempt = start.waited.lock().unwrap().insert(cmd.token);
    if first_attempt {
        start.barrier.wait().await;
    }
    voucher.raise(CandidateRegistered {
        voucher: cmd.voucher,
        candidate: cmd.candidate,
        email: cmd.email.into(),
        name: super::FullName(NAME.into()).into(),
        address: Personal::erased(),
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

/// Every reference to `subject` in a stored payload, at any depth.
fn references_to(subject: PersonalKey, value: &Value, out: &mut HashSet<Uuid>) {
    match value {
        Value::Object(object) => {
            if let (Some(Value::String(id)), Some(Value::String(s))) =
                (object.get("$personal"), object.get("subject"))
                && *s == subject.to_string()
                && let Ok(id) = id.parse::<Uuid>()
                && !id.is_nil()
            {
                out.insert(id);
            }
            object.values().for_each(|v| references_to(subject, v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references_to(subject, v, out)),
        _ => {}
    }
}

/// Sixteen commands race on one stream and are retried: afterwards the personal data store
/// holds exactly the values that stored events and command log entries refer to, and the
/// export lists exactly those.
pub async fn export_lists_exactly_what_is_referenced(backend: Backend) {
    const RACERS: usize = 16;
    let start = Arc::new(StartLine {
        barrier: tokio::sync::Barrier::new(RACERS),
        waited: Mutex::new(HashSet::new()),
    });
    let bus = CommandBus::builder(backend.store.clone())
        .personal_data(backend.vault.clone())
        .service_shared(start)
        .max_attempts(50)
        .build()
        .unwrap();
    let (voucher, ann) = (VoucherId::generate(), PersonalKey::issue());
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (bus, voucher) = (bus.clone(), voucher.clone());
            tokio::spawn(async move {
                bus.execute(RacingRegister {
                    voucher,
                    candidate: ann,
                    email: Email(format!("ann{i}@example.com")),
                    token: Uuid::new_v4(),
                })
                .await
            })
        })
        .collect();
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap().unwrap().attempts;
    }
    assert!(
        attempts as usize >= 2 * RACERS - 1,
        "all but one retried at least once: {attempts} attempts"
    );

    let mut referenced = HashSet::new();
    for event in backend.store.read_all(0, 10_000).await.unwrap() {
        references_to(ann, &event.payload, &mut referenced);
    }
    for command in backend.store.read_commands(0, 10_000).await.unwrap() {
        references_to(ann, &command.payload, &mut referenced);
    }
    // Per command: its address in the log, its address and name in the event.
    assert_eq!(referenced.len(), RACERS * 3);
    let stored: HashSet<Uuid> = backend
        .data()
        .by_subject(ann)
        .await
        .unwrap()
        .iter()
        .map(|r| r.reference)
        .collect();
    assert_eq!(stored, referenced, "no value left by a retry");
    let exported: HashSet<Uuid> = backend
        .vault
        .export(ann)
        .await
        .unwrap()
        .fields
        .iter()
        .map(|f| f.reference)
        .collect();
    assert_eq!(exported, referenced);
}

/// Registers a candidate once per address: a second registration is rejected with a message
/// that quotes the address, as a handler might write it.
#[derive(Command, Clone)]
#[command(subject = candidate)]
pub struct RegisterOnce {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal]
    email: Email,
}

#[eventsourcery::handler]
async fn register_once(
    cmd: RegisterOnce,
    vouchers: Repository<super::Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    if voucher
        .emails
        .iter()
        .any(|e| e.present().is_some_and(|e| e.0 == cmd.email.0))
    {
        return Err(eventsourcery::Error::rejected(format!(
            "email {} already registered",
            cmd.email.0
        )));
    }
    voucher.raise(CandidateRegistered {
        voucher: cmd.voucher,
        candidate: cmd.candidate,
        email: cmd.email.into(),
        name: super::FullName(NAME.into()).into(),
        address: Personal::erased(),
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

/// Rejects an order with a message naming its voucher: no personal data is involved, and the
/// log keeps the message.
#[derive(Command, Clone)]
pub struct Close {
    voucher: VoucherId,
}

#[eventsourcery::handler]
async fn close(cmd: Close) -> Result<(), eventsourcery::Error> {
    Err(eventsourcery::Error::rejected(format!(
        "voucher {} cannot be closed",
        cmd.voucher
    )))
}

/// A handler's rejection that quotes a personal value reaches the caller, but the command log,
/// which no erasure touches, keeps a fixed text; a rejection of a command without personal
/// data keeps its message.
pub async fn error_texts_in_the_command_log_hold_no_personal_data(backend: Backend) {
    let bus = backend.bus();
    let (voucher, ann) = (VoucherId::generate(), PersonalKey::issue());
    let command = || RegisterOnce {
        voucher: voucher.clone(),
        candidate: ann,
        email: Email(EMAIL.into()),
    };
    bus.execute(command()).await.unwrap();
    let error = bus.execute(command()).await.unwrap_err();
    assert!(
        matches!(&error, CommandError::Rejected { source, .. } if source.to_string().contains(EMAIL)),
        "the caller gets the handler's own error: {error}"
    );
    let error = bus
        .execute(Close {
            voucher: voucher.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(error, CommandError::Rejected { .. }), "{error}");

    let log = backend.store.read_commands(0, 100).await.unwrap();
    let outcomes: HashMap<&str, String> = log
        .iter()
        .map(|c| (c.name.as_str(), serde_json::to_string(&c.outcome).unwrap()))
        .collect();
    let mut dump = Vec::new();
    for command in &log {
        dump.extend(serde_json::to_vec(&command.outcome).unwrap());
        dump.extend(command.payload.to_string().bytes());
    }
    assert_no_plaintext("the command log", &dump);
    let rejected = log
        .iter()
        .filter(|c| c.name == "register_once")
        .map(|c| serde_json::to_string(&c.outcome).unwrap())
        .find(|o| o.contains("failed"))
        .expect("the rejection is logged");
    assert!(rejected.contains("withheld"), "{rejected}");
    assert!(
        outcomes["close"].contains("cannot be closed"),
        "a message without personal data is kept: {}",
        outcomes["close"]
    );
}

/// A personal value with a part that does not serialize (a map with non-string keys, which
/// JSON cannot hold).
#[derive(PersonalData, Clone)]
pub struct Preferences {
    by_code: HashMap<Vec<u8>, String>,
}

#[derive(Command, Clone)]
#[command(subject = candidate)]
pub struct SavePreferences {
    candidate: PersonalKey,
    #[personal]
    preferences: Preferences,
}

#[eventsourcery::handler]
async fn save_preferences(_command: SavePreferences) {}

/// A value whose plaintext form cannot be made fails the command with a typed error; nothing
/// is stored in its place (an empty string before).
pub async fn a_value_that_does_not_serialize_is_an_error(backend: Backend) {
    let candidate = PersonalKey::issue();
    let error = backend
        .bus()
        .execute(SavePreferences {
            candidate,
            preferences: Preferences {
                by_code: HashMap::from([(vec![1, 2], "x".to_owned())]),
            },
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            CommandError::Invalid {
                source: EventError::Personal {
                    source: PersonalError::UnserializablePlaintext { .. },
                    ..
                },
                ..
            }
        ),
        "{error}"
    );
    assert!(
        backend
            .data()
            .by_subject(candidate)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        backend
            .store
            .read_commands(0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}
