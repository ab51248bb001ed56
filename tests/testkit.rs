//! The testkit on GDPR paths: personal fields in given events and commands, erasure steps,
//! erased and present assertions, and `assert_rejected` telling a handler's rejection from a
//! store or vault failure it passed on.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use eventsourcery::testkit::{
    ERASURE_REASON, Scenario, assert_erased, assert_present, assert_present_eq,
};
use eventsourcery::{
    Aggregate, Apply, Command, CommandError, DomainEvent, EventStore, Id, MemoryStore, Personal,
    PersonalData, PersonalKey, PersonalVault, Repository, SerializableValue, StoreError,
};
use uuid::Uuid;

const ANN: &str = "Ann Example-Quïnn";

#[derive(SerializableValue, Clone, Debug)]
struct PatientId(Uuid);

#[derive(PersonalData, Clone, PartialEq)]
struct Name(String);

fn ann() -> Name {
    Name(ANN.into())
}

#[derive(DomainEvent)]
struct PatientRegistered {
    patient: PatientId,
    person: PersonalKey,
    #[personal(subject = person)]
    name: Personal<Name>,
}

#[derive(DomainEvent)]
struct ReminderSent {
    patient: PatientId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = PatientId, events(PatientRegistered, ReminderSent))]
struct Patient {
    name: Option<Personal<Name>>,
    reminders: u32,
}

impl Patient {
    fn name(&self) -> &Personal<Name> {
        self.name.as_ref().expect("the patient is registered")
    }
}

impl Apply<PatientRegistered> for Patient {
    fn apply(&mut self, e: &PatientRegistered) {
        self.name = Some(e.name.clone());
    }
}

impl Apply<ReminderSent> for Patient {
    fn apply(&mut self, _: &ReminderSent) {
        self.reminders += 1;
    }
}

#[derive(Command, Clone)]
#[command(subject = person)]
struct RegisterPatient {
    patient: PatientId,
    person: PersonalKey,
    #[personal]
    name: Name,
}

#[eventsourcery::handler]
async fn register(
    cmd: RegisterPatient,
    patients: Repository<Patient>,
) -> Result<(), eventsourcery::Error> {
    let mut patient = patients.load(&cmd.patient).await?;
    if !patient.is_new() {
        // A message with a personal value in it, as handlers write them.
        return Err(eventsourcery::Error::rejected(format!(
            "{} is already registered",
            cmd.name.0
        )));
    }
    patient.raise(PatientRegistered {
        patient: cmd.patient,
        person: cmd.person,
        name: cmd.name.into(),
    });
    patients.save(&mut patient).await?;
    Ok(())
}

#[derive(Command, Clone)]
struct SendReminder {
    patient: PatientId,
}

#[eventsourcery::handler]
async fn remind(
    cmd: SendReminder,
    patients: Repository<Patient>,
) -> Result<(), eventsourcery::Error> {
    let mut patient = patients.load(&cmd.patient).await?;
    match patient.name.as_ref().map(Personal::present) {
        Some(Some(_)) => {}
        Some(None) => {
            return Err(eventsourcery::Error::rejected("the patient was forgotten"));
        }
        None => return Err(eventsourcery::Error::rejected("no such patient")),
    }
    patient.raise(ReminderSent {
        patient: cmd.patient,
    });
    patients.save(&mut patient).await?;
    Ok(())
}

/// A domain error type that passes store errors on with a message and a source.
#[derive(Debug, thiserror::Error)]
enum ClinicError {
    #[error("the clinic is closed")]
    Closed,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

#[derive(Command, Clone)]
struct BookVisit {
    patient: PatientId,
    open: bool,
}

#[eventsourcery::handler]
async fn book(cmd: BookVisit, patients: Repository<Patient>) -> Result<(), ClinicError> {
    patients.load(&cmd.patient).await?;
    match cmd.open {
        true => Ok(()),
        false => Err(ClinicError::Closed),
    }
}

/// The message of the panic `f` raises.
#[track_caller]
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected the assertion to fail");
    match (
        payload.downcast_ref::<String>(),
        payload.downcast_ref::<&str>(),
    ) {
        (Some(message), _) => message.clone(),
        (None, Some(message)) => (*message).to_owned(),
        (None, None) => panic!("a panic without a message"),
    }
}

fn registered(patient: &PatientId, person: PersonalKey) -> PatientRegistered {
    PatientRegistered {
        patient: patient.clone(),
        person,
        name: ann().into(),
    }
}

fn register_cmd(patient: &PatientId, person: PersonalKey) -> RegisterPatient {
    RegisterPatient {
        patient: patient.clone(),
        person,
        name: ann(),
    }
}

#[tokio::test]
async fn register_erase_replay() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new().when(register_cmd(&id, ann)).await;
    let patient = then.load::<Patient>(&id).await;
    assert_present_eq(patient.name(), &self::ann());

    then.erase(ann).await;
    let patient = then.load::<Patient>(&id).await;
    assert_erased(patient.name());
    assert!(then.vault().is_erased(ann).await.unwrap());
}

#[tokio::test]
async fn a_personal_command_runs_with_no_setup_and_stores_no_plaintext() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new().when(register_cmd(&id, ann)).await;
    assert_eq!(then.events().len(), 1);
    let stored = then.bus().store().read_all(0, 10).await.unwrap();
    let commands = then.bus().store().read_commands(0, 10).await.unwrap();
    assert!(!stored[0].payload.to_string().contains(ANN));
    assert!(!commands[0].payload.to_string().contains(ANN));
}

#[tokio::test]
async fn given_events_with_personal_fields_go_through_the_vault() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new()
        .given::<Patient, _>(&id, registered(&id, ann))
        .when(SendReminder {
            patient: id.clone(),
        })
        .await;
    assert_eq!(then.events().len(), 1);
    let patient = then.load::<Patient>(&id).await;
    assert_present_eq(patient.name(), &self::ann());
    assert_eq!(patient.reminders, 1);
    // The given event holds a reference, as a saved one does; the vault holds the value.
    let stored = then.bus().store().read_all(0, 10).await.unwrap();
    assert_eq!(stored[0].event_name, "patient_registered");
    assert!(!stored[0].payload.to_string().contains(ANN));
    assert_eq!(then.vault().export(ann).await.unwrap().fields.len(), 1);
}

#[tokio::test]
async fn an_erase_step_forgets_the_subject_before_the_command() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let other = PatientId::generate();
    let bob = PersonalKey::issue();
    let then = Scenario::new()
        .given::<Patient, _>(&id, registered(&id, ann))
        .given::<Patient, _>(&other, registered(&other, bob))
        .erase(ann)
        .when(SendReminder {
            patient: id.clone(),
        })
        .await;
    then.assert_rejected_with("the patient was forgotten");
    assert_erased(then.load::<Patient>(&id).await.name());
    // Another subject's values still decrypt.
    assert_present_eq(then.load::<Patient>(&other).await.name(), &self::ann());
    let erasures = then.vault().key_store().erasures(&[ann]).await.unwrap();
    assert_eq!(erasures[0].reason, ERASURE_REASON);
}

#[test]
fn steps_run_in_order_and_a_given_event_for_an_erased_subject_is_refused() {
    // As in production, a subject erased (and not re-enrolled) takes no new values: the
    // scenario fails with the vault's own error, naming the event, not the value.
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let scenario = Scenario::new()
        .given::<Patient, _>(&id, registered(&id, ann))
        .erase(ann)
        .given::<Patient, _>(&id, registered(&id, ann));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let message = panic_message(|| {
        runtime.block_on(scenario.when(SendReminder { patient: id }));
    });
    assert!(
        message.contains("given event `patient_registered`"),
        "{message}"
    );
    assert!(message.contains("was erased"), "{message}");
    assert!(!message.contains(ANN), "{message}");
}

#[tokio::test]
async fn then_erase_then_when_replays_for_the_next_command() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new().when(register_cmd(&id, ann)).await;
    let reminded = then
        .when(SendReminder {
            patient: id.clone(),
        })
        .await;
    assert_eq!(reminded.events().len(), 1);
    then.erase(ann)
        .await
        .when(SendReminder { patient: id })
        .await
        .assert_rejected_with("the patient was forgotten");
}

#[tokio::test]
async fn decoded_events_read_their_personal_fields_through_the_vault() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new().when(register_cmd(&id, ann)).await;
    let events = then.decoded::<PatientRegistered>().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].person, ann);
    assert_present_eq(&events[0].name, &self::ann());
    then.erase(ann).await;
    assert_erased(&then.decoded::<PatientRegistered>().await[0].name);
}

#[tokio::test]
async fn the_erased_assertion_fails_on_a_present_value_without_showing_it() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new().when(register_cmd(&id, ann)).await;
    let patient = then.load::<Patient>(&id).await;
    let message = panic_message(|| assert_erased(patient.name()));
    assert!(message.contains("expected an erased"), "{message}");
    assert!(!message.contains(ANN), "{message}");
}

#[tokio::test]
async fn the_present_assertions_fail_on_an_erased_or_other_value_without_showing_it() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new().when(register_cmd(&id, ann)).await;
    let patient = then.load::<Patient>(&id).await;
    assert_eq!(assert_present(patient.name()).0, ANN);
    let message = panic_message(|| assert_present_eq(patient.name(), &Name("Bob Other".into())));
    assert!(message.contains("differs"), "{message}");
    assert!(
        !message.contains(ANN) && !message.contains("Bob Other"),
        "{message}"
    );

    then.erase(ann).await;
    let patient = then.load::<Patient>(&id).await;
    let message = panic_message(|| {
        assert_present(patient.name());
    });
    assert!(message.contains("it was erased"), "{message}");
    let message = panic_message(|| assert_present_eq(patient.name(), &self::ann()));
    assert!(message.contains("it was erased"), "{message}");
}

#[tokio::test]
async fn a_scenario_takes_a_vault_of_its_own() {
    let vault = Arc::new(PersonalVault::in_memory().unwrap());
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new()
        .personal_data(Arc::clone(&vault))
        .when(register_cmd(&id, ann))
        .await;
    assert!(Arc::ptr_eq(then.vault(), &vault));
    // The command's and the event's values.
    assert_eq!(vault.export(ann).await.unwrap().fields.len(), 2);
}

#[tokio::test]
async fn a_store_failure_the_handler_passed_on_is_not_a_rejection() {
    let id = PatientId::generate();
    let then = Scenario::new()
        .on_store(Arc::new(support::BrokenReads::default()))
        .when(SendReminder { patient: id })
        .await;
    // What the bus reports: the store's failure, not the handler's error that wraps it.
    assert!(matches!(then.result(), Err(CommandError::Store { .. })));
    let message = panic_message(|| {
        then.assert_rejected::<eventsourcery::Error>();
    });
    assert!(
        message.contains("failed on an error of the store or the vault, which is not a rejection"),
        "{message}"
    );
    assert!(message.contains("a broken row"), "{message}");
    let message = panic_message(|| {
        then.assert_rejected_with("corrupt row in `eventsourcery_events` at stream");
    });
    assert!(message.contains("not a rejection"), "{message}");
}

#[tokio::test]
async fn a_store_failure_inside_a_domain_error_is_not_a_rejection() {
    let id = PatientId::generate();
    let then = Scenario::new()
        .on_store(Arc::new(support::BrokenReads::default()))
        .when(BookVisit {
            patient: id.clone(),
            open: false,
        })
        .await;
    let message = panic_message(|| {
        then.assert_rejected::<ClinicError>();
    });
    assert!(message.contains("not a rejection"), "{message}");

    // The domain's own rejection still passes.
    let then = Scenario::new()
        .when(BookVisit {
            patient: id,
            open: false,
        })
        .await;
    assert!(matches!(
        then.assert_rejected::<ClinicError>(),
        ClinicError::Closed
    ));
}

#[tokio::test]
async fn a_vault_failure_the_handler_passed_on_is_not_a_rejection() {
    // Events written through another vault (another master key and stores): this scenario's
    // vault has none of their values, so loading them fails; that is no rejection.
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let elsewhere = Arc::new(PersonalVault::in_memory().unwrap());
    let patients = Repository::<Patient>::with_personal_data(Arc::clone(&store), elsewhere);
    let mut patient = patients.load(&id).await.unwrap();
    patient.raise(registered(&id, ann));
    patients.save(&mut patient).await.unwrap();

    let then = Scenario::new()
        .on_store(store)
        .when(SendReminder { patient: id })
        .await;
    let message = panic_message(|| {
        then.assert_rejected::<eventsourcery::Error>();
    });
    assert!(message.contains("not a rejection"), "{message}");
    assert!(message.contains("patient_registered"), "{message}");
    assert!(!message.contains(ANN), "{message}");
}

#[tokio::test]
async fn a_vault_refusal_at_commit_is_not_a_rejection() {
    // Re-registering an erased subject: the vault refuses the new values when the command
    // commits, after the handler succeeded.
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new()
        .erase(ann)
        .when(register_cmd(&id, ann))
        .await;
    assert!(matches!(
        then.result(),
        Err(CommandError::SubjectErased { .. })
    ));
    let message = panic_message(|| {
        then.assert_rejected::<eventsourcery::Error>();
    });
    assert!(message.contains("the command failed"), "{message}");
    assert!(message.contains("was erased"), "{message}");
    assert!(!message.contains(ANN), "{message}");
}

#[tokio::test]
async fn a_rejection_that_does_not_match_shows_no_personal_value() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new()
        .given::<Patient, _>(&id, registered(&id, ann))
        .when(register_cmd(&id, ann))
        .await;
    // The handler's message holds the name: it is compared, never printed.
    then.assert_rejected_with(&format!("{ANN} is already registered"));
    let message = panic_message(|| {
        then.assert_rejected::<ClinicError>();
    });
    assert!(message.contains("an error of another type"), "{message}");
    assert!(message.contains("not shown"), "{message}");
    assert!(!message.contains(ANN), "{message}");
    let message = panic_message(|| {
        then.assert_rejected_with("the clinic is closed");
    });
    assert!(message.contains("another message"), "{message}");
    assert!(!message.contains(ANN), "{message}");
}

#[tokio::test]
async fn a_rejection_that_does_not_match_shows_a_message_free_of_personal_data() {
    // No personal data touched: the command log keeps the message, and so may the assertion.
    let id = PatientId::generate();
    let then = Scenario::new().when(SendReminder { patient: id }).await;
    let message = panic_message(|| {
        then.assert_rejected_with("the patient was forgotten");
    });
    assert!(message.contains("\"no such patient\""), "{message}");
}

#[tokio::test]
async fn a_success_is_not_a_rejection() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new().when(register_cmd(&id, ann)).await;
    let message = panic_message(|| {
        then.assert_rejected::<eventsourcery::Error>();
    });
    assert!(
        message.contains("succeeded and appended 1 event"),
        "{message}"
    );
}

#[tokio::test]
async fn then_debug_shows_no_personal_value() {
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let then = Scenario::new()
        .given::<Patient, _>(&id, registered(&id, ann))
        .when(register_cmd(&id, ann))
        .await;
    let debug = format!("{then:?}");
    assert!(
        debug.contains("the handler rejected the command"),
        "{debug}"
    );
    assert!(!debug.contains(ANN), "{debug}");
}
