//! The personal data suite, run against every backend (memory, SQLite, PostgreSQL).
//!
//! A backend's test file defines `async fn setup(test: &'static str) -> Option<Backend>`
//! (`None` skips the test, e.g. when no PostgreSQL server is configured) and calls
//! `personal_suite!(setup);`, which expands to one `#[tokio::test]` per case.
#![allow(dead_code)]

pub mod integrity;
pub mod leaks;
mod plaintext;
pub mod races;
pub mod raw;
pub mod shapes;
pub mod snapshots;
pub mod stores;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use eventsourcery::personal::MasterKey;
use eventsourcery::personal::MasterKeyRing;
use eventsourcery::store::{KeyStore, PersonalStore};
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, CommandError, DomainEvent, EventStore, Id, Personal,
    PersonalData, PersonalKey, PersonalVault, Repository, SerializableValue,
};
use uuid::Uuid;

#[allow(unused_imports)]
pub use plaintext::{assert_no_plaintext, forbidden_forms};

#[derive(SerializableValue, Clone, Debug)]
pub struct VoucherId(Uuid);

#[derive(PersonalData, Clone, PartialEq)]
pub struct Email(String);

#[derive(PersonalData, Clone, PartialEq)]
#[personal_data(name = "full_name")]
pub struct FullName(String);

#[derive(PersonalData, Clone, PartialEq)]
pub struct Address {
    street: String,
    city: String,
}

#[derive(DomainEvent, Debug)]
#[event(name = "candidate_registered", subject = candidate)]
pub struct CandidateRegistered {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal(lookup)]
    email: Personal<Email>,
    #[personal]
    name: Personal<FullName>,
    #[personal]
    address: Personal<Address>,
}

#[derive(DomainEvent, Debug)]
pub struct Referred {
    voucher: VoucherId,
    referrer: PersonalKey,
    referee: PersonalKey,
    #[personal(subject = referrer)]
    referrer_name: Personal<FullName>,
    #[personal(subject = referee)]
    referee_name: Personal<FullName>,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(id = VoucherId, events(CandidateRegistered, Referred))]
pub struct Voucher {
    emails: Vec<Personal<Email>>,
    names: Vec<Personal<FullName>>,
}

impl Apply<CandidateRegistered> for Voucher {
    fn apply(&mut self, e: &CandidateRegistered) {
        self.emails.push(e.email.clone());
        self.names.push(e.name.clone());
    }
}

impl Apply<Referred> for Voucher {
    fn apply(&mut self, e: &Referred) {
        self.names.push(e.referrer_name.clone());
        self.names.push(e.referee_name.clone());
    }
}

#[derive(Command, Clone)]
#[command(subject = candidate)]
pub struct Register {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal]
    email: Email,
    #[personal]
    name: FullName,
}

#[derive(Command, Clone)]
pub struct Refer {
    voucher: VoucherId,
    referrer: PersonalKey,
    referee: PersonalKey,
    #[personal(subject = referrer)]
    referrer_name: FullName,
    #[personal(subject = referee)]
    referee_name: FullName,
}

#[eventsourcery::handler]
async fn register(
    cmd: Register,
    vouchers: Repository<Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    voucher.raise(CandidateRegistered {
        voucher: cmd.voucher,
        candidate: cmd.candidate,
        email: cmd.email.into(),
        name: cmd.name.into(),
        address: Address {
            street: "1 Quay Street".into(),
            city: "Dublin".into(),
        }
        .into(),
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn refer(cmd: Refer, vouchers: Repository<Voucher>) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    voucher.raise(Referred {
        voucher: cmd.voucher,
        referrer: cmd.referrer,
        referee: cmd.referee,
        referrer_name: cmd.referrer_name.into(),
        referee_name: cmd.referee_name.into(),
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

/// Work to do when a test is over (closing pools, dropping databases).
pub type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The three stores of one backend, and the vault over them.
pub struct Backend {
    pub store: Arc<dyn EventStore>,
    pub vault: Arc<PersonalVault>,
    /// The master key of `vault`, as hex: tests build other vaults with it.
    master: String,
    cleanup: Option<Cleanup>,
}

/// The cache lease of the suite's vaults: short, so that the many erasures stay quick; every
/// vault of a test uses the same one, as every process sharing stores must.
pub const TEST_LEASE: std::time::Duration = std::time::Duration::from_millis(10);

/// A new random master key as 64 hex digits.
pub fn random_master_hex() -> String {
    let key = Uuid::new_v4().simple().to_string() + &Uuid::new_v4().simple().to_string();
    assert_eq!(key.len(), 64);
    key
}

impl Backend {
    /// A vault with a fresh master key over the key and personal data stores.
    pub fn new(
        store: Arc<dyn EventStore>,
        keys: Arc<dyn KeyStore>,
        data: Arc<dyn PersonalStore>,
    ) -> Self {
        let master = random_master_hex();
        let vault = PersonalVault::new(keys, data, MasterKey::from_hex(&master).unwrap())
            .with_cache_lease(TEST_LEASE);
        Self {
            store,
            vault: Arc::new(vault),
            master,
            cleanup: None,
        }
    }

    /// Runs `cleanup` when the test passes.
    pub fn with_cleanup(mut self, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cleanup = Some(Box::pin(cleanup));
        self
    }

    /// The cleanup, taken out so that it can run after the case has consumed the backend.
    pub fn take_cleanup(&mut self) -> Option<Cleanup> {
        self.cleanup.take()
    }

    pub fn bus(&self) -> CommandBus {
        CommandBus::builder(self.store.clone())
            .personal_data(self.vault.clone())
            .build()
            .unwrap()
    }

    pub fn keys(&self) -> &Arc<dyn KeyStore> {
        self.vault.key_store()
    }

    pub fn data(&self) -> &Arc<dyn PersonalStore> {
        self.vault.personal_store()
    }

    /// The vault's master key (another copy of it).
    pub fn master(&self) -> MasterKey {
        MasterKey::from_hex(&self.master).unwrap()
    }

    /// The same stores under other master keys (another process, configured otherwise).
    pub fn with_masters(&self, masters: impl Into<MasterKeyRing>, hex: &str) -> Backend {
        self.with_stores(self.keys().clone(), self.data().clone(), masters, hex)
    }

    /// The same master key over other stores (pass-throughs of these, say).
    pub fn over(&self, keys: Arc<dyn KeyStore>, data: Arc<dyn PersonalStore>) -> Backend {
        self.with_stores(keys, data, self.master(), &self.master)
    }

    fn with_stores(
        &self,
        keys: Arc<dyn KeyStore>,
        data: Arc<dyn PersonalStore>,
        masters: impl Into<MasterKeyRing>,
        hex: &str,
    ) -> Backend {
        Backend {
            store: self.store.clone(),
            vault: Arc::new(PersonalVault::new(keys, data, masters).with_cache_lease(TEST_LEASE)),
            master: hex.to_owned(),
            cleanup: None,
        }
    }

    /// The same stores and master key, in a vault that trusts an erasure epoch for `lease`.
    pub fn with_lease(&self, lease: std::time::Duration) -> Backend {
        let vault = PersonalVault::new(self.keys().clone(), self.data().clone(), self.master())
            .with_cache_lease(lease);
        Backend {
            store: self.store.clone(),
            vault: Arc::new(vault),
            master: self.master.clone(),
            cleanup: None,
        }
    }

    /// The same stores under another master key.
    pub fn with_master(&self, master: MasterKey) -> Backend {
        let hex = random_master_hex();
        self.with_masters(master, &hex)
    }
}

pub const EMAIL: &str = "Ann.Smith+vouchers@example.com";
pub const NAME: &str = "Ann Quïnn-Smith";

pub fn register_cmd(
    voucher: &VoucherId,
    candidate: PersonalKey,
    email: &str,
    name: &str,
) -> Register {
    Register {
        voucher: voucher.clone(),
        candidate,
        email: Email(email.into()),
        name: FullName(name.into()),
    }
}

/// Registers a candidate and returns what the event and command tables hold, as text.
pub async fn stored_tables_after_registering(backend: &Backend) -> Vec<u8> {
    let bus = backend.bus();
    let voucher = VoucherId::generate();
    bus.execute(register_cmd(&voucher, PersonalKey::issue(), EMAIL, NAME))
        .await
        .unwrap();
    bus.execute(Refer {
        voucher: voucher.clone(),
        referrer: PersonalKey::issue(),
        referee: PersonalKey::issue(),
        referrer_name: FullName(NAME.into()),
        referee_name: FullName(EMAIL.into()),
    })
    .await
    .unwrap();
    // Every shape: an optional value, several values, a value with several parts.
    let patient = shapes::PatientId::generate();
    bus.execute(shapes::register_patient_cmd(
        &patient,
        PersonalKey::issue(),
        Some(shapes::PHONE),
        &[EMAIL, shapes::SECOND_EMAIL],
    ))
    .await
    .unwrap();
    // A snapshot of an aggregate holding personal values.
    snapshots::snapshot_for_the_scans(backend).await;
    // Sanity: the values really were stored, and come back.
    let loaded = bus.repository::<Voucher>().load(&voucher).await.unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some(EMAIL)
    );
    let mut dump = Vec::new();
    for event in backend.store.read_all(0, 1000).await.unwrap() {
        dump.extend(event.payload.to_string().bytes());
        dump.extend(serde_json::to_vec(&event.metadata).unwrap());
        dump.extend(event.stream_id.as_str().bytes());
    }
    for command in backend.store.read_commands(0, 1000).await.unwrap() {
        dump.extend(command.payload.to_string().bytes());
        dump.extend(serde_json::to_vec(&command.outcome).unwrap());
    }
    dump
}

pub async fn no_plaintext_in_event_or_command_tables(backend: Backend) {
    let dump = stored_tables_after_registering(&backend).await;
    assert!(
        dump.windows(9).any(|w| w == b"$personal"),
        "payloads hold references"
    );
    assert_no_plaintext("the event and command tables", &dump);
}

/// A stream longer than a load's page (4,096 events) loads page by page: every page's personal
/// values resolve, and after an erasure every page's read as erased.
pub async fn a_long_stream_loads_page_by_page_with_its_personal_values(backend: Backend) {
    let bus = backend.bus();
    let repository = bus.repository::<Voucher>();
    let voucher = VoucherId::generate();
    let (ann, bob) = (PersonalKey::issue(), PersonalKey::issue());
    let mut root = repository.load(&voucher).await.unwrap();
    const EVENTS: usize = 4_200;
    for i in 0..EVENTS {
        root.raise(Referred {
            voucher: voucher.clone(),
            referrer: ann,
            referee: bob,
            referrer_name: FullName(format!("Ann {i}")).into(),
            referee_name: FullName(format!("Bob {i}")).into(),
        });
    }
    repository.save(&mut root).await.unwrap();

    let loaded = repository.load(&voucher).await.unwrap();
    assert_eq!(loaded.version(), EVENTS as u64);
    assert_eq!(loaded.names.len(), 2 * EVENTS);
    for i in [0, 4_095, 4_096, EVENTS - 1] {
        assert_eq!(
            loaded.names[2 * i].present().map(|n| n.0.clone()),
            Some(format!("Ann {i}")),
            "event {i}"
        );
    }

    backend.vault.erase(ann, "request 7").await.unwrap();
    let loaded = repository.load(&voucher).await.unwrap();
    assert!(
        loaded.names.iter().step_by(2).all(Personal::is_erased),
        "Ann's names are erased on every page"
    );
    assert_eq!(
        loaded.names[2 * (EVENTS - 1) + 1]
            .present()
            .map(|n| n.0.clone()),
        Some(format!("Bob {}", EVENTS - 1))
    );
}

pub async fn erasing_one_subject_keeps_events_loadable(backend: Backend) {
    let bus = backend.bus();
    let voucher = VoucherId::generate();
    let (ann, bob) = (PersonalKey::issue(), PersonalKey::issue());
    bus.execute(register_cmd(&voucher, ann, EMAIL, "Ann"))
        .await
        .unwrap();
    bus.execute(Refer {
        voucher: voucher.clone(),
        referrer: ann,
        referee: bob,
        referrer_name: FullName("Ann".into()),
        referee_name: FullName("Bob".into()),
    })
    .await
    .unwrap();

    backend.vault.erase(ann, "request 42").await.unwrap();
    backend.vault.erase(ann, "request 42, again").await.unwrap();
    assert!(backend.vault.is_erased(ann).await.unwrap());
    assert!(!backend.vault.is_erased(bob).await.unwrap());

    let loaded = bus.repository::<Voucher>().load(&voucher).await.unwrap();
    assert_eq!(loaded.version(), 2);
    assert!(loaded.emails[0].is_erased());
    assert!(
        loaded.names[0].is_erased(),
        "Ann's name in her registration"
    );
    assert!(loaded.names[1].is_erased(), "Ann's name as referrer");
    assert_eq!(loaded.names[2].present().map(|n| n.0.as_str()), Some("Bob"));

    // New personal data for Ann is refused, and nothing is appended.
    let before = backend.store.read_all(0, 100).await.unwrap().len();
    let error = bus
        .execute(register_cmd(&voucher, ann, EMAIL, "Ann"))
        .await
        .unwrap_err();
    assert!(refused_as_erased(&error), "{error}");
    assert_eq!(backend.store.read_all(0, 100).await.unwrap().len(), before);

    // Re-enrolled, Ann may register again; the old data stays erased.
    backend.vault.re_enroll(ann).await.unwrap();
    bus.execute(register_cmd(&voucher, ann, "ann@new.example", "Ann"))
        .await
        .unwrap();
    let loaded = bus.repository::<Voucher>().load(&voucher).await.unwrap();
    assert!(loaded.emails[0].is_erased());
    assert_eq!(
        loaded.emails[1].present().map(|e| e.0.as_str()),
        Some("ann@new.example")
    );
    let export = backend.vault.export(ann).await.unwrap();
    assert_eq!(
        export
            .fields
            .iter()
            .filter(|f| f.field == "candidate_registered.email")
            .count(),
        1
    );
}

pub async fn export_and_lookup(backend: Backend) {
    let bus = backend.bus();
    let voucher = VoucherId::generate();
    let (ann, bob) = (PersonalKey::issue(), PersonalKey::issue());
    bus.execute(register_cmd(&voucher, ann, EMAIL, NAME))
        .await
        .unwrap();
    bus.execute(register_cmd(&voucher, bob, "bob@example.com", "Bob"))
        .await
        .unwrap();

    let export = backend.vault.export(ann).await.unwrap();
    assert!(!export.erased);
    let json = export.to_json();
    let values: Vec<&str> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["value"].as_str().unwrap())
        .collect();
    assert!(
        values.contains(&EMAIL) && values.contains(&NAME),
        "{values:?}"
    );
    assert!(
        values.iter().any(|v| v.contains("Quay Street")),
        "{values:?}"
    );
    // Export covers the command log's personal fields as well as the events'.
    let fields: Vec<&str> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"register.email") && fields.contains(&"candidate_registered.email"),
        "{fields:?}"
    );
    assert!(!format!("{export:?}").contains(EMAIL));

    // Lookup is case-insensitive and finds only the right subject.
    assert_eq!(
        backend
            .vault
            .lookup(&Email(EMAIL.to_uppercase()))
            .await
            .unwrap(),
        vec![ann]
    );
    assert_eq!(
        backend
            .vault
            .lookup(&Email("bob@example.com".into()))
            .await
            .unwrap(),
        vec![bob]
    );
    assert!(
        backend
            .vault
            .lookup(&Email("nobody@example.com".into()))
            .await
            .unwrap()
            .is_empty()
    );
    // Names are not marked for lookup.
    assert!(
        backend
            .vault
            .lookup(&FullName(NAME.into()))
            .await
            .unwrap()
            .is_empty()
    );

    backend.vault.erase(ann, "gdpr").await.unwrap();
    let export = backend.vault.export(ann).await.unwrap();
    assert!(export.erased && export.fields.is_empty());
    assert!(
        backend
            .vault
            .lookup(&Email(EMAIL.into()))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(backend.data().by_subject(ann).await.unwrap().is_empty());
    assert!(backend.keys().keys(&[ann]).await.unwrap().is_empty());
    let erasure = &backend.keys().erasures(&[ann]).await.unwrap()[0];
    assert_eq!(erasure.reason, "gdpr");
}

pub async fn concurrent_first_writes_create_one_key(backend: Backend) {
    let candidate = PersonalKey::issue();
    let bus = backend.bus();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.execute(register_cmd(
                    &VoucherId::generate(),
                    candidate,
                    &format!("c{i}@example.com"),
                    "C",
                ))
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let keys = backend.keys().keys(&[candidate]).await.unwrap();
    assert_eq!(keys.len(), 1);
    let export = backend.vault.export(candidate).await.unwrap();
    assert_eq!(
        export.fields.len(),
        16 * 5,
        "every value decrypts under the one key"
    );
}

/// A second vault on the same stores, which has seen no subject (another process, or this one
/// after a restart).
async fn second_vault(backend: &Backend) -> Backend {
    backend.over(backend.keys().clone(), backend.data().clone())
}

/// Whether a command failed because personal data of an erased subject was refused.
fn refused_as_erased(error: &CommandError) -> bool {
    matches!(error, CommandError::SubjectErased { .. })
}

/// A referral: two subjects, and no blind-index entry, so a vault writes it without reading
/// the keys of subjects it has not seen.
fn refer_cmd(voucher: &VoucherId, referrer: PersonalKey, referrer_name: &str) -> Refer {
    Refer {
        voucher: voucher.clone(),
        referrer,
        referee: PersonalKey::issue(),
        referrer_name: FullName(referrer_name.into()),
        referee_name: FullName(format!("referred by {referrer_name}")),
    }
}

/// A vault that never wrote for a subject (another process, or this one after a restart)
/// writes under the key the subject already has: every value stays readable, and no value
/// is left twice.
pub async fn vaults_that_never_saw_a_subject_use_its_stored_key(backend: Backend) {
    let voucher = VoucherId::generate();
    let ann = PersonalKey::issue();
    backend
        .bus()
        .execute(refer_cmd(&voucher, ann, "Ann"))
        .await
        .unwrap();
    let second = second_vault(&backend).await;
    second
        .bus()
        .execute(refer_cmd(&voucher, ann, "Ann again"))
        .await
        .unwrap();

    let keys = backend.keys().keys(&[ann]).await.unwrap();
    assert_eq!(keys.len(), 1, "one key for the subject");
    assert_eq!(keys[0].version, 1);
    let loaded = second
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap();
    let names: Vec<Option<&str>> = loaded
        .names
        .iter()
        .map(|n| n.present().map(|n| n.0.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            Some("Ann"),
            Some("referred by Ann"),
            Some("Ann again"),
            Some("referred by Ann again")
        ]
    );
    // Per referral, Ann's name in the command log and in the event.
    let export = second.vault.export(ann).await.unwrap();
    assert_eq!(export.fields.len(), 2 * 2, "every value once, all readable");
    let stored = backend.data().by_subject(ann).await.unwrap();
    assert_eq!(
        stored.len(),
        2 * 2,
        "no value left behind under another key"
    );
}

/// A vault that never saw an erased subject refuses its new data like any other, keeps none
/// of it, and the writes sent at the same time for other subjects succeed.
pub async fn vaults_that_never_saw_an_erased_subject_refuse_it(backend: Backend) {
    let ann = PersonalKey::issue();
    backend
        .bus()
        .execute(refer_cmd(&VoucherId::generate(), ann, "Ann"))
        .await
        .unwrap();
    backend.vault.erase(ann, "request 7").await.unwrap();
    let events_before = backend.store.read_all(0, 1000).await.unwrap().len();

    let second = second_vault(&backend).await;
    let bus = second.bus();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..6 {
        let bus = bus.clone();
        // Every third referral is Ann's.
        let referrer = if n % 3 == 0 {
            ann
        } else {
            PersonalKey::issue()
        };
        tasks.spawn(async move {
            let voucher = VoucherId::generate();
            let result = bus.execute(refer_cmd(&voucher, referrer, "R")).await;
            (referrer, voucher, result)
        });
    }
    let mut referred = 0;
    while let Some(done) = tasks.join_next().await {
        let (referrer, voucher, result) = done.unwrap();
        if referrer == ann {
            let error = result.unwrap_err();
            assert!(refused_as_erased(&error), "{error}");
        } else {
            result.unwrap();
            referred += 1;
            let loaded = bus.repository::<Voucher>().load(&voucher).await.unwrap();
            assert_eq!(loaded.names[0].present().map(|n| n.0.as_str()), Some("R"));
        }
    }
    assert_eq!(referred, 4);
    assert!(
        backend.data().by_subject(ann).await.unwrap().is_empty(),
        "nothing is kept for the erased subject"
    );
    assert!(backend.keys().keys(&[ann]).await.unwrap().is_empty());
    assert_eq!(
        backend.store.read_all(0, 1000).await.unwrap().len(),
        events_before + 4,
        "only the other subjects' events are appended"
    );
}

pub async fn debug_output_holds_no_secret(backend: Backend) {
    let master = MasterKey::generate().unwrap();
    let (_, candidate, records) = integrity::one_registration(&backend).await;
    let keys = backend.keys().keys(&[candidate]).await.unwrap();
    let debug = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        Email(EMAIL.into()),
        FullName(NAME.into()),
        Personal::new(Email(EMAIL.into())),
        register_cmd(&VoucherId::generate(), candidate, EMAIL, NAME).email,
        master,
        backend.vault,
        records,
        keys,
    );
    assert_no_plaintext("Debug output", debug.as_bytes());
    assert!(
        !debug.contains(&format!("{:?}", keys[0].wrapped)),
        "{debug}"
    );
    for record in &records {
        let hex: String = record
            .ciphertext
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!debug.contains(&hex));
    }
    assert!(debug.contains("<redacted>"), "{debug}");
}

/// Runs every case of the suite as its own test; `$setup` is an async fn taking the test's
/// name and giving a fresh [`Backend`], or `None` to skip.
#[macro_export]
macro_rules! personal_suite {
    ($setup:path) => {
        personal_suite!(@case $setup, no_plaintext_in_event_or_command_tables => personal::no_plaintext_in_event_or_command_tables);
        personal_suite!(@case $setup, erasing_one_subject_keeps_events_loadable => personal::erasing_one_subject_keeps_events_loadable);
        personal_suite!(@case $setup, a_long_stream_loads_page_by_page_with_its_personal_values => personal::a_long_stream_loads_page_by_page_with_its_personal_values);
        personal_suite!(@case $setup, an_erasure_between_two_pages_of_a_load_is_seen_by_the_next_one => personal::leaks::an_erasure_between_two_pages_of_a_load_is_seen_by_the_next_one, multi);
        personal_suite!(@case $setup, export_and_lookup => personal::export_and_lookup);
        personal_suite!(@case $setup, tampering_is_a_typed_error => personal::integrity::tampering_is_a_typed_error);
        personal_suite!(@case $setup, master_key_rotation_works_online_and_can_be_rerun => personal::integrity::master_key_rotation_works_online_and_can_be_rerun);
        personal_suite!(@case $setup, debug_output_holds_no_secret => personal::debug_output_holds_no_secret);
        personal_suite!(@case $setup, erasure_records_keep_the_first_unless_re_enrolled => personal::stores::erasure_records_keep_the_first_unless_re_enrolled);
        personal_suite!(@case $setup, rewrapping_replaces_only_matching_versions => personal::stores::rewrapping_replaces_only_matching_versions);
        personal_suite!(@case $setup, put_upserts_and_delete_subject_removes_everything => personal::stores::put_upserts_and_delete_subject_removes_everything);
        personal_suite!(@case $setup, claims_store_keys_only_for_subjects_that_may_take_them => personal::stores::claims_store_keys_only_for_subjects_that_may_take_them);
        personal_suite!(@case $setup, erasure_destroys_and_counts_the_current_key => personal::stores::erasure_destroys_and_counts_the_current_key);
        personal_suite!(@case $setup, puts_refuse_values_of_erased_key_versions => personal::stores::puts_refuse_values_of_erased_key_versions);
        personal_suite!(@case $setup, the_index_floor_refuses_entries_of_retired_keys => personal::stores::the_index_floor_refuses_entries_of_retired_keys);
        personal_suite!(@case $setup, the_audit_log_appends_and_pages => personal::stores::the_audit_log_appends_and_pages);
        personal_suite!(@case $setup, the_index_key_rotates_online => personal::races::the_index_key_rotates_online, multi);
        personal_suite!(@case $setup, lookups_find_values_typed_in_another_form => personal::races::lookups_find_values_typed_in_another_form);
        personal_suite!(@case $setup, every_shape_round_trips => personal::shapes::every_shape_round_trips);
        personal_suite!(@case $setup, a_snapshot_holds_references_and_reads_erased_after_erasure => personal::snapshots::a_snapshot_holds_references_and_reads_erased_after_erasure);
        personal_suite!(@case $setup, a_snapshot_with_a_reference_left_out_is_ignored => personal::snapshots::a_snapshot_with_a_reference_left_out_is_ignored);
        personal_suite!(@case $setup, a_snapshot_reference_moved_to_another_field_is_refused => personal::snapshots::a_snapshot_reference_moved_to_another_field_is_refused);
        personal_suite!(@case $setup, a_cached_state_loaded_from_a_snapshot_is_not_served_after_an_erasure_elsewhere => personal::snapshots::a_cached_state_loaded_from_a_snapshot_is_not_served_after_an_erasure_elsewhere);
        personal_suite!(@case $setup, a_state_holding_a_value_of_its_own_is_not_snapshotted => personal::snapshots::a_state_holding_a_value_of_its_own_is_not_snapshotted);
        personal_suite!(@case $setup, an_erasure_while_a_snapshot_loads_reads_erased => personal::snapshots::an_erasure_while_a_snapshot_loads_reads_erased, multi);
        personal_suite!(@case $setup, snapshots_and_an_eraser_race_for_real => personal::snapshots::snapshots_and_an_eraser_race_for_real, multi);
        personal_suite!(@case $setup, every_shape_reads_as_erased_after_erasure => personal::shapes::every_shape_reads_as_erased_after_erasure);
        // Real concurrency: tasks on several threads.
        personal_suite!(@case $setup, concurrent_first_writes_create_one_key => personal::concurrent_first_writes_create_one_key, multi);
        personal_suite!(@case $setup, racing_key_inserts_store_one_key => personal::stores::racing_key_inserts_store_one_key, multi);
        personal_suite!(@case $setup, vaults_that_never_saw_a_subject_use_its_stored_key => personal::vaults_that_never_saw_a_subject_use_its_stored_key);
        personal_suite!(@case $setup, vaults_that_never_saw_an_erased_subject_refuse_it => personal::vaults_that_never_saw_an_erased_subject_refuse_it, multi);
        // Erasure under races: deterministic, then for real.
        personal_suite!(@case $setup, a_write_racing_an_erasure_leaves_nothing => personal::races::a_write_racing_an_erasure_leaves_nothing, multi);
        personal_suite!(@case $setup, a_first_write_racing_an_erasure_leaves_nothing => personal::races::a_first_write_racing_an_erasure_leaves_nothing, multi);
        personal_suite!(@case $setup, an_erasure_counts_a_key_claimed_just_before_it => personal::races::an_erasure_counts_a_key_claimed_just_before_it, multi);
        personal_suite!(@case $setup, writers_and_an_eraser_race_for_real => personal::races::writers_and_an_eraser_race_for_real, multi);
        personal_suite!(@case $setup, a_reference_moved_to_another_field_is_an_error => personal::integrity::a_reference_moved_to_another_field_is_an_error);
        personal_suite!(@case $setup, no_cache_serves_plaintext_after_an_erasure_elsewhere => personal::leaks::no_cache_serves_plaintext_after_an_erasure_elsewhere);
        personal_suite!(@case $setup, export_lists_exactly_what_is_referenced => personal::leaks::export_lists_exactly_what_is_referenced, multi);
        personal_suite!(@case $setup, error_texts_in_the_command_log_hold_no_personal_data => personal::leaks::error_texts_in_the_command_log_hold_no_personal_data);
        personal_suite!(@case $setup, a_value_that_does_not_serialize_is_an_error => personal::leaks::a_value_that_does_not_serialize_is_an_error);
    };
    (@case $setup:path, $case:ident => $function:path) => {
        #[tokio::test]
        async fn $case() {
            if let Some(mut backend) = $setup(stringify!($case)).await {
                let cleanup = backend.take_cleanup();
                $function(backend).await;
                if let Some(cleanup) = cleanup {
                    cleanup.await;
                }
            }
        }
    };
    (@case $setup:path, $case:ident => $function:path, multi) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            if let Some(mut backend) = $setup(stringify!($case)).await {
                let cleanup = backend.take_cleanup();
                $function(backend).await;
                if let Some(cleanup) = cleanup {
                    cleanup.await;
                }
            }
        }
    };
}
