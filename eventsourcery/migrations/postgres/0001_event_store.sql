-- The event store: the event log, the command log and aggregate snapshots.
-- Applied by eventsourcery's embedded migrator; the applied version is recorded in
-- `eventsourcery_event_store_migrations`. Never edit a released migration: add a new one.
-- Tables are created unqualified, in the first schema of the connection's `search_path`.

-- Every event, in global order. `position` is allocated from `eventsourcery_log_head` in the
-- appending transaction (see `PostgresStore`), so positions follow commit order with no gaps.
CREATE TABLE eventsourcery_events (
    position        BIGINT  NOT NULL CHECK (position > 0),
    event_id        UUID    NOT NULL,
    stream_id       TEXT    NOT NULL CHECK (stream_id <> ''),
    stream_version  BIGINT  NOT NULL CHECK (stream_version > 0),
    event_name      TEXT    NOT NULL,
    schema_version  BIGINT  NOT NULL,
    payload         JSONB   NOT NULL,
    metadata        JSONB   NOT NULL,
    -- nanoseconds since the Unix epoch
    recorded_at_ns  BIGINT  NOT NULL,
    CONSTRAINT eventsourcery_events_pkey PRIMARY KEY (position),
    -- The store tells a duplicate event id from a concurrency conflict by these two names.
    CONSTRAINT eventsourcery_events_event_id_key UNIQUE (event_id),
    CONSTRAINT eventsourcery_events_stream_version_key UNIQUE (stream_id, stream_version)
);

-- The last allocated global position: one row, locked by each appending transaction.
CREATE TABLE eventsourcery_log_head (
    id              BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    last_position   BIGINT  NOT NULL CHECK (last_position >= 0)
);

INSERT INTO eventsourcery_log_head (id, last_position) VALUES (TRUE, 0);

-- Every command the bus executed, with its outcome, oldest first.
CREATE TABLE eventsourcery_commands (
    seq             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id      UUID    NOT NULL,
    name            TEXT    NOT NULL,
    payload         JSONB   NOT NULL,
    metadata        JSONB   NOT NULL,
    -- the short outcome name, for queries: succeeded, failed, conflicted
    outcome         TEXT    NOT NULL,
    -- the full outcome as JSON
    outcome_detail  JSONB   NOT NULL,
    recorded_at_ns  BIGINT  NOT NULL
);

CREATE INDEX eventsourcery_commands_command_id ON eventsourcery_commands (command_id);

-- The latest snapshot per stream.
CREATE TABLE eventsourcery_snapshots (
    stream_id        TEXT    PRIMARY KEY,
    stream_version   BIGINT  NOT NULL,
    snapshot_version BIGINT  NOT NULL,
    state            JSONB   NOT NULL,
    saved_at_ns      BIGINT  NOT NULL
);
