-- The personal data store: encrypted personal values and the keyed blind index. Applied by
-- eventsourcery's embedded migrator; the applied version is recorded in
-- `eventsourcery_personal_store_migrations`. Never edit a released migration: add a new one.
-- Tables are created unqualified, in the first schema of the connection's `search_path`.
-- No column holds a plaintext personal value.

-- One encrypted personal value per row, named by the reference an event or command holds.
CREATE TABLE eventsourcery_personal_data (
    reference       UUID    PRIMARY KEY,
    subject         UUID    NOT NULL,
    -- "{event or command}.{field}"
    field           TEXT    NOT NULL,
    -- format byte, key version, nonce, sealed value
    ciphertext      BYTEA   NOT NULL,
    -- nanoseconds since the Unix epoch
    created_at_ns   BIGINT  NOT NULL
);

CREATE INDEX eventsourcery_personal_data_subject
    ON eventsourcery_personal_data (subject, created_at_ns);

-- Keyed hashes (HMAC) of lookup forms of personal values, and the subjects holding them.
CREATE TABLE eventsourcery_blind_index (
    hash            BYTEA   NOT NULL,
    subject         UUID    NOT NULL,
    PRIMARY KEY (hash, subject)
);

CREATE INDEX eventsourcery_blind_index_subject ON eventsourcery_blind_index (subject);
