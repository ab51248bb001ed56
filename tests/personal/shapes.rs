//! Personal fields of every shape: an optional value, several values, a value with several
//! parts; in events (`Option<Personal<T>>`, `Vec<Personal<T>>`) and in commands (`Option<T>`,
//! `Vec<T>` marked `#[personal]`). Each round-trips, reads as erased after its subject's
//! erasure (an erased optional value as `Some` of an erased value, never as `None`), and none
//! reaches the event or command tables (the plaintext scans include them).

use eventsourcery::{
    Aggregate, Apply, Command, DomainEvent, Id, Personal, PersonalData, PersonalKey, Repository,
    SerializableValue,
};
use uuid::Uuid;

use super::{Address, Backend, Email, FullName};

/// A phone number that one of the scans looks for.
pub const PHONE: &str = "+353 1 555 0142";
/// A second address that one of the scans looks for.
pub const SECOND_EMAIL: &str = "ann.second@example.org";

#[derive(PersonalData, Clone, PartialEq)]
pub struct Phone(String);

#[derive(SerializableValue, Clone, Debug)]
pub struct PatientId(Uuid);

#[derive(DomainEvent)]
#[event(name = "patient_registered", subject = patient)]
pub struct PatientRegistered {
    id: PatientId,
    patient: PersonalKey,
    #[personal]
    name: Personal<FullName>,
    #[personal]
    phone: Option<Personal<Phone>>,
    #[personal(lookup)]
    emails: Vec<Personal<Email>>,
    #[personal]
    home: Option<Personal<Address>>,
}

#[derive(Aggregate, Default)]
#[aggregate(id = PatientId, events(PatientRegistered))]
pub struct Patient {
    pub name: Option<Personal<FullName>>,
    pub phone: Option<Personal<Phone>>,
    pub emails: Vec<Personal<Email>>,
    pub home: Option<Personal<Address>>,
}

impl Apply<PatientRegistered> for Patient {
    fn apply(&mut self, e: &PatientRegistered) {
        self.name = Some(e.name.clone());
        self.phone = e.phone.clone();
        self.emails = e.emails.clone();
        self.home = e.home.clone();
    }
}

#[derive(Command, Clone)]
#[command(subject = patient)]
pub struct RegisterPatient {
    id: PatientId,
    patient: PersonalKey,
    #[personal]
    name: FullName,
    #[personal]
    phone: Option<Phone>,
    #[personal]
    emails: Vec<Email>,
    #[personal]
    home: Option<Address>,
}

#[eventsourcery::handler]
async fn register_patient(
    cmd: RegisterPatient,
    patients: Repository<Patient>,
) -> Result<(), eventsourcery::Error> {
    let mut patient = patients.load(&cmd.id).await?;
    patient.raise(PatientRegistered {
        id: cmd.id,
        patient: cmd.patient,
        name: cmd.name.into(),
        phone: cmd.phone.map(Personal::from),
        emails: cmd.emails.into_iter().map(Personal::from).collect(),
        home: cmd.home.map(Personal::from),
    });
    patients.save(&mut patient).await?;
    Ok(())
}

pub fn register_patient_cmd(
    id: &PatientId,
    patient: PersonalKey,
    phone: Option<&str>,
    emails: &[&str],
) -> RegisterPatient {
    RegisterPatient {
        id: id.clone(),
        patient,
        name: FullName(super::NAME.into()),
        phone: phone.map(|p| Phone(p.into())),
        emails: emails.iter().map(|e| Email((*e).into())).collect(),
        home: Some(Address {
            street: "1 Quay Street".into(),
            city: "Dublin".into(),
        }),
    }
}

fn text<T, F: Fn(&T) -> &str>(value: &Personal<T>, part: F) -> Option<&str> {
    value.present().map(part)
}

/// Every shape round-trips; an absent optional value and an empty list stay so.
pub async fn every_shape_round_trips(backend: Backend) {
    let bus = backend.bus();
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    bus.execute(register_patient_cmd(
        &id,
        ann,
        Some(PHONE),
        &[super::EMAIL, SECOND_EMAIL],
    ))
    .await
    .unwrap();
    let patient = bus.repository::<Patient>().load(&id).await.unwrap();
    assert_eq!(
        patient.phone.as_ref().and_then(|p| text(p, |p| &p.0)),
        Some(PHONE)
    );
    let emails: Vec<Option<&str>> = patient.emails.iter().map(|e| text(e, |e| &e.0)).collect();
    assert_eq!(emails, [Some(super::EMAIL), Some(SECOND_EMAIL)]);
    assert_eq!(
        patient.home.as_ref().and_then(|h| text(h, |h| &h.street)),
        Some("1 Quay Street")
    );

    let (bare, bob) = (PatientId::generate(), PersonalKey::issue());
    let mut command = register_patient_cmd(&bare, bob, None, &[]);
    command.home = None;
    bus.execute(command).await.unwrap();
    let patient = bus.repository::<Patient>().load(&bare).await.unwrap();
    assert!(patient.phone.is_none(), "absent stays absent");
    assert!(patient.emails.is_empty());
    assert!(patient.home.is_none());
    assert!(patient.name.as_ref().is_some_and(|n| n.present().is_some()));

    // Each value of a list is its own entry in the blind index, and in the export.
    for email in [super::EMAIL, SECOND_EMAIL] {
        assert_eq!(
            backend.vault.lookup(&Email(email.into())).await.unwrap(),
            vec![ann],
            "{email}"
        );
    }
    let export = backend.vault.export(ann).await.unwrap();
    let fields: Vec<&str> = export.fields.iter().map(|f| f.field.as_str()).collect();
    for field in [
        "patient_registered.phone",
        "patient_registered.emails",
        "register_patient.phone",
        "register_patient.emails",
        "register_patient.home",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    assert_eq!(
        fields
            .iter()
            .filter(|f| **f == "patient_registered.emails")
            .count(),
        2
    );
}

/// After erasure every value of every shape reads as erased: a present optional value as
/// `Some` of an erased value (not `None`), each element of a list as erased; an absent one stays
/// `None`, and another subject's values still decrypt.
pub async fn every_shape_reads_as_erased_after_erasure(backend: Backend) {
    let bus = backend.bus();
    let (id, ann) = (PatientId::generate(), PersonalKey::issue());
    let (other, bob) = (PatientId::generate(), PersonalKey::issue());
    bus.execute(register_patient_cmd(
        &id,
        ann,
        Some(PHONE),
        &[super::EMAIL, SECOND_EMAIL],
    ))
    .await
    .unwrap();
    bus.execute(register_patient_cmd(
        &other,
        bob,
        Some("+1 555 0100"),
        &["bob@example.com"],
    ))
    .await
    .unwrap();
    let (absent, carl) = (PatientId::generate(), PersonalKey::issue());
    bus.execute(register_patient_cmd(&absent, carl, None, &[]))
        .await
        .unwrap();

    backend.vault.erase(ann, "request").await.unwrap();
    backend.vault.erase(carl, "request").await.unwrap();
    let patients = bus.repository::<Patient>();
    let patient = patients.load(&id).await.unwrap();
    assert!(
        matches!(&patient.phone, Some(p) if p.is_erased()),
        "an erased optional value is Some(Erased), not None"
    );
    assert_eq!(patient.emails.len(), 2);
    assert!(patient.emails.iter().all(Personal::is_erased));
    assert!(matches!(&patient.home, Some(p) if p.is_erased()));
    assert!(patient.name.as_ref().is_some_and(Personal::is_erased));
    let patient = patients.load(&absent).await.unwrap();
    assert!(patient.phone.is_none(), "an absent value stays absent");
    assert!(patient.emails.is_empty());
    let patient = patients.load(&other).await.unwrap();
    assert_eq!(
        patient.phone.as_ref().and_then(|p| text(p, |p| &p.0)),
        Some("+1 555 0100")
    );
    assert!(
        backend
            .vault
            .lookup(&Email(SECOND_EMAIL.into()))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(backend.data().by_subject(ann).await.unwrap().is_empty());
}
