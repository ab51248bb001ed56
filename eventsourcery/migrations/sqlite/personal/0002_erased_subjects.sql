-- The PII-free record, in the personal data store itself, that a subject was erased: every key
-- version up to `last_key_version` is destroyed. A write checks it in the transaction that
-- stores values, so a value encrypted under a destroyed key (a write that raced the erasure)
-- is refused rather than left behind.
CREATE TABLE eventsourcery_erased_subjects (
    -- the subject's personal key, as a UUID in text form
    subject           TEXT    PRIMARY KEY,
    last_key_version  INTEGER NOT NULL CHECK (last_key_version >= 0)
) STRICT;
