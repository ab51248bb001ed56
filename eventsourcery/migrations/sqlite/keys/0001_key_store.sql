-- The encryption key store: each data subject's data key, wrapped by the master key, and the
-- PII-free record of each erasure. Applied by eventsourcery's embedded migrator; the applied
-- version is recorded in `eventsourcery_key_store_migrations`. Never edit a released
-- migration: add a new one.

-- The current data key of each subject (deleted when the subject is erased).
CREATE TABLE eventsourcery_data_keys (
    -- the subject's personal key, as a UUID in text form
    subject         TEXT    PRIMARY KEY,
    -- bound into every ciphertext made with the key
    version         INTEGER NOT NULL CHECK (version > 0),
    -- nonce and sealed key
    wrapped         BLOB    NOT NULL,
    -- the id of the master key that wrapped it (not secret)
    master_key_id   TEXT    NOT NULL,
    -- nanoseconds since the Unix epoch
    created_at_ns   INTEGER NOT NULL
) STRICT;

-- One row per erased subject: when, why (never personal data), and the highest key version it
-- had, so that a re-enrolled subject gets a higher one.
CREATE TABLE eventsourcery_erasures (
    subject           TEXT    PRIMARY KEY,
    -- nanoseconds since the Unix epoch
    erased_at_ns      INTEGER NOT NULL,
    reason            TEXT    NOT NULL,
    last_key_version  INTEGER NOT NULL CHECK (last_key_version >= 0),
    -- 1 once the subject was re-enrolled and may give personal data again
    re_enrolled       INTEGER NOT NULL CHECK (re_enrolled IN (0, 1))
) STRICT;
