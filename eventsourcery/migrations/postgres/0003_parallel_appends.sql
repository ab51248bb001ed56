-- Appends commit in parallel: positions no longer come from a row every append locks until it
-- commits (eventsourcery_log_head), but from a sequence, handed out together with the
-- transaction id that readers of the global log compare with the oldest running transaction.
-- See `PostgresStore` for why a reader then never skips an event that commits late.

-- Every existing event was committed before this migration; id 1 is older than any running
-- transaction, so readers take them at once. New events get their transaction's id.
ALTER TABLE eventsourcery_events ADD COLUMN transaction_id XID8 NOT NULL DEFAULT '1';
ALTER TABLE eventsourcery_events ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();

-- Global positions, continuing after the last one the counter handed out.
CREATE SEQUENCE eventsourcery_position_seq AS BIGINT MINVALUE 1;
SELECT setval('eventsourcery_position_seq', GREATEST(last_position, 1), last_position > 0)
FROM eventsourcery_log_head;

DROP TABLE eventsourcery_log_head;

-- Allocates `count` consecutive positions and returns the first, for a transaction that has not
-- written anything yet. Gives the transaction its id in the same critical section, so that
-- transaction ids and positions are handed out in the same order: a reader may then take every
-- event whose transaction is older than the oldest one still running.
CREATE FUNCTION eventsourcery_allocate_positions(count BIGINT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    first BIGINT;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'eventsourcery_allocate_positions must run before the transaction writes';
    END IF;
    -- A block with an EXCEPTION clause is a subtransaction. The advisory lock taken in it is
    -- released when the deliberate error below rolls it back, while the transaction id (the
    -- top-level transaction's) and the sequence values (never rolled back) stay: the lock
    -- covers exactly the id assignment and the allocation, not the rest of the transaction.
    -- A cancellation inside aborts the whole transaction, which releases the lock too.
    BEGIN
        PERFORM pg_advisory_xact_lock(7311157980214357875); -- 'evsrcpos'
        PERFORM pg_current_xact_id();
        first := nextval('eventsourcery_position_seq');
        IF count > 1 THEN
            PERFORM setval('eventsourcery_position_seq', first + count - 1);
        END IF;
        RAISE SQLSTATE 'ES001';
    EXCEPTION WHEN SQLSTATE 'ES001' THEN
        NULL;
    END;
    RETURN first;
END
$$;
