//! `#[derive(DomainEvent)]`: names, versions, payload round trips, upcasting, bad input.

use std::collections::BTreeMap;

use eventsourcery::codec::{DecodeContext, EncodeContext};
use eventsourcery::event::{EventError, EventRegistry};
use eventsourcery::{DomainEvent, SerializableValue, event::decode_stored};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct OrderId(Uuid);

#[derive(SerializableValue, Clone, Debug)]
enum Priority {
    Low,
    High,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Line {
    sku: String,
    quantity: u32,
}

#[derive(DomainEvent, Debug, Clone, PartialEq)]
struct OrderPlaced {
    order: OrderId,
    priority: Priority,
    note: Option<String>,
    lines: Vec<Line>,
    tags: BTreeMap<String, i64>,
    total: f64,
    paid: bool,
    r#type: String,
    small: i8,
    big: u128,
}

#[derive(DomainEvent, Debug, PartialEq)]
#[event(name = "order.cancelled", version = 3)]
struct OrderCancelled {
    order: OrderId,
    reason: String,
}

#[derive(DomainEvent, Debug, PartialEq)]
struct Heartbeat;

#[derive(DomainEvent, Debug, PartialEq)]
enum OrderEvent {
    Placed(OrderPlaced),
    Cancelled(OrderCancelled),
}

eventsourcery::upcaster!("order.cancelled", 1 => |mut payload| {
    let object = payload.as_object_mut().ok_or("not an object")?;
    let why = object.remove("why").ok_or("no `why`")?;
    object.insert("reason".into(), why);
    Ok(payload)
});

eventsourcery::upcaster!("order.cancelled", 2 => |mut payload| {
    if let Some(reason) = payload.get_mut("reason") && let Some(text) = reason.as_str() {
        *reason = json!(text.to_uppercase());
    }
    Ok(payload)
});

fn placed() -> OrderPlaced {
    OrderPlaced {
        order: OrderId(Uuid::from_u128(7)),
        priority: Priority::High,
        note: Some("ring twice".into()),
        lines: vec![Line {
            sku: "A-1".into(),
            quantity: 2,
        }],
        tags: BTreeMap::from([("gift".into(), 1)]),
        total: 12.5,
        paid: false,
        r#type: "web".into(),
        small: -3,
        big: u128::from(u64::MAX),
    }
}

fn encode<E: DomainEvent>(event: &E) -> serde_json::Value {
    event.encode(&mut EncodeContext::new()).unwrap()
}

fn decode<E: DomainEvent>(
    name: &str,
    version: u32,
    payload: serde_json::Value,
) -> Result<E, EventError> {
    decode_stored(name, version, payload, &mut DecodeContext::new())
}

#[test]
fn default_name_is_snake_case_and_version_is_one() {
    let event = placed();
    assert_eq!(event.event_name(), "order_placed");
    assert_eq!(event.event_version(), 1);
    assert_eq!(Heartbeat.event_name(), "heartbeat");
    assert!(OrderPlaced::handles("order_placed"));
    assert!(!OrderPlaced::handles("order.cancelled"));
}

#[test]
fn explicit_name_and_version() {
    let event = OrderCancelled {
        order: OrderId(Uuid::nil()),
        reason: "x".into(),
    };
    assert_eq!(event.event_name(), "order.cancelled");
    assert_eq!(event.event_version(), 3);
    let registration = EventRegistry::global().get("order.cancelled").unwrap();
    assert_eq!(registration.version, 3);
    assert!(
        registration.type_name.ends_with("OrderCancelled"),
        "{}",
        registration.type_name
    );
}

#[test]
fn every_field_kind_round_trips() {
    let event = placed();
    let payload = encode(&event);
    assert_eq!(
        payload["order"],
        json!("00000000-0000-0000-0000-000000000007")
    );
    assert_eq!(payload["priority"], json!("High"));
    assert_eq!(payload["type"], json!("web"));
    assert_eq!(payload["lines"], json!([{ "sku": "A-1", "quantity": 2 }]));
    let back: OrderPlaced = decode("order_placed", 1, payload).unwrap();
    assert_eq!(back, event);
}

/// What loads do for an event without personal fields: decode its stored text straight into
/// the type. It gives what decoding the parsed payload gives, and `None` wherever that would
/// report an error, so that the decode through `Value` reports it.
#[test]
fn an_event_decodes_from_its_text_as_from_its_value() {
    let event = placed();
    let text = encode(&event).to_string();
    assert_eq!(
        OrderPlaced::decode_text("order_placed", &text),
        Some(event.clone())
    );
    let mut payload = encode(&event);
    let object = payload.as_object_mut().unwrap();
    object.remove("note");
    object.insert("added_later".into(), json!({ "deep": [1, { "x": null }] }));
    let back = OrderPlaced::decode_text("order_placed", &payload.to_string()).unwrap();
    assert_eq!(back.note, None, "a missing option is None");
    assert_eq!(back.lines, event.lines, "an unknown field is skipped");
    let escaped = text.replace("\"type\"", "\"\\u0074ype\"");
    assert_ne!(escaped, text);
    assert_eq!(
        OrderPlaced::decode_text("order_placed", &escaped),
        Some(event.clone()),
        "an escaped key"
    );
    let duplicated = text.replacen('{', "{\"paid\":true,", 1);
    for bad in [
        text.replace("\"paid\":false", "\"paid\":\"no\""),
        text.replace("\"paid\":false,", ""),
        duplicated,
        "[1]".to_owned(),
        format!("{text} trailing"),
    ] {
        assert_eq!(
            OrderPlaced::decode_text("order_placed", &bad),
            None,
            "{bad}"
        );
    }
    assert_eq!(
        OrderEvent::decode_text("order_placed", &text),
        Some(OrderEvent::Placed(event))
    );
    assert_eq!(OrderEvent::decode_text("no_such_event", "{}"), None);
    assert_eq!(Heartbeat::decode_text("heartbeat", "{}"), Some(Heartbeat));
}

#[test]
fn missing_option_is_none_and_unit_events_round_trip() {
    let mut payload = encode(&placed());
    payload.as_object_mut().unwrap().remove("note");
    let back: OrderPlaced = decode("order_placed", 1, payload).unwrap();
    assert_eq!(back.note, None);
    assert_eq!(encode(&Heartbeat), json!({}));
    assert_eq!(
        decode::<Heartbeat>("heartbeat", 1, json!({})).unwrap(),
        Heartbeat
    );
}

#[test]
fn enums_of_events_dispatch_on_the_name() {
    let cancelled = OrderEvent::Cancelled(OrderCancelled {
        order: OrderId(Uuid::nil()),
        reason: "X".into(),
    });
    assert_eq!(cancelled.event_name(), "order.cancelled");
    assert_eq!(cancelled.event_version(), 3);
    assert_eq!(
        OrderEvent::event_names(),
        vec!["order_placed", "order.cancelled"]
    );
    let payload = encode(&cancelled);
    let back: OrderEvent = decode("order.cancelled", 3, payload).unwrap();
    assert_eq!(back, cancelled);
    assert!(matches!(
        decode::<OrderEvent>("heartbeat", 1, json!({})),
        Err(EventError::NotHandled { .. })
    ));
}

#[test]
fn old_versions_are_upcast_step_by_step() {
    let order = OrderId(Uuid::nil());
    let v1 = json!({ "order": order.to_string(), "why": "late" });
    let event: OrderCancelled = decode("order.cancelled", 1, v1).unwrap();
    assert_eq!(event.reason, "LATE");
    let v2 = json!({ "order": order.to_string(), "reason": "late" });
    assert_eq!(
        decode::<OrderCancelled>("order.cancelled", 2, v2)
            .unwrap()
            .reason,
        "LATE"
    );
    let v3 = json!({ "order": order.to_string(), "reason": "late" });
    assert_eq!(
        decode::<OrderCancelled>("order.cancelled", 3, v3)
            .unwrap()
            .reason,
        "late"
    );
}

#[test]
fn a_failing_upcaster_is_a_typed_error() {
    let error =
        decode::<OrderCancelled>("order.cancelled", 1, json!({ "order": "x" })).unwrap_err();
    assert!(
        matches!(&error, EventError::Upcast { from: 1, reason, .. } if reason == "no `why`"),
        "{error}"
    );
}

#[test]
fn a_newer_version_is_a_typed_error() {
    let error = decode::<OrderCancelled>("order.cancelled", 4, json!({})).unwrap_err();
    assert!(
        matches!(
            error,
            EventError::NewerVersion {
                stored: 4,
                supported: 3,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_missing_upcaster_is_a_typed_error() {
    let error = EventRegistry::global()
        .upcast("order_placed", 0, json!({}))
        .unwrap_err();
    assert!(
        matches!(error, EventError::MissingUpcaster { stored: 0, .. }),
        "{error}"
    );
}

#[test]
fn an_unknown_name_is_a_typed_error() {
    let error = EventRegistry::global()
        .upcast("no_such_event", 1, json!({}))
        .unwrap_err();
    assert!(matches!(&error, EventError::UnknownEvent { name } if name == "no_such_event"));
    let error = decode::<OrderPlaced>("no_such_event", 1, json!({})).unwrap_err();
    assert!(matches!(error, EventError::NotHandled { .. }), "{error}");
}

#[test]
fn a_malformed_payload_names_the_field() {
    let mut payload = encode(&placed());
    payload["lines"] = json!("not a list");
    let error = decode::<OrderPlaced>("order_placed", 1, payload).unwrap_err();
    assert!(
        matches!(&error, EventError::Malformed { field, .. } if field == "lines"),
        "{error}"
    );
    let error = decode::<OrderPlaced>("order_placed", 1, json!([1, 2])).unwrap_err();
    assert!(
        matches!(&error, EventError::Malformed { field, .. } if field == "*"),
        "{error}"
    );
    let error = decode::<OrderPlaced>("order_placed", 1, json!({})).unwrap_err();
    assert!(
        matches!(&error, EventError::Malformed { field, .. } if field == "order"),
        "{error}"
    );
}

#[test]
fn a_value_json_cannot_hold_is_an_encode_error() {
    let event = OrderPlaced {
        big: u128::MAX,
        ..placed()
    };
    let error = event.encode(&mut EncodeContext::new()).unwrap_err();
    assert!(
        matches!(&error, EventError::Malformed { field, .. } if field == "big"),
        "{error}"
    );
}

#[test]
fn the_registry_has_no_duplicates_in_this_program() {
    EventRegistry::global().check().unwrap();
}
