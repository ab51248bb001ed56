//! An enum of event structs: each variant wraps one event and takes its name from it.

use eventsourcery::{DomainEvent, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct OrderId(uuid::Uuid);

#[derive(DomainEvent)]
struct OrderPlaced {
    order: OrderId,
    lines: Vec<String>,
}

#[derive(DomainEvent)]
#[event(name = "order_cancelled", version = 3)]
struct OrderCancelled {
    order: OrderId,
    reason: Option<String>,
}

#[derive(DomainEvent)]
enum OrderEvent {
    Placed(OrderPlaced),
    Cancelled(OrderCancelled),
}

fn main() {
    assert_eq!(
        OrderEvent::event_names(),
        ["order_placed", "order_cancelled"]
    );
    assert!(OrderEvent::handles("order_cancelled"));
}
