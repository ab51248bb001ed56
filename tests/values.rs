//! `#[derive(SerializableValue)]`: string forms, serde through them, value equality, ids.

use std::collections::HashSet;

use eventsourcery::value::ValueError;
use eventsourcery::{Id, SerializableValue};
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(Uuid);

#[derive(SerializableValue, Clone, Debug)]
struct CandidateId(Uuid);

#[derive(SerializableValue, Clone, Debug)]
struct Amount(u64);

#[derive(SerializableValue, Clone, Debug)]
struct Code(String);

#[derive(SerializableValue, Clone, Debug)]
struct Money {
    cents: i64,
    currency: Code,
}

#[derive(SerializableValue, Clone, Debug)]
enum Status {
    Active,
    Closed,
}

#[test]
fn newtype_string_form_is_the_inner_value() {
    let id = VoucherId(Uuid::nil());
    assert_eq!(id.to_string(), "00000000-0000-0000-0000-000000000000");
    assert_eq!(
        "00000000-0000-0000-0000-000000000000"
            .parse::<VoucherId>()
            .unwrap(),
        id
    );
    assert_eq!(Amount(42).to_string(), "42");
    assert_eq!("42".parse::<Amount>().unwrap(), Amount(42));
    assert_eq!(Code("ABC".into()).to_string(), "ABC");
}

#[test]
fn serde_goes_through_the_string_form() {
    assert_eq!(
        serde_json::to_value(Amount(7)).unwrap(),
        serde_json::json!("7")
    );
    let amount: Amount = serde_json::from_value(serde_json::json!("7")).unwrap();
    assert_eq!(amount, Amount(7));
    let id = VoucherId::generate();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{id}\""));
    assert_eq!(serde_json::from_str::<VoucherId>(&json).unwrap(), id);
}

#[test]
fn bad_string_forms_are_typed_errors() {
    let error: ValueError = "not a uuid".parse::<VoucherId>().unwrap_err();
    assert_eq!(error.type_name(), "VoucherId");
    assert!(
        error.to_string().starts_with("invalid VoucherId:"),
        "{error}"
    );
    assert!("-1".parse::<Amount>().is_err());
    assert!(serde_json::from_value::<Amount>(serde_json::json!(7)).is_err());
    assert!(serde_json::from_value::<Amount>(serde_json::json!("x")).is_err());
}

#[test]
fn struct_values_use_json_and_compare_by_value() {
    let money = Money {
        cents: 250,
        currency: Code("EUR".into()),
    };
    let text = money.to_string();
    assert_eq!(text, r#"{"cents":250,"currency":"EUR"}"#);
    assert_eq!(text.parse::<Money>().unwrap(), money);
    assert_ne!(
        money,
        Money {
            cents: 251,
            currency: Code("EUR".into())
        }
    );
    assert!(r#"{"cents":1}"#.parse::<Money>().is_err());
    assert!(r#"{"cents":1,"currency":"EUR","extra":1}"#.parse::<Money>().is_err());
}

#[test]
fn enum_values_use_the_variant_name() {
    assert_eq!(Status::Active.to_string(), "Active");
    assert_eq!("Closed".parse::<Status>().unwrap(), Status::Closed);
    let error = "Open".parse::<Status>().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected one of `Active`, `Closed`"),
        "{error}"
    );
}

#[test]
fn ids_are_unique_and_hashable() {
    let ids: HashSet<VoucherId> = (0..1000).map(|_| VoucherId::generate()).collect();
    assert_eq!(ids.len(), 1000);
    let a = CandidateId::generate();
    assert_eq!(a.clone(), a);
    // `VoucherId == CandidateId` does not compile; see tests/ui/value/compare-different-ids.rs.
}

fn takes_voucher(id: &VoucherId) -> String {
    id.to_string()
}

#[test]
fn ids_are_distinct_types() {
    let voucher = VoucherId::generate();
    assert_eq!(takes_voucher(&voucher), voucher.to_string());
}
