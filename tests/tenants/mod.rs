//! Two tenants over the same settings: one `open_tenant` call each, and neither sees the
//! other's events, personal data, lookups or erasures, even with the same aggregate id and
//! the same subject key in both. Run on SQLite (`tenants_sqlite.rs`) and PostgreSQL
//! (`tenants_postgres.rs`).
#![allow(dead_code)]

use eventsourcery::config::{Settings, Stores, Tenant};
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, DomainEvent, Personal, PersonalData, PersonalKey,
    Repository, SerializableValue,
};
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
pub struct PatientId(Uuid);

#[derive(PersonalData, Clone, PartialEq)]
pub struct Email(String);

#[derive(DomainEvent)]
#[event(name = "patient_registered", subject = patient)]
pub struct PatientRegistered {
    id: PatientId,
    patient: PersonalKey,
    #[personal(lookup)]
    email: Personal<Email>,
}

#[derive(Aggregate, Default)]
#[aggregate(id = PatientId, events(PatientRegistered))]
pub struct Patient {
    email: Option<Personal<Email>>,
}

impl Apply<PatientRegistered> for Patient {
    fn apply(&mut self, event: &PatientRegistered) {
        self.email = Some(event.email.clone());
    }
}

#[derive(Command, Clone)]
#[command(subject = patient)]
pub struct RegisterPatient {
    id: PatientId,
    patient: PersonalKey,
    #[personal]
    email: Email,
}

#[eventsourcery::handler]
async fn register(
    command: RegisterPatient,
    patients: Repository<Patient>,
) -> Result<(), eventsourcery::Error> {
    let mut patient = patients.load(&command.id).await?;
    patient.raise(PatientRegistered {
        id: command.id,
        patient: command.patient,
        email: command.email.into(),
    });
    patients.save(&mut patient).await?;
    Ok(())
}

fn bus(stores: &Stores) -> CommandBus {
    CommandBus::builder(stores.events.clone())
        .personal_data(stores.vault.clone())
        .build()
        .unwrap()
}

async fn event_count(stores: &Stores) -> usize {
    stores.events.read_all(0, 1000).await.unwrap().len()
}

/// The email the patient `id` holds in the tenant of `stores`.
async fn email_of(stores: &Stores, id: &PatientId) -> Option<Personal<Email>> {
    bus(stores)
        .repository::<Patient>()
        .load(id)
        .await
        .unwrap()
        .state()
        .email
        .clone()
}

/// Opens the tenants `acme` and `globex` of `settings`, writes the same patient (same id, same
/// subject key) with another email into each, and checks that nothing crosses over. Returns
/// the two tenants' stores, for the backend's own checks of where the data went.
pub async fn two_tenants_see_nothing_of_each_other(settings: &Settings) -> (Stores, Stores) {
    let acme = settings.open_tenant("acme").await.unwrap();
    let globex = settings
        .for_tenant(Tenant::new("globex").unwrap())
        .open()
        .await
        .unwrap();
    assert_eq!(acme.tenant, Some(Tenant::new("acme").unwrap()));

    let id = PatientId(Uuid::now_v7());
    let patient = PersonalKey::issue();
    let (ann_acme, ann_globex) = (
        Email("ann@acme.example".into()),
        Email("ann@globex.example".into()),
    );
    for (stores, email) in [(&acme, &ann_acme), (&globex, &ann_globex)] {
        // The same aggregate id at version 0 in both: one shared log would make the second a
        // conflict.
        bus(stores)
            .execute(RegisterPatient {
                id: id.clone(),
                patient,
                email: email.clone(),
            })
            .await
            .unwrap();
    }

    // Events: one each.
    assert_eq!(event_count(&acme).await, 1);
    assert_eq!(event_count(&globex).await, 1);
    assert_eq!(
        email_of(&acme, &id).await,
        Some(Personal::new(ann_acme.clone()))
    );
    assert_eq!(
        email_of(&globex, &id).await,
        Some(Personal::new(ann_globex.clone()))
    );

    // Lookups: each tenant finds its own value only.
    assert_eq!(acme.vault.lookup(&ann_acme).await.unwrap(), vec![patient]);
    assert!(acme.vault.lookup(&ann_globex).await.unwrap().is_empty());
    assert!(globex.vault.lookup(&ann_acme).await.unwrap().is_empty());

    // Exports: the same subject key holds different data in each.
    let export = acme
        .vault
        .export(patient)
        .await
        .unwrap()
        .to_json()
        .to_string();
    assert!(export.contains("ann@acme.example"), "{export}");
    assert!(!export.contains("ann@globex.example"), "{export}");

    // Erasure in one tenant forgets nothing in the other.
    bus(&globex).erase(patient, "asked to").await.unwrap();
    assert_eq!(email_of(&globex, &id).await, Some(Personal::erased()));
    assert!(globex.vault.is_erased(patient).await.unwrap());
    assert!(!acme.vault.is_erased(patient).await.unwrap());
    assert_eq!(
        email_of(&acme, &id).await,
        Some(Personal::new(ann_acme.clone()))
    );
    assert_eq!(acme.vault.lookup(&ann_acme).await.unwrap(), vec![patient]);

    // Opened again, a tenant finds its own stores, and the stores without a tenant are
    // others again.
    let acme_again = settings.open_tenant("acme").await.unwrap();
    assert_eq!(event_count(&acme_again).await, 1);
    assert_eq!(
        email_of(&acme_again, &id).await,
        Some(Personal::new(ann_acme.clone()))
    );
    let untenanted = settings.open().await.unwrap();
    assert_eq!(event_count(&untenanted).await, 0);
    assert!(untenanted.vault.lookup(&ann_acme).await.unwrap().is_empty());

    (acme, globex)
}
