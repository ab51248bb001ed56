-- The PII-free record, in the personal data store itself, that a subject was erased: every key
-- version up to `last_key_version` is destroyed. Writes and erasures of a subject take turns on
-- an advisory lock (writes share it, an erasure takes it alone), and a write reads the record
-- once it holds the lock: so a write racing an erasure either commits first, and the erasure
-- deletes what it wrote, or sees the record and stores nothing for the subject. Before this, a
-- value written just after the erasure deleted the subject's data stayed behind.
CREATE TABLE eventsourcery_erased_subjects (
    subject           UUID    PRIMARY KEY,
    last_key_version  BIGINT  NOT NULL CHECK (last_key_version >= 0)
);

-- The advisory lock key of a subject in this store (another key than the key store's, should
-- the two share a database).
CREATE FUNCTION eventsourcery_personal_subject_lock(subject UUID) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtextextended('eventsourcery personal ' || subject::text, 0) $$;

-- Blind-index entries name the version of the index key that made them, so the index key can
-- be rotated: a rotation raises the floor below which no entry is accepted any more, rebuilds
-- the index under the new key from the stored values, and deletes the entries below the floor.
-- Entries made before versions existed were made with the first key, version 0.
ALTER TABLE eventsourcery_blind_index
    ADD COLUMN key_version BIGINT NOT NULL DEFAULT 0 CHECK (key_version >= 0);

CREATE TABLE eventsourcery_index_floor (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    floor   BIGINT  NOT NULL CHECK (floor >= 0)
);

INSERT INTO eventsourcery_index_floor (id, floor) VALUES (1, 0);

-- Stores the records and index entries of every subject not erased through a key version at
-- least as high as its records' (a subject with only index entries: not erased at all);
-- returns the refused subjects, of which nothing is stored. An index entry below the index
-- floor fails the whole call with SQLSTATE ES001 (the writer read the index keys before a
-- rotation began, and writes again with the new one).
CREATE FUNCTION eventsourcery_put_personal(
    p_references UUID[], p_subjects UUID[], p_fields TEXT[], p_ciphertexts BYTEA[],
    p_versions BIGINT[], p_created_at_ns BIGINT, p_hashes BYTEA[], p_indexed UUID[],
    p_index_versions BIGINT[]
) RETURNS SETOF UUID LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_refused UUID[];
    v_floor BIGINT;
BEGIN
    -- Each statement below must see what committed before the locks were granted: only READ
    -- COMMITTED takes a snapshot per statement.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'eventsourcery: the personal data store needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    END IF;
    IF cardinality(p_hashes) > 0 THEN
        -- Shared with other writes; a rotation raising the floor waits for them, and they for it.
        SELECT f.floor INTO v_floor FROM eventsourcery_index_floor f WHERE f.id = 1 FOR SHARE;
        IF EXISTS (SELECT 1 FROM unnest(p_index_versions) AS v WHERE v < v_floor) THEN
            RAISE EXCEPTION 'eventsourcery: a blind-index entry below the index floor %', v_floor
                USING ERRCODE = 'ES001';
        END IF;
    END IF;
    -- In subject order, so that two writes cannot deadlock.
    PERFORM pg_advisory_xact_lock_shared(eventsourcery_personal_subject_lock(s))
    FROM (SELECT DISTINCT s FROM unnest(p_subjects || p_indexed) AS s) AS d ORDER BY s;
    -- Statements of their own, so snapshots of their own, taken with the locks held.
    SELECT COALESCE(array_agg(e.subject), '{}') INTO v_refused
    FROM eventsourcery_erased_subjects e
    WHERE e.subject = ANY (p_subjects || p_indexed)
      AND COALESCE((SELECT min(r.version) FROM unnest(p_subjects, p_versions) AS r(subject, version)
                    WHERE r.subject = e.subject), 0) <= e.last_key_version;
    INSERT INTO eventsourcery_personal_data (reference, subject, field, ciphertext, created_at_ns)
    SELECT r.reference, r.subject, r.field, r.ciphertext, p_created_at_ns
    FROM unnest(p_references, p_subjects, p_fields, p_ciphertexts)
        AS r(reference, subject, field, ciphertext)
    WHERE r.subject <> ALL (v_refused)
    ORDER BY r.reference
    ON CONFLICT (reference) DO UPDATE SET
        subject = excluded.subject,
        field = excluded.field,
        ciphertext = excluded.ciphertext;
    INSERT INTO eventsourcery_blind_index (hash, subject, key_version)
    SELECT i.hash, i.subject, i.key_version
    FROM unnest(p_hashes, p_indexed, p_index_versions) AS i(hash, subject, key_version)
    WHERE i.subject <> ALL (v_refused)
    ORDER BY i.hash, i.subject
    ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT unnest(v_refused);
END
$$;

-- Planned once per connection (see the key store's migration 0003: array parameters would be
-- planned again on every call).
ALTER FUNCTION eventsourcery_put_personal(UUID[], UUID[], TEXT[], BYTEA[], BIGINT[], BIGINT, BYTEA[], UUID[], BIGINT[])
    SET plan_cache_mode = force_generic_plan;

-- Erases a subject: alone on its lock, records the destroyed versions (keeping the highest) and
-- deletes its values and index entries; returns how many values went.
CREATE FUNCTION eventsourcery_erase_personal(p_subject UUID, p_last_key_version BIGINT)
RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_deleted BIGINT;
BEGIN
    -- Each statement below must see what committed before the lock was granted: only READ
    -- COMMITTED takes a snapshot per statement.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'eventsourcery: the personal data store needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(eventsourcery_personal_subject_lock(p_subject));
    INSERT INTO eventsourcery_erased_subjects AS e (subject, last_key_version)
    VALUES (p_subject, p_last_key_version)
    ON CONFLICT (subject) DO UPDATE
        SET last_key_version = GREATEST(e.last_key_version, excluded.last_key_version);
    DELETE FROM eventsourcery_personal_data d WHERE d.subject = p_subject;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    DELETE FROM eventsourcery_blind_index i WHERE i.subject = p_subject;
    RETURN v_deleted;
END
$$;
