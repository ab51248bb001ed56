-- The leanest statement that inserts 4 events on new streams: no version check, no position
-- lock (positions from a bare sequence), no command log. Not a correct append: a ceiling.
\set n0 random(1, 1000000000000)
\set n1 random(1, 1000000000000)
\set n2 random(1, 1000000000000)
\set n3 random(1, 1000000000000)
INSERT INTO eventsourcery_events (position, event_id, stream_id, stream_version,
    event_name, schema_version, payload, metadata, recorded_at_ns)
SELECT nextval('eventsourcery_position_seq') * 256 + e.ord, e.event_id, e.stream_id,
       e.stream_version, e.event_name, e.schema_version, e.payload::jsonb, e.metadata::jsonb,
       e.recorded_at_ns
FROM UNNEST(ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid()],
            ARRAY['c-' || :n0, 'c-' || :n1, 'c-' || :n2, 'c-' || :n3],
            ARRAY[1, 1, 1, 1]::bigint[], ARRAY['incremented', 'incremented', 'incremented', 'incremented'], ARRAY[1, 1, 1, 1]::bigint[],
            ARRAY['{"by":1}', '{"by":1}', '{"by":1}', '{"by":1}'], ARRAY['{}', '{}', '{}', '{}'], ARRAY[1, 1, 1, 1]::bigint[])
     WITH ORDINALITY AS e(event_id, stream_id, stream_version, event_name, schema_version,
                          payload, metadata, recorded_at_ns, ord);
