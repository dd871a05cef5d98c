-- Facet counts off the ingestion path. Upserting every facet value, its
-- spelling and every value pair of a profile in the delivery's own
-- transaction made each delivery update hundreds of hot counter rows that
-- concurrent deliveries also lock. Profile changes are now only queued (one
-- row per profile); `facet_fold` adds them to the counts in id order, one
-- folder at a time, from the maintenance loop and before each facets read.
CREATE TABLE facet_changes (
    id     bigserial PRIMARY KEY,
    result jsonb NOT NULL,
    sign   smallint NOT NULL CHECK (sign IN (-1, 1))
);

CREATE OR REPLACE FUNCTION profiles_facet_counts_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO facet_changes (result, sign) SELECT result, 1 FROM new_rows;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION profiles_facet_counts_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO facet_changes (result, sign) SELECT result, -1 FROM old_rows;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION profiles_facet_counts_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only rows whose result changed (a redaction, say) move the counts.
    INSERT INTO facet_changes (result, sign)
    SELECT o.result, -1 FROM old_rows o JOIN new_rows n USING (id)
     WHERE o.result IS DISTINCT FROM n.result
    UNION ALL
    SELECT n.result, 1 FROM old_rows o JOIN new_rows n USING (id)
     WHERE o.result IS DISTINCT FROM n.result;
    RETURN NULL;
END
$$;

-- Adds up to `max_rows` queued changes to the counts and returns how many.
-- One session folds at a time, which keeps the order (a profile's removal
-- is never counted before its addition): with `wait` a caller queues for
-- its turn (a facets read, which must see every committed profile),
-- without it gives up at once (the maintenance loop).
CREATE FUNCTION facet_fold(max_rows integer, wait boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    adds jsonb[];
    subs jsonb[];
    n    integer;
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('facet_fold', 0));
    ELSIF NOT pg_try_advisory_xact_lock(hashtextextended('facet_fold', 0)) THEN
        RETURN 0;
    END IF;
    WITH taken AS (
        DELETE FROM facet_changes
         WHERE id IN (SELECT id FROM facet_changes ORDER BY id LIMIT max_rows)
        RETURNING result, sign
    )
    SELECT array_agg(result) FILTER (WHERE sign > 0),
           array_agg(result) FILTER (WHERE sign < 0),
           count(*)
      INTO adds, subs, n
      FROM taken;
    PERFORM facet_counts_add(coalesce(adds, '{}'), 1);
    PERFORM facet_counts_add(coalesce(subs, '{}'), -1);
    RETURN n;
END
$$;
