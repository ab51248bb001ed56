-- Consumers of the global log: durable checkpoints, parked state, leases, skipped events and
-- processed-event marks (the idempotency keys of at-least-once listeners).

CREATE TABLE eventsourcery_consumers (
    name                TEXT    PRIMARY KEY,
    -- the position of the last event the consumer is done with
    position            INTEGER NOT NULL DEFAULT 0 CHECK (position >= 0),
    parked_position     INTEGER,
    parked_error        TEXT,
    parked_at_ns        INTEGER,
    lease_owner         TEXT,
    lease_expires_at_ns INTEGER
);

CREATE TABLE eventsourcery_consumer_skips (
    consumer        TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    reason          TEXT    NOT NULL,
    skipped_at_ns   INTEGER NOT NULL
);

CREATE INDEX eventsourcery_consumer_skips_consumer ON eventsourcery_consumer_skips (consumer);

CREATE TABLE eventsourcery_processed_events (
    consumer    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
