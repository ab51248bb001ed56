-- The encryption key store: each data subject's data key, wrapped by the master key, and the
-- PII-free record of each erasure. Applied by eventsourcery's embedded migrator; the applied
-- version is recorded in `eventsourcery_key_store_migrations`. Never edit a released
-- migration: add a new one. Tables are created unqualified, in the first schema of the
-- connection's `search_path`.

-- The current data key of each subject (deleted when the subject is erased).
CREATE TABLE eventsourcery_data_keys (
    subject         UUID    PRIMARY KEY,
    -- bound into every ciphertext made with the key (a u32: BIGINT holds all of it)
    version         BIGINT  NOT NULL CHECK (version > 0),
    -- nonce and sealed key
    wrapped         BYTEA   NOT NULL,
    -- the id of the master key that wrapped it (not secret)
    master_key_id   TEXT    NOT NULL,
    -- nanoseconds since the Unix epoch
    created_at_ns   BIGINT  NOT NULL
);

-- One row per erased subject: when, why (never personal data), and the highest key version it
-- had, so that a re-enrolled subject gets a higher one.
CREATE TABLE eventsourcery_erasures (
    subject           UUID    PRIMARY KEY,
    -- nanoseconds since the Unix epoch
    erased_at_ns      BIGINT  NOT NULL,
    reason            TEXT    NOT NULL,
    last_key_version  BIGINT  NOT NULL CHECK (last_key_version >= 0),
    -- true once the subject was re-enrolled and may give personal data again
    re_enrolled       BOOLEAN NOT NULL
);
