-- The PII-free record, in the personal data store itself, that a subject was erased: every key
-- version up to `last_key_version` is destroyed. A write checks it in the transaction that
-- stores values, so a value encrypted under a destroyed key (a write that raced the erasure)
-- is refused rather than left behind.
CREATE TABLE eventsourcery_erased_subjects (
    -- the subject's personal key, as a UUID in text form
    subject           TEXT    PRIMARY KEY,
    last_key_version  INTEGER NOT NULL CHECK (last_key_version >= 0)
) STRICT;

-- Blind-index entries name the version of the index key that made them, so the index key can
-- be rotated: a rotation raises the floor below which no entry is accepted any more, rebuilds
-- the index under the new key from the stored values, and deletes the entries below the floor.
-- Entries made before versions existed were made with the first key, version 0.
ALTER TABLE eventsourcery_blind_index ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0
    CHECK (key_version >= 0);

CREATE TABLE eventsourcery_index_floor (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    floor   INTEGER NOT NULL CHECK (floor >= 0)
) STRICT;

INSERT INTO eventsourcery_index_floor (id, floor) VALUES (1, 0);
