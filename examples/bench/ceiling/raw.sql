-- The bench's raw baseline: one single-row insert of an equivalent event row per transaction.
\set n random(1, 1000000000000)
INSERT INTO raw_events (event_id, stream_id, stream_version, event_name, schema_version, payload, metadata, recorded_at_ns) VALUES (gen_random_uuid(), 'c-' || :n, 1, 'incremented', 1, '{"by":1}', '{}', 1);
