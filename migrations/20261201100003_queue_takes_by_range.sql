-- Queue takes that no statistics can turn quadratic, and queue vacuums
-- that never lock the queue's writers out (issue 16).
--
-- Queue tables keep their emptied pages: truncating them takes an
-- exclusive lock that every writer waits for (Timeout:VacuumTruncate among
-- the first deliveries' waits, every delivery's commit writes the inbox),
-- and a queue fills them again within seconds. The service's own vacuums
-- say TRUNCATE false (src/store/queues.rs); this is autovacuum's.
ALTER TABLE event_inbox SET (vacuum_truncate = false);
ALTER TABLE webhook_sends SET (vacuum_truncate = false);
ALTER TABLE facet_changes SET (vacuum_truncate = false);
--
-- Replaces: facet_fold (20261130150001_profile_facets.sql), with one
-- change: the rows folded are the range from the lowest to the highest of
-- the first `max_rows` ids (one folder at a time, under the advisory lock,
-- so the range holds exactly those rows), instead of `id IN (subquery with
-- LIMIT)`. With statistics taken while the queue was empty (its taker
-- vacuums it, see src/store/queues.rs) the planner may re-run such a
-- subquery for every queued row: a fold of 211,860 queued changes ran for
-- over a minute in the bench. The event sequencer's batch had the same
-- shape and changed the same way (src/store/sequencer.rs).

CREATE OR REPLACE FUNCTION facet_fold(max_rows integer, wait boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n        integer;
    removals boolean;
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('facet_fold', 0));
    ELSIF NOT pg_try_advisory_xact_lock(hashtextextended('facet_fold', 0)) THEN
        RETURN 0;
    END IF;
    WITH first AS (SELECT id FROM facet_changes ORDER BY id LIMIT max_rows),
    taken AS (
        DELETE FROM facet_changes
         WHERE id BETWEEN (SELECT min(id) FROM first) AND (SELECT max(id) FROM first)
        RETURNING field, value_lower, spelling, sign
    ), totals AS (
        INSERT INTO facet_totals AS t (field, value_lower, count)
        SELECT field, value_lower, sum(sign) FROM taken GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (field, value_lower) DO UPDATE SET count = t.count + EXCLUDED.count
    ), spellings AS (
        INSERT INTO facet_spellings AS s (field, value_lower, spelling, count)
        SELECT field, value_lower, spelling, sum(sign) FROM taken GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (field, value_lower, spelling) DO UPDATE SET count = s.count + EXCLUDED.count
    )
    SELECT count(*), coalesce(bool_or(sign < 0), false) INTO n, removals FROM taken;
    IF removals THEN
        DELETE FROM facet_totals WHERE count <= 0;
        DELETE FROM facet_spellings WHERE count <= 0;
    END IF;
    RETURN n;
END
$$;
