-- A subject's new data keys and its erasure take turns on an advisory lock: claims share it, an
-- erasure takes it alone. An erasure so waits for the claims under way (whose keys the vault
-- deletes right after recording it), and a claim that comes after it reads its record from a
-- statement that starts once the lock is granted. Without this, a claiming statement whose
-- snapshot predates the erasure could store a key after the erasure deleted the keys.

-- The advisory lock key of a subject.
CREATE FUNCTION eventsourcery_subject_lock(subject UUID) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtextextended('eventsourcery subject ' || subject::text, 0) $$;

-- Stores each key whose subject has none and may take it (not erased, or re-enrolled and above
-- its old versions); returns the subjects whose key was stored.
CREATE FUNCTION eventsourcery_claim_keys(
    p_subjects UUID[], p_versions BIGINT[], p_wrapped BYTEA[], p_master_key_ids TEXT[],
    p_created_at_ns BIGINT
) RETURNS SETOF UUID LANGUAGE plpgsql VOLATILE AS $$
BEGIN
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
