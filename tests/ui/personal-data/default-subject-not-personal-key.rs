use eventsourcery::{DomainEvent, Personal, PersonalData, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(PersonalData)]
struct Email(String);

#[derive(PersonalData)]
struct FullName(String);

// One error, on the subject, however many personal fields it is the subject of.
#[derive(DomainEvent)]
#[event(subject = voucher)]
struct CandidateRegistered {
    voucher: VoucherId,
    #[personal]
    email: Personal<Email>,
    #[personal]
    name: Personal<FullName>,
}

fn main() {}
