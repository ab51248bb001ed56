-- Consumers of the global log: durable checkpoints, parked state, leases, skipped events and
-- processed-event marks (the idempotency keys of at-least-once listeners).

CREATE TABLE eventsourcery_consumers (
    name                TEXT    PRIMARY KEY,
    -- the position of the last event the consumer is done with
    position            BIGINT  NOT NULL DEFAULT 0 CHECK (position >= 0),
    parked_position     BIGINT,
    parked_error        TEXT,
    parked_at_ns        BIGINT,
    lease_owner         TEXT,
    lease_expires_at_ns BIGINT
);

CREATE TABLE eventsourcery_consumer_skips (
    consumer        TEXT    NOT NULL,
    position        BIGINT  NOT NULL,
    reason          TEXT    NOT NULL,
    skipped_at_ns   BIGINT  NOT NULL
);

CREATE INDEX eventsourcery_consumer_skips_consumer ON eventsourcery_consumer_skips (consumer);

CREATE TABLE eventsourcery_processed_events (
    consumer    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
