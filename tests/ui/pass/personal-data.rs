//! Personal fields in events (as `Personal<T>`, optional or several) and commands (bare or
//! `Personal<T>`, optional or several), with the subject named on the field or once on the
//! type, several subjects, and a blind index.

use eventsourcery::personal::PersonalData as _;
use eventsourcery::{Command, DomainEvent, Personal, PersonalData, PersonalKey, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(PersonalData, Clone)]
#[personal_data(name = "full_name")]
struct FullName(String);

#[derive(PersonalData, Clone)]
struct Address {
    street: String,
    city: String,
}

#[derive(DomainEvent)]
#[event(subject = candidate)]
struct CandidateRegistered {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal(lookup)]
    email: Personal<Email>,
    #[personal]
    address: Personal<Address>,
    #[personal]
    phone: Option<Personal<FullName>>,
    #[personal(lookup)]
    other_emails: Vec<Personal<Email>>,
    #[personal]
    history: Vec<Option<Personal<Address>>>,
}

#[derive(DomainEvent)]
struct Referred {
    referrer: PersonalKey,
    referee: PersonalKey,
    #[personal(subject = referrer)]
    referrer_name: Personal<FullName>,
    #[personal(subject = referee, lookup)]
    referee_name: Personal<FullName>,
}

#[derive(Command, Clone)]
#[command(subject = candidate)]
struct RegisterCandidate {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal(lookup)]
    email: Email,
    #[personal]
    address: Personal<Address>,
    #[personal]
    nickname: Option<FullName>,
    #[personal(lookup)]
    other_emails: Vec<Email>,
}

#[derive(Command, Clone)]
struct Refer {
    referrer: PersonalKey,
    referee: PersonalKey,
    #[personal(subject = referrer)]
    referrer_name: FullName,
    #[personal(subject = referee)]
    referee_name: FullName,
}

fn main() {
    assert_eq!(Email::KIND, "email");
    assert_eq!(FullName::KIND, "full_name");
    let email = Email("ann@example.com".into());
    assert_eq!(format!("{email:?}"), "Email(<redacted>)");
    assert_eq!(
        *Address::from_plaintext(r#"{"street":"1 Quay Street","city":"Dublin"}"#)
            .unwrap()
            .to_plaintext()
            .unwrap(),
        r#"{"street":"1 Quay Street","city":"Dublin"}"#
    );
    let _ = (Address::KIND, CandidateRegistered::event_names());
    assert_eq!(Referred::event_names(), ["referred"]);
    assert_eq!(<RegisterCandidate as Command>::NAME, "register_candidate");
    assert_eq!(<Refer as Command>::NAME, "refer");
}
