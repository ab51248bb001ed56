//! Writers and erasers made to meet: deterministically, with the key and personal data stores
//! wrapped in pass-throughs that pause at the critical call, and for real, with many writers
//! and an eraser on one subject, round after round. After each race the invariants of the
//! erasure guarantee are asserted: no key, value or blind-index entry of the subject in any
//! store, every event still loads, and re-enrolment never brings old data back.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use eventsourcery::personal::PersonalError;
use eventsourcery::store::{
    AuditEntry, AuditRecord, Erasure, IndexEntry, KeyStore, PersonalRecord, PersonalStore,
    WrappedKey,
};
use eventsourcery::{CommandError, Id, PersonalKey, Repository};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    Backend, Email, Refer, Voucher, VoucherId, refer_cmd, refused_as_erased, register_cmd,
};

/// Where a pass-through store pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Before a put reaches the personal data store.
    BeforePut,
    /// After a put committed, before the writer hears of it.
    AfterPut,
    /// Before a key claim reaches the key store.
    BeforeClaim,
    /// After a key claim committed, before the writer hears of it.
    AfterClaim,
    /// Before an erasure reaches the key store.
    BeforeErase,
    /// Before values are read from the personal data store (a load resolving a page).
    BeforeGet,
}

/// A pause at one point, once: the call that reaches it says so, then waits to be released.
#[derive(Default)]
pub struct Gate {
    armed: Mutex<Option<Armed>>,
    /// Calls at the armed point to let through before the one that pauses.
    skip: Mutex<usize>,
}

/// Where a gate pauses, whom it tells, and what it waits for.
type Armed = (Point, oneshot::Sender<()>, oneshot::Receiver<()>);

/// The test's side of an armed gate.
pub struct Paused {
    arrived: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Paused {
    /// Waits until the call reached the point, and holds it there until released.
    pub async fn arrived(&mut self) {
        (&mut self.arrived).await.expect("the paused call arrived");
    }

    /// Lets the call go on.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl Gate {
    /// Pauses the next call that reaches `point`.
    pub fn arm(&self, point: Point) -> Paused {
        self.arm_after(point, 0)
    }

    /// Pauses the call that reaches `point` after `skip` others went through it.
    pub fn arm_after(&self, point: Point, skip: usize) -> Paused {
        *self.skip.lock().unwrap() = skip;
        let (arrived_tx, arrived) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        *self.armed.lock().unwrap() = Some((point, arrived_tx, release_rx));
        Paused { arrived, release }
    }

    async fn pass(&self, point: Point) {
        let armed = {
            let mut armed = self.armed.lock().unwrap();
            match &*armed {
                Some((at, _, _)) if *at == point => {
                    let mut skip = self.skip.lock().unwrap();
                    if *skip > 0 {
                        *skip -= 1;
                        None
                    } else {
                        armed.take()
                    }
                }
                _ => None,
            }
        };
        if let Some((_, arrived, release)) = armed {
            let _ = arrived.send(());
            let _ = release.await;
        }
    }
}

/// A key store that pauses where its gate says.
pub struct PausingKeys {
    pub inner: Arc<dyn KeyStore>,
    pub gate: Arc<Gate>,
}

#[eventsourcery::store::async_trait]
impl KeyStore for PausingKeys {
    async fn keys(&self, subjects: &[PersonalKey]) -> Result<Vec<WrappedKey>, PersonalError> {
        self.inner.keys(subjects).await
    }

    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError> {
        self.inner.insert_key(key).await
    }

    async fn claim_keys(&self, keys: Vec<WrappedKey>) -> Result<Vec<bool>, PersonalError> {
        self.gate.pass(Point::BeforeClaim).await;
        let claimed = self.inner.claim_keys(keys).await;
        self.gate.pass(Point::AfterClaim).await;
        claimed
    }

    async fn erase(
        &self,
        subject: PersonalKey,
        erased_at: SystemTime,
        reason: &str,
    ) -> Result<Erasure, PersonalError> {
        self.gate.pass(Point::BeforeErase).await;
        self.inner.erase(subject, erased_at, reason).await
    }

    async fn erasures(&self, subjects: &[PersonalKey]) -> Result<Vec<Erasure>, PersonalError> {
        self.inner.erasures(subjects).await
    }

    async fn erasure_epoch(&self) -> Result<u64, PersonalError> {
        self.inner.erasure_epoch().await
    }

    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        self.inner.re_enroll(subject).await
    }

    async fn keys_after(
        &self,
        after: Option<PersonalKey>,
        limit: usize,
    ) -> Result<Vec<WrappedKey>, PersonalError> {
        self.inner.keys_after(after, limit).await
    }

    async fn rewrap_keys(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalError> {
        self.inner.rewrap_keys(keys).await
    }
}

/// A personal data store that pauses where its gate says.
pub struct PausingData {
    pub inner: Arc<dyn PersonalStore>,
    pub gate: Arc<Gate>,
}

#[eventsourcery::store::async_trait]
impl PersonalStore for PausingData {
    async fn put(
        &self,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        self.gate.pass(Point::BeforePut).await;
        let refused = self.inner.put(records, index).await;
        self.gate.pass(Point::AfterPut).await;
        refused
    }

    async fn get(&self, references: &[Uuid]) -> Result<Vec<PersonalRecord>, PersonalError> {
        self.gate.pass(Point::BeforeGet).await;
        self.inner.get(references).await
    }

    async fn by_subject(&self, subject: PersonalKey) -> Result<Vec<PersonalRecord>, PersonalError> {
        self.inner.by_subject(subject).await
    }

    async fn erase_subject(
        &self,
        subject: PersonalKey,
        last_key_version: u32,
    ) -> Result<u64, PersonalError> {
        self.inner.erase_subject(subject, last_key_version).await
    }

    async fn delete(&self, references: &[Uuid]) -> Result<u64, PersonalError> {
        self.inner.delete(references).await
    }

    async fn find(&self, hash: &[u8]) -> Result<Vec<PersonalKey>, PersonalError> {
        self.inner.find(hash).await
    }

    async fn records_after(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PersonalRecord>, PersonalError> {
        self.inner.records_after(after, limit).await
    }

    async fn raise_index_floor(&self, version: u32) -> Result<u32, PersonalError> {
        self.inner.raise_index_floor(version).await
    }

    async fn delete_index_entries_below(&self, version: u32) -> Result<u64, PersonalError> {
        self.inner.delete_index_entries_below(version).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, PersonalError> {
        self.inner.append_audit(entry).await
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, PersonalError> {
        self.inner.audit_after(after, limit).await
    }
}

/// A vault over the backend's stores through pausing pass-throughs: another process, whose
/// calls the test holds at the point it chooses.
pub fn pausing(backend: &Backend) -> (Backend, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let keys = PausingKeys {
        inner: backend.keys().clone(),
        gate: gate.clone(),
    };
    let data = PausingData {
        inner: backend.data().clone(),
        gate: gate.clone(),
    };
    (backend.over(Arc::new(keys), Arc::new(data)), gate)
}

/// What must hold once `subject`'s erasure returned: no key, value or blind-index entry of it
/// anywhere (the index is probed with every address it ever gave, after a re-enrolment, which
/// must not make any of them findable), every voucher still loads with the subject's values
/// erased, and new data after re-enrolment decrypts next to the old erased values.
pub async fn assert_erased_for_good(
    backend: &Backend,
    subject: PersonalKey,
    emails: &[String],
    vouchers: &[VoucherId],
) {
    assert!(
        backend.data().by_subject(subject).await.unwrap().is_empty(),
        "no value of the erased subject is left"
    );
    assert!(
        backend.keys().keys(&[subject]).await.unwrap().is_empty(),
        "no key of the erased subject is left"
    );
    let bus = backend.bus();
    let repository: Repository<Voucher> = bus.repository();
    for voucher in vouchers {
        let loaded = repository.load(voucher).await.unwrap();
        assert!(
            loaded.emails.iter().all(|e| e.is_erased()),
            "the subject's addresses read as erased"
        );
    }
    backend.vault.re_enroll(subject).await.unwrap();
    for email in emails {
        assert!(
            backend
                .vault
                .lookup(&Email(email.clone()))
                .await
                .unwrap()
                .is_empty(),
            "no blind-index entry links {email} to the subject after re-enrolment"
        );
    }
    let fresh = VoucherId::generate();
    bus.execute(register_cmd(&fresh, subject, "again@example.com", "Again"))
        .await
        .unwrap();
    let loaded = repository.load(&fresh).await.unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some("again@example.com")
    );
    for voucher in vouchers {
        let loaded = repository.load(voucher).await.unwrap();
        assert!(
            loaded.emails.iter().all(|e| e.is_erased()),
            "old stays erased"
        );
    }
    let keys = backend.keys().keys(&[subject]).await.unwrap();
    let erasure = &backend.keys().erasures(&[subject]).await.unwrap()[0];
    assert!(
        keys[0].version > erasure.last_key_version,
        "a new key version above every destroyed one"
    );
}

/// A subject with a key (and a blind-index entry) writes again while it is erased: held before
/// its put, the write is refused and leaves nothing; held after its put committed, the erasure
/// deletes what it wrote and its event reads as erased.
pub async fn a_write_racing_an_erasure_leaves_nothing(backend: Backend) {
    for point in [Point::BeforePut, Point::AfterPut] {
        let subject = PersonalKey::issue();
        let first = VoucherId::generate();
        let first_email = format!("first-{}@example.com", Uuid::new_v4().simple());
        backend
            .bus()
            .execute(register_cmd(&first, subject, &first_email, "A"))
            .await
            .unwrap();
        let (writer, gate) = pausing(&backend);
        let mut paused = gate.arm(point);
        let racing = VoucherId::generate();
        let racing_email = format!("racing-{}@example.com", Uuid::new_v4().simple());
        let command = register_cmd(&racing, subject, &racing_email, "A");
        let bus = writer.bus();
        let write = tokio::spawn(async move { bus.execute(command).await });
        paused.arrived().await;
        backend.vault.erase(subject, "request").await.unwrap();
        paused.release();
        let result = write.await.unwrap();
        match point {
            Point::BeforePut => {
                let error = result.unwrap_err();
                assert!(refused_as_erased(&error), "{point:?}: {error}");
            }
            _ => {
                result.unwrap();
            }
        }
        assert_erased_for_good(
            &backend,
            subject,
            &[first_email, racing_email],
            &[first, racing],
        )
        .await;
    }
}

/// A first write for a subject the vault never saw (its key claimed while its values are
/// stored) meets an erasure: held before its claim, the claim is refused and the write leaves
/// nothing; held after its claim committed, the erasure destroys that key and counts it, so
/// the re-enrolled subject gets a higher version and every event loads.
pub async fn a_first_write_racing_an_erasure_leaves_nothing(backend: Backend) {
    for point in [Point::BeforeClaim, Point::AfterClaim] {
        let subject = PersonalKey::issue();
        let (writer, gate) = pausing(&backend);
        let mut paused = gate.arm(point);
        let voucher = VoucherId::generate();
        let bus = writer.bus();
        let command: Refer = refer_cmd(&voucher, subject, "Ann");
        let write = tokio::spawn(async move { bus.execute(command).await });
        paused.arrived().await;
        backend.vault.erase(subject, "request").await.unwrap();
        paused.release();
        let result = write.await.unwrap();
        match result {
            Err(error) => assert!(refused_as_erased(&error), "{point:?}: {error}"),
            // Held after its claim, the write's values (stored while it claimed) may have
            // landed before the erasure, which deleted them: its event reads as erased.
            Ok(_) if point == Point::AfterClaim => {
                let loaded = backend
                    .bus()
                    .repository::<Voucher>()
                    .load(&voucher)
                    .await
                    .unwrap();
                assert!(loaded.names[0].is_erased(), "the referrer's name is erased");
                assert!(loaded.names[1].present().is_some(), "the referee's is not");
            }
            Ok(_) => panic!("{point:?}: a claim made after the erasure succeeded"),
        }
        assert_erased_for_good(&backend, subject, &[], &[]).await;
    }
}

/// An erasure whose key store step comes just after a writer claimed the subject's first key:
/// the erasure destroys and counts that key, in the step that records it.
pub async fn an_erasure_counts_a_key_claimed_just_before_it(backend: Backend) {
    let subject = PersonalKey::issue();
    let (eraser, gate) = pausing(&backend);
    let mut paused = gate.arm(Point::BeforeErase);
    let erase = tokio::spawn(async move { eraser.vault.erase(subject, "request").await });
    paused.arrived().await;
    let voucher = VoucherId::generate();
    backend
        .bus()
        .execute(register_cmd(&voucher, subject, "claimed@example.com", "A"))
        .await
        .unwrap();
    assert_eq!(backend.keys().keys(&[subject]).await.unwrap()[0].version, 1);
    paused.release();
    erase.await.unwrap().unwrap();
    let erasure = &backend.keys().erasures(&[subject]).await.unwrap()[0];
    assert!(erasure.last_key_version >= 1, "the claimed key is counted");
    assert_erased_for_good(
        &backend,
        subject,
        &["claimed@example.com".to_owned()],
        &[voucher],
    )
    .await;
}

/// For real: eight writers (first writes, writes with a blind-index entry, writes by a vault
/// that never saw the subject) and an eraser on one subject, fifty rounds; after each, the
/// erasure invariants hold.
pub async fn writers_and_an_eraser_race_for_real(backend: Backend) {
    let others = super::second_vault(&backend).await;
    for round in 0..50 {
        let subject = PersonalKey::issue();
        let mut tasks = tokio::task::JoinSet::new();
        let mut vouchers = Vec::new();
        let mut emails = Vec::new();
        for writer in 0..8 {
            let voucher = VoucherId::generate();
            vouchers.push(voucher.clone());
            let email = format!("r{round}w{writer}-{}@example.com", Uuid::new_v4().simple());
            emails.push(email.clone());
            let bus = if writer % 2 == 0 {
                backend.bus()
            } else {
                others.bus()
            };
            tasks.spawn(async move {
                let result = if writer % 3 == 0 {
                    bus.execute(refer_cmd(&voucher, subject, "W")).await
                } else {
                    bus.execute(register_cmd(&voucher, subject, &email, "W"))
                        .await
                };
                result.map(drop)
            });
        }
        let vault = backend.vault.clone();
        tasks.spawn(async move {
            tokio::task::yield_now().await;
            vault.erase(subject, "race").await.unwrap();
            Ok(())
        });
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                Ok(()) => {}
                Err(error) => assert!(
                    refused_as_erased(&error) || matches!(error, CommandError::Conflict { .. }),
                    "a write that loses the race is refused as erased: {error}"
                ),
            }
        }
        // A write that won but whose subject is erased afterwards reads as erased.
        assert!(backend.vault.is_erased(subject).await.unwrap());
        assert_erased_for_good(&backend, subject, &emails, &vouchers).await;
    }
}

/// The blind-index key is rotated online: the index is rebuilt under the new key, the old
/// entries and key are gone, lookups find every value before and after, a write held with the
/// old key while the rotation ran is written again with the new one, and an erased subject's
/// values are not indexed again.
pub async fn the_index_key_rotates_online(backend: Backend) {
    let bus = backend.bus();
    let (ann, bob, eve) = (
        PersonalKey::issue(),
        PersonalKey::issue(),
        PersonalKey::issue(),
    );
    for (subject, email) in [(ann, "ann@example.com"), (eve, "eve@example.com")] {
        bus.execute(register_cmd(&VoucherId::generate(), subject, email, "N"))
            .await
            .unwrap();
    }
    backend.vault.erase(eve, "request").await.unwrap();
    let keys_before = backend.keys().all_keys().await.unwrap().len();

    // A write that read the index key, held before its put while the rotation runs.
    let (writer, gate) = pausing(&backend);
    let mut paused = gate.arm(Point::BeforePut);
    let bus_b = writer.bus();
    let write = tokio::spawn(async move {
        bus_b
            .execute(register_cmd(
                &VoucherId::generate(),
                bob,
                "bob@example.com",
                "B",
            ))
            .await
    });
    paused.arrived().await;
    let rotation = backend.vault.rotate_index_key().await.unwrap();
    assert_eq!(rotation.version, 1);
    assert_eq!(
        rotation.reindexed, 1,
        "Ann's address; not the erased Eve's: {rotation:?}"
    );
    assert_eq!(rotation.removed, 1, "Ann's old entry: {rotation:?}");
    assert_eq!(rotation.unreadable, 0);
    paused.release();
    write.await.unwrap().unwrap();

    let lookup = |email: &str| {
        let vault = backend.vault.clone();
        let email = Email(email.to_owned());
        async move { vault.lookup(&email).await.unwrap() }
    };
    assert_eq!(lookup("Ann@Example.com").await, vec![ann]);
    assert_eq!(
        lookup("bob@example.com").await,
        vec![bob],
        "written again with the new key"
    );
    backend.vault.re_enroll(eve).await.unwrap();
    assert!(
        lookup("eve@example.com").await.is_empty(),
        "not indexed again"
    );
    // The old key is destroyed, the new one took its place.
    assert_eq!(
        backend.keys().all_keys().await.unwrap().len(),
        keys_before + 1,
        "Bob's key added, the old index key replaced by the new one"
    );
    // Rotating again moves on to the next version.
    let again = backend.vault.rotate_index_key().await.unwrap();
    assert_eq!((again.version, again.reindexed), (2, 2), "{again:?}");
    assert_eq!(lookup("ann@example.com").await, vec![ann]);
    assert_eq!(lookup("bob@example.com").await, vec![bob]);
}

/// Lookups find a value typed in another Unicode normalization, case or with invisible
/// characters: the lookup form is compatibility normalized and case folded.
pub async fn lookups_find_values_typed_in_another_form(backend: Backend) {
    let bus = backend.bus();
    let (jose, strasse) = (PersonalKey::issue(), PersonalKey::issue());
    bus.execute(register_cmd(
        &VoucherId::generate(),
        jose,
        "josé@example.com",
        "J",
    ))
    .await
    .unwrap();
    bus.execute(register_cmd(
        &VoucherId::generate(),
        strasse,
        "Straße@Example.com",
        "S",
    ))
    .await
    .unwrap();
    for typed in [
        "jose\u{301}@example.com",
        "JOSÉ@EXAMPLE.COM",
        "josé@example.com\u{200B}",
        " \u{FEFF}josé@example.com ",
    ] {
        assert_eq!(
            backend.vault.lookup(&Email(typed.into())).await.unwrap(),
            vec![jose],
            "{typed:?}"
        );
    }
    assert_eq!(
        backend
            .vault
            .lookup(&Email("STRASSE@EXAMPLE.COM".into()))
            .await
            .unwrap(),
        vec![strasse]
    );
    assert!(
        backend
            .vault
            .lookup(&Email("jose@example.com".into()))
            .await
            .unwrap()
            .is_empty(),
        "an accent is not ignored"
    );
}
