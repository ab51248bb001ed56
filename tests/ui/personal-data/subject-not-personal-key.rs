use eventsourcery::{DomainEvent, Personal, PersonalData, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(PersonalData)]
struct Email(String);

#[derive(DomainEvent)]
struct CandidateRegistered {
    voucher: VoucherId,
    #[personal(subject = voucher)]
    email: Personal<Email>,
}

fn main() {}
