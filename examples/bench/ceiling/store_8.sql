-- The PostgreSQL store's group statement (eventsourcery/src/store/postgres/group.rs) for a
-- group of 8 one-event commands on new streams, each with its command log entry; arrays
-- are literals here, parameters in the store.
\set n0 random(1, 1000000000000)
\set n1 random(1, 1000000000000)
\set n2 random(1, 1000000000000)
\set n3 random(1, 1000000000000)
\set n4 random(1, 1000000000000)
\set n5 random(1, 1000000000000)
\set n6 random(1, 1000000000000)
\set n7 random(1, 1000000000000)
WITH current AS (
     SELECT s.ord,
            (SELECT COALESCE(MAX(e.stream_version), 0) FROM eventsourcery_events e
             WHERE e.stream_id = s.stream_id) AS actual,
            s.expected
     FROM UNNEST((SELECT ARRAY['c-' || :n0,'c-' || :n1,'c-' || :n2,'c-' || :n3,'c-' || :n4,'c-' || :n5,'c-' || :n6,'c-' || :n7]), ARRAY[0,0,0,0,0,0,0,0]::bigint[]) WITH ORDINALITY AS s(stream_id, expected, ord)
 ), verdict AS (
     SELECT COALESCE(bool_and(actual = expected), TRUE) AS ok FROM current
 ), allocated AS (
     SELECT eventsourcery_allocate_positions(8) AS first
     FROM verdict WHERE verdict.ok AND 8 > 0
 ), commands AS (
     INSERT INTO eventsourcery_commands (command_id, name, payload, metadata,
         outcome, outcome_detail, recorded_at_ns)
     SELECT c.command_id, c.name, c.payload::jsonb, c.metadata::jsonb, c.outcome,
            c.outcome_detail::jsonb, c.recorded_at_ns
     FROM verdict LEFT JOIN allocated ON TRUE,
          UNNEST((SELECT ARRAY[gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid()]), ARRAY['increment','increment','increment','increment','increment','increment','increment','increment'], ARRAY['{"counter":"c-1","by":1}','{"counter":"c-1","by":1}','{"counter":"c-1","by":1}','{"counter":"c-1","by":1}','{"counter":"c-1","by":1}','{"counter":"c-1","by":1}','{"counter":"c-1","by":1}','{"counter":"c-1","by":1}'], ARRAY['{"correlation_id":"x"}','{"correlation_id":"x"}','{"correlation_id":"x"}','{"correlation_id":"x"}','{"correlation_id":"x"}','{"correlation_id":"x"}','{"correlation_id":"x"}','{"correlation_id":"x"}'], ARRAY['succeeded','succeeded','succeeded','succeeded','succeeded','succeeded','succeeded','succeeded'],
                 ARRAY['{"outcome":"succeeded"}','{"outcome":"succeeded"}','{"outcome":"succeeded"}','{"outcome":"succeeded"}','{"outcome":"succeeded"}','{"outcome":"succeeded"}','{"outcome":"succeeded"}','{"outcome":"succeeded"}'], ARRAY[1,1,1,1,1,1,1,1]::bigint[])
          WITH ORDINALITY AS c(command_id, name, payload, metadata, outcome,
                               outcome_detail, recorded_at_ns, ord)
     WHERE verdict.ok AND (8 = 0 OR allocated.first IS NOT NULL)
     ORDER BY c.ord
     RETURNING 1
 ), inserted AS (
     INSERT INTO eventsourcery_events (position, event_id, stream_id, stream_version,
         event_name, schema_version, payload, metadata, recorded_at_ns)
     SELECT allocated.first + e.ord - 1, e.event_id, e.stream_id, e.stream_version,
            e.event_name, e.schema_version, e.payload::jsonb, e.metadata::jsonb,
            e.recorded_at_ns
     FROM allocated,
          UNNEST((SELECT ARRAY[gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid()]), ARRAY['c-' || :n0,'c-' || :n1,'c-' || :n2,'c-' || :n3,'c-' || :n4,'c-' || :n5,'c-' || :n6,'c-' || :n7], ARRAY[1,1,1,1,1,1,1,1]::bigint[], ARRAY['incremented','incremented','incremented','incremented','incremented','incremented','incremented','incremented'], ARRAY[1,1,1,1,1,1,1,1]::bigint[],
                 ARRAY['{"by":1}','{"by":1}','{"by":1}','{"by":1}','{"by":1}','{"by":1}','{"by":1}','{"by":1}'], ARRAY['{}','{}','{}','{}','{}','{}','{}','{}'], ARRAY[1,1,1,1,1,1,1,1]::bigint[])
          WITH ORDINALITY AS e(event_id, stream_id, stream_version, event_name,
                               schema_version, payload, metadata, recorded_at_ns, ord)
     ORDER BY e.stream_id, e.stream_version
     RETURNING 1
 )
 SELECT (SELECT first FROM allocated), ARRAY(SELECT actual FROM current ORDER BY ord);
