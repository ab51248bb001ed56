-- The audit log of reads of personal values (`events show --decrypt`, `events tail --decrypt`):
-- who read which subjects' values, where, when and why, written before the values are shown.
-- No column holds a personal value: subject keys, field names and log positions only. An
-- erasure leaves it alone. Append-only: the trigger refuses to change or delete an entry, and
-- TRUNCATE too.
CREATE TABLE eventsourcery_audit_log (
    sequence    BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- nanoseconds since the Unix epoch
    at_ns       BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    -- the stream read, NULL for the global log
    stream      TEXT,
    -- JSON arrays, as text: global positions, subject keys (UUIDs), "{event}.{field}" names
    positions   TEXT    NOT NULL,
    subjects    TEXT    NOT NULL,
    fields      TEXT    NOT NULL
);

CREATE FUNCTION eventsourcery_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventsourcery_audit_log is append-only';
END;
$$;

CREATE TRIGGER eventsourcery_audit_log_no_change
    BEFORE UPDATE OR DELETE ON eventsourcery_audit_log
    FOR EACH ROW EXECUTE FUNCTION eventsourcery_audit_log_append_only();

CREATE TRIGGER eventsourcery_audit_log_no_truncate
    BEFORE TRUNCATE ON eventsourcery_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION eventsourcery_audit_log_append_only();
