-- Search and facet counts at a million profiles (issue 17).
--
-- Replaces: facet_fold (migration facet_changes_queue), the trigger
--   functions profiles_facet_counts_insert / _delete / _update.
-- Drops: facet_pairs (pair counts grow with the square of a profile's
--   values), facet_counts_add, profile_facet_values (the SQL copy of the
--   facet extraction), the GIN indexes on profiles.*_facets.
-- Adds: profile_facets (one row per profile, field and case-folded value,
--   in the keyset order of the profile list), profile_facet_rows.
--
-- The one facet extraction is now src/facets.rs (`Facets::as_written`): the
-- service stores its output in profiles.*_facets (values as the result
-- spells them, one spelling per case-folded value), and everything below
-- derives from those arrays, never from the JSON.

-- Count what is still queued while the queue has its old shape.
SELECT facet_fold(2147483647, true);

DROP TRIGGER profiles_facet_counts_insert ON profiles;
DROP TRIGGER profiles_facet_counts_delete ON profiles;
DROP TRIGGER profiles_facet_counts_update ON profiles;

-- Stored profiles held lowercased arrays; rewrite them as spelled (by the
-- SQL extraction, one last time) so that spellings come from the arrays.
UPDATE profiles p
   SET interest_facets  = COALESCE(v.interest, '{}'),
       category_facets  = COALESCE(v.category, '{}'),
       brand_facets     = COALESCE(v.brand, '{}'),
       archetype_facets = COALESCE(v.archetype, '{}'),
       industry_facets  = COALESCE(v.industry, '{}')
  FROM (SELECT q.id,
               array_agg(f.spelling) FILTER (WHERE f.field = 'interest') AS interest,
               array_agg(f.spelling) FILTER (WHERE f.field = 'category') AS category,
               array_agg(f.spelling) FILTER (WHERE f.field = 'brand') AS brand,
               array_agg(f.spelling) FILTER (WHERE f.field = 'archetype') AS archetype,
               array_agg(f.spelling) FILTER (WHERE f.field = 'industry') AS industry
          FROM profiles q, profile_facet_values(q.result) f
         GROUP BY q.id) v
 WHERE v.id = p.id;

DROP TABLE facet_pairs;
DROP FUNCTION facet_counts_add(jsonb[], integer);
DROP FUNCTION profile_facet_values(jsonb);
DROP INDEX profiles_interest, profiles_category, profiles_brand, profiles_archetype,
           profiles_industry;

-- The facet values of one profile's arrays: field, case-folded value and
-- the spelling (the first one when two fold to the same value).
CREATE FUNCTION profile_facet_rows(interest text[], category text[], brand text[],
                                   archetype text[], industry text[])
RETURNS TABLE (field text, value_lower text, spelling text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT ON (v.field, lower(v.spelling)) v.field, lower(v.spelling), v.spelling
      FROM (SELECT 'interest' AS field, x AS spelling, n FROM unnest(interest) WITH ORDINALITY u(x, n)
            UNION ALL SELECT 'category', x, n FROM unnest(category) WITH ORDINALITY u(x, n)
            UNION ALL SELECT 'brand', x, n FROM unnest(brand) WITH ORDINALITY u(x, n)
            UNION ALL SELECT 'archetype', x, n FROM unnest(archetype) WITH ORDINALITY u(x, n)
            UNION ALL SELECT 'industry', x, n FROM unnest(industry) WITH ORDINALITY u(x, n)) v
     ORDER BY v.field, lower(v.spelling), v.n
$$;

-- Postings of the profile search: for each facet value, its profiles in
-- the order of the profile list, so that one backward index walk returns a
-- page whatever the value's frequency, and the other filters of a search
-- are index probes on the whole key. Kept by the triggers below in the
-- transaction that writes the profile. The key is a unique index, not a
-- primary key, so that `generate` can drop and rebuild it around a bulk
-- load (bench/sql/profiles.sql).
CREATE TABLE profile_facets (
    field       text NOT NULL,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL,
    profile_id  uuid NOT NULL
);
CREATE UNIQUE INDEX profile_facets_key ON profile_facets (field, value, created_at, profile_id);

-- Facet count changes still wait for `facet_fold` (kept off the ingestion
-- path, see migration facet_changes_queue), now one narrow row per value
-- instead of a copy of the result.
DROP TABLE facet_changes;
CREATE TABLE facet_changes (
    id          bigserial PRIMARY KEY,
    field       text NOT NULL,
    value_lower text NOT NULL,
    spelling    text NOT NULL,
    sign        smallint NOT NULL CHECK (sign IN (-1, 1))
);

INSERT INTO profile_facets (field, value, created_at, profile_id)
SELECT f.field, f.value_lower, p.created_at, p.id
  FROM profiles p, profile_facet_rows(p.interest_facets, p.category_facets, p.brand_facets,
                                      p.archetype_facets, p.industry_facets) f;

-- Statement-level: a bulk insert or the erasure of many profiles is one
-- set-based pass each.
CREATE OR REPLACE FUNCTION profiles_facet_counts_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH v AS (
        SELECT n.id, n.created_at, f.*
          FROM new_rows n, profile_facet_rows(n.interest_facets, n.category_facets,
               n.brand_facets, n.archetype_facets, n.industry_facets) f
    ), postings AS (
        INSERT INTO profile_facets (field, value, created_at, profile_id)
        SELECT field, value_lower, created_at, id FROM v
    )
    INSERT INTO facet_changes (field, value_lower, spelling, sign)
    SELECT field, value_lower, spelling, 1 FROM v;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION profiles_facet_counts_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH v AS (
        SELECT o.id, o.created_at, f.*
          FROM old_rows o, profile_facet_rows(o.interest_facets, o.category_facets,
               o.brand_facets, o.archetype_facets, o.industry_facets) f
    ), postings AS (
        DELETE FROM profile_facets t USING v
         WHERE (t.field, t.value, t.created_at, t.profile_id)
             = (v.field, v.value_lower, v.created_at, v.id)
    )
    INSERT INTO facet_changes (field, value_lower, spelling, sign)
    SELECT field, value_lower, spelling, -1 FROM v;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION profiles_facet_counts_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    moved uuid[];
BEGIN
    -- Only rows whose facet values (or time) changed move anything, and
    -- most updates (`change`, say) change none: then nothing is done.
    moved := ARRAY(
        SELECT id FROM old_rows o JOIN new_rows n USING (id)
         WHERE (o.interest_facets, o.category_facets, o.brand_facets, o.archetype_facets,
                o.industry_facets, o.created_at)
               IS DISTINCT FROM (n.interest_facets, n.category_facets, n.brand_facets,
                                 n.archetype_facets, n.industry_facets, n.created_at));
    IF cardinality(moved) = 0 THEN
        RETURN NULL;
    END IF;
    -- All old values go, then all new ones come (two statements: a value
    -- kept must be deleted before it is inserted again).
    WITH v AS (
        SELECT o.id, o.created_at, f.*
          FROM old_rows o,
               profile_facet_rows(o.interest_facets, o.category_facets, o.brand_facets,
                                  o.archetype_facets, o.industry_facets) f
         WHERE o.id = ANY (moved)
    ), postings AS (
        DELETE FROM profile_facets t USING v
         WHERE (t.field, t.value, t.created_at, t.profile_id)
             = (v.field, v.value_lower, v.created_at, v.id)
    )
    INSERT INTO facet_changes (field, value_lower, spelling, sign)
    SELECT field, value_lower, spelling, -1 FROM v;
    WITH v AS (
        SELECT n.id, n.created_at, f.*
          FROM new_rows n,
               profile_facet_rows(n.interest_facets, n.category_facets, n.brand_facets,
                                  n.archetype_facets, n.industry_facets) f
         WHERE n.id = ANY (moved)
    ), postings AS (
        INSERT INTO profile_facets (field, value, created_at, profile_id)
        SELECT field, value_lower, created_at, id FROM v
    )
    INSERT INTO facet_changes (field, value_lower, spelling, sign)
    SELECT field, value_lower, spelling, 1 FROM v;
    RETURN NULL;
END
$$;

CREATE TRIGGER profiles_facet_counts_insert AFTER INSERT ON profiles
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profiles_facet_counts_insert();
CREATE TRIGGER profiles_facet_counts_delete AFTER DELETE ON profiles
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profiles_facet_counts_delete();
CREATE TRIGGER profiles_facet_counts_update AFTER UPDATE ON profiles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profiles_facet_counts_update();

-- Adds up to `max_rows` queued value changes to the counts and returns how
-- many. One session folds at a time (as before): with `wait` a caller
-- queues for its turn (a facets read, which must see every committed
-- profile), without it gives up at once (the maintenance loop). Counter
-- rows are upserted in key order, totals before spellings, so concurrent
-- folds could not deadlock even without the lock.
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
    WITH taken AS (
        DELETE FROM facet_changes
         WHERE id IN (SELECT id FROM facet_changes ORDER BY id LIMIT max_rows)
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
