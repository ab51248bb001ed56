-- The event store: the event log, the command log and aggregate snapshots.
-- Applied by eventsourcery's embedded migrator; the applied version is recorded in
-- `eventsourcery_event_store_migrations`. Never edit a released migration: add a new one.

-- Every event, in global order. Appends run in `BEGIN IMMEDIATE` transactions, so writers are
-- serialised and `position` (assigned as MAX + 1 inside the transaction) follows commit order.
CREATE TABLE eventsourcery_events (
    position        INTEGER PRIMARY KEY CHECK (position > 0),
    event_id        TEXT    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL CHECK (stream_id <> ''),
    stream_version  INTEGER NOT NULL CHECK (stream_version > 0),
    event_name      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    -- nanoseconds since the Unix epoch
    recorded_at_ns  INTEGER NOT NULL,
    UNIQUE (stream_id, stream_version)
) STRICT;

-- Every command the bus executed, with its outcome, oldest first.
CREATE TABLE eventsourcery_commands (
    seq             INTEGER PRIMARY KEY,
    command_id      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    -- the short outcome name, for queries: succeeded, failed, conflicted
    outcome         TEXT    NOT NULL,
    -- the full outcome as JSON
    outcome_detail  TEXT    NOT NULL,
    recorded_at_ns  INTEGER NOT NULL
) STRICT;

CREATE INDEX eventsourcery_commands_command_id ON eventsourcery_commands (command_id);

-- The latest snapshot per stream.
CREATE TABLE eventsourcery_snapshots (
    stream_id        TEXT    PRIMARY KEY,
    stream_version   INTEGER NOT NULL,
    snapshot_version INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    saved_at_ns      INTEGER NOT NULL
) STRICT;
