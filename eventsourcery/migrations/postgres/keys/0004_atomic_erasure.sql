-- An erasure in one step that no claim can come between: under the subject's advisory lock
-- (taken alone; claims share it), it decides the last destroyed key version from the key it
-- finds, records the erasure, destroys the key and moves the erasure epoch on. Before this the
-- version was read before the lock was taken, so a key claimed in between was destroyed but not
-- counted, and a re-enrolled subject could be given the same version again.

-- A counter every erasure moves on in the transaction that destroys the key: caches of
-- decrypted state in any process compare it with the value they read before decrypting.
CREATE TABLE eventsourcery_erasure_epoch (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    epoch   BIGINT  NOT NULL
);

INSERT INTO eventsourcery_erasure_epoch (id, epoch) VALUES (1, 0);

-- Returns the subject's erasure record. The last version covers the current key and every
-- version a racing writer could be about to claim: 1 for a subject never erased, one above the
-- old versions for a re-enrolled one (see `Erasure::next_last_key_version`).
CREATE FUNCTION eventsourcery_erase_subject(p_subject UUID, p_erased_at_ns BIGINT, p_reason TEXT)
RETURNS SETOF eventsourcery_erasures LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_current BIGINT;
    v_previous eventsourcery_erasures%ROWTYPE;
    v_last BIGINT;
BEGIN
    -- Each statement below must see what committed before the lock was granted: only READ
    -- COMMITTED takes a snapshot per statement.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'eventsourcery: the key store needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(eventsourcery_subject_lock(p_subject));
    -- Statements of their own, so snapshots of their own, taken with the lock held.
    SELECT d.version INTO v_current FROM eventsourcery_data_keys d WHERE d.subject = p_subject;
    SELECT * INTO v_previous FROM eventsourcery_erasures e WHERE e.subject = p_subject;
    IF NOT FOUND THEN
        v_last := GREATEST(COALESCE(v_current, 0), 1);
        INSERT INTO eventsourcery_erasures
            (subject, erased_at_ns, reason, last_key_version, re_enrolled)
        VALUES (p_subject, p_erased_at_ns, p_reason, v_last, FALSE);
    ELSIF v_previous.re_enrolled THEN
        v_last := GREATEST(COALESCE(v_current, 0), v_previous.last_key_version + 1);
        UPDATE eventsourcery_erasures e
        SET erased_at_ns = p_erased_at_ns, reason = p_reason, last_key_version = v_last,
            re_enrolled = FALSE
        WHERE e.subject = p_subject;
    ELSE
        -- Already erased: the first record stays.
        v_last := GREATEST(COALESCE(v_current, 0), v_previous.last_key_version);
        UPDATE eventsourcery_erasures e SET last_key_version = v_last
        WHERE e.subject = p_subject;
    END IF;
    DELETE FROM eventsourcery_data_keys d WHERE d.subject = p_subject;
    UPDATE eventsourcery_erasure_epoch SET epoch = epoch + 1 WHERE id = 1;
    RETURN QUERY SELECT * FROM eventsourcery_erasures e WHERE e.subject = p_subject;
END
$$;

-- The claim, with the same isolation guard (it reads the erasure records after taking the
-- locks, which only READ COMMITTED makes safe).
CREATE OR REPLACE FUNCTION eventsourcery_claim_keys(
    p_subjects UUID[], p_versions BIGINT[], p_wrapped BYTEA[], p_master_key_ids TEXT[],
    p_created_at_ns BIGINT
) RETURNS SETOF UUID LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- Each statement below must see what committed before the lock was granted: only READ
    -- COMMITTED takes a snapshot per statement.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'eventsourcery: the key store needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    END IF;
    -- In subject order, so that two claims cannot deadlock.
    PERFORM pg_advisory_xact_lock_shared(eventsourcery_subject_lock(s))
    FROM unnest(p_subjects) AS s ORDER BY s;
    -- A statement of its own, so a snapshot of its own, taken with the locks held.
    RETURN QUERY
    INSERT INTO eventsourcery_data_keys AS d (subject, version, wrapped, master_key_id, created_at_ns)
    SELECT k.subject, k.version, k.wrapped, k.master_key_id, p_created_at_ns
    FROM unnest(p_subjects, p_versions, p_wrapped, p_master_key_ids)
        AS k(subject, version, wrapped, master_key_id)
    WHERE NOT EXISTS (
        SELECT 1 FROM eventsourcery_erasures e
        WHERE e.subject = k.subject AND (NOT e.re_enrolled OR e.last_key_version >= k.version)
    )
    ORDER BY k.subject
    ON CONFLICT (subject) DO NOTHING
    RETURNING d.subject;
END
$$;
