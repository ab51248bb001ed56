use eventsourcery::DomainEvent;

#[derive(DomainEvent)]
struct Changed<T> {
    value: T,
}

fn main() {}
