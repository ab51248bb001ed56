-- The audit log of reads of personal values (`events show --decrypt`, `events tail --decrypt`):
-- who read which subjects' values, where, when and why, written before the values are shown.
-- No column holds a personal value: subject keys, field names and log positions only. An
-- erasure leaves it alone. Append-only: the triggers refuse to change or delete an entry.
CREATE TABLE eventsourcery_audit_log (
    sequence    INTEGER PRIMARY KEY AUTOINCREMENT,
    -- nanoseconds since the Unix epoch
    at_ns       INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    -- the stream read, NULL for the global log
    stream      TEXT,
    -- JSON arrays: global positions, subject keys (UUIDs), "{event}.{field}" names
    positions   TEXT    NOT NULL,
    subjects    TEXT    NOT NULL,
    fields      TEXT    NOT NULL
) STRICT;

CREATE TRIGGER eventsourcery_audit_log_no_update BEFORE UPDATE ON eventsourcery_audit_log
BEGIN
    SELECT RAISE(ABORT, 'eventsourcery_audit_log is append-only');
END;

CREATE TRIGGER eventsourcery_audit_log_no_delete BEFORE DELETE ON eventsourcery_audit_log
BEGIN
    SELECT RAISE(ABORT, 'eventsourcery_audit_log is append-only');
END;
