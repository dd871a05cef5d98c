-- Idempotency-Key records of POST /v1/lookups/batch. Only the shape of the
-- first answer is kept (per item: status and lookup id, or the problem), never
-- the subjects themselves, so erasure leaves nothing here in clear text; a
-- replay reads the lookups again.
CREATE TABLE batch_idempotency_keys (
    key               text PRIMARY KEY,
    request_sha256    text NOT NULL,
    answers           jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Facet values of a stored result, as the profile filters define them
-- (src/facets.rs), one row per profile, field and case-folded value, with the
-- spelling the result used (the first one when a result spells a value in
-- several ways).
CREATE FUNCTION profile_facet_values(result jsonb)
RETURNS TABLE (field text, value_lower text, spelling text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT ON (v.field, lower(v.spelling)) v.field, lower(v.spelling), v.spelling
    FROM (
        SELECT 'category' AS field, c.key AS spelling
        FROM jsonb_each(CASE WHEN jsonb_typeof(result -> 'interest_graph') = 'object'
                             THEN result -> 'interest_graph' ELSE '{}'::jsonb END) c
        UNION ALL
        SELECT 'interest', e.value #>> '{}'
        FROM jsonb_each(CASE WHEN jsonb_typeof(result -> 'interest_graph') = 'object'
                             THEN result -> 'interest_graph' ELSE '{}'::jsonb END) c,
             jsonb_array_elements(CASE WHEN jsonb_typeof(c.value -> 'interests') = 'array'
                                       THEN c.value -> 'interests' ELSE '[]'::jsonb END) i,
             jsonb_each(CASE WHEN jsonb_typeof(i.value) = 'object'
                             THEN i.value ELSE '{}'::jsonb END) e
        WHERE e.key <> 'supporting_accounts' AND jsonb_typeof(e.value) = 'string'
        UNION ALL
        SELECT 'brand', b #>> '{}'
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(result -> 'brand_affinities') = 'array'
                                       THEN result -> 'brand_affinities' ELSE '[]'::jsonb END) a,
             jsonb_array_elements(CASE WHEN jsonb_typeof(a.value -> 'brands') = 'array'
                                       THEN a.value -> 'brands' ELSE '[]'::jsonb END) b
        WHERE jsonb_typeof(b) = 'string'
        UNION ALL
        SELECT 'archetype', x #>> '{}'
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(result #> '{core_profile,archetypes}') = 'array'
                                       THEN result #> '{core_profile,archetypes}' ELSE '[]'::jsonb END) x
        WHERE jsonb_typeof(x) = 'string'
        UNION ALL
        SELECT 'industry', x #>> '{}'
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(result #> '{professional_ecosystem,industry_focus}') = 'array'
                                       THEN result #> '{professional_ecosystem,industry_focus}' ELSE '[]'::jsonb END) x
        WHERE jsonb_typeof(x) = 'string'
    ) v
    ORDER BY v.field, lower(v.spelling), v.spelling
$$;

-- How many profiles carry each facet value (case folded): GET /v1/facets
-- without filters reads the top of this instead of scanning every profile.
CREATE TABLE facet_totals (
    field             text NOT NULL,
    value_lower       text NOT NULL,
    count             bigint NOT NULL,
    PRIMARY KEY (field, value_lower)
);
CREATE INDEX facet_totals_top ON facet_totals (field, count DESC, value_lower);

-- How many profiles spell each value each way: the most common spelling is
-- the one shown.
CREATE TABLE facet_spellings (
    field             text NOT NULL,
    value_lower       text NOT NULL,
    spelling          text NOT NULL,
    count             bigint NOT NULL,
    PRIMARY KEY (field, value_lower, spelling)
);
CREATE INDEX facet_spellings_top ON facet_spellings (field, value_lower, count DESC, spelling);

-- Adds `sign` (1 or -1) times the facet values of the given results to the
-- counts. Counter rows are upserted in key order, totals before spellings,
-- so that concurrent writers lock them in one global order and cannot
-- deadlock on each other.
CREATE FUNCTION facet_counts_add(results jsonb[], sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO facet_totals AS t (field, value_lower, count)
    SELECT f.field, f.value_lower, sign * count(*)
    FROM unnest(results) r, profile_facet_values(r) f
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (field, value_lower) DO UPDATE SET count = t.count + EXCLUDED.count;
    INSERT INTO facet_spellings AS s (field, value_lower, spelling, count)
    SELECT f.field, f.value_lower, f.spelling, sign * count(*)
    FROM unnest(results) r, profile_facet_values(r) f
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (field, value_lower, spelling) DO UPDATE SET count = s.count + EXCLUDED.count;
    IF sign < 0 THEN
        DELETE FROM facet_totals WHERE count <= 0 AND (field, value_lower) IN
            (SELECT f.field, f.value_lower FROM unnest(results) r, profile_facet_values(r) f);
        DELETE FROM facet_spellings WHERE count <= 0 AND (field, value_lower, spelling) IN
            (SELECT f.field, f.value_lower, f.spelling
             FROM unnest(results) r, profile_facet_values(r) f);
    END IF;
END
$$;

-- Statement-level triggers: a bulk insert or an erasure of many profiles
-- updates each counter row once.
CREATE FUNCTION profiles_facet_counts_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM facet_counts_add(ARRAY(SELECT result FROM new_rows), 1);
    RETURN NULL;
END
$$;

CREATE FUNCTION profiles_facet_counts_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM facet_counts_add(ARRAY(SELECT result FROM old_rows), -1);
    RETURN NULL;
END
$$;

CREATE FUNCTION profiles_facet_counts_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only rows whose result changed (a redaction, say) move the counts.
    PERFORM facet_counts_add(ARRAY(SELECT o.result FROM old_rows o JOIN new_rows n USING (id)
                                   WHERE o.result IS DISTINCT FROM n.result), -1);
    PERFORM facet_counts_add(ARRAY(SELECT n.result FROM old_rows o JOIN new_rows n USING (id)
                                   WHERE o.result IS DISTINCT FROM n.result), 1);
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

-- Profiles stored before this migration.
SELECT facet_counts_add(ARRAY(SELECT result FROM profiles), 1);
