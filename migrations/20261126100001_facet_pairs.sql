-- Facet counts under one facet filter ("brands among people whose industry
-- is SaaS"): for every pair of facet values that occur in the same profile,
-- how many profiles carry both. GET /v1/facets with a single facet filter
-- reads the top of this instead of counting the matching profiles, which at
-- a million profiles may be hundreds of thousands.
CREATE TABLE facet_pairs (
    filter_field      text NOT NULL,
    filter_value      text NOT NULL,
    field             text NOT NULL,
    value_lower       text NOT NULL,
    count             bigint NOT NULL,
    PRIMARY KEY (filter_field, filter_value, field, value_lower)
);
CREATE INDEX facet_pairs_top
    ON facet_pairs (filter_field, filter_value, field, count DESC, value_lower);

-- As before, plus the pairs; counter rows are still upserted in key order,
-- table by table in one fixed order (totals, spellings, pairs), so that
-- concurrent writers cannot deadlock on each other.
CREATE OR REPLACE FUNCTION facet_counts_add(results jsonb[], sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(array_length(results, 1), 0) = 0 THEN
        RETURN;
    END IF;
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
    WITH v AS (
        SELECT r.n, f.field, f.value_lower
        FROM unnest(results) WITH ORDINALITY r(result, n), profile_facet_values(r.result) f
    )
    INSERT INTO facet_pairs AS p (filter_field, filter_value, field, value_lower, count)
    SELECT a.field, a.value_lower, b.field, b.value_lower, sign * count(*)
    FROM v a JOIN v b ON a.n = b.n
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (filter_field, filter_value, field, value_lower)
        DO UPDATE SET count = p.count + EXCLUDED.count;
    IF sign < 0 THEN
        DELETE FROM facet_totals WHERE count <= 0 AND (field, value_lower) IN
            (SELECT f.field, f.value_lower FROM unnest(results) r, profile_facet_values(r) f);
        DELETE FROM facet_spellings WHERE count <= 0 AND (field, value_lower, spelling) IN
            (SELECT f.field, f.value_lower, f.spelling
             FROM unnest(results) r, profile_facet_values(r) f);
        DELETE FROM facet_pairs WHERE count <= 0 AND (filter_field, filter_value) IN
            (SELECT f.field, f.value_lower FROM unnest(results) r, profile_facet_values(r) f);
    END IF;
END
$$;

-- Pairs of the profiles stored before this migration.
WITH v AS (
    SELECT p.id, f.field, f.value_lower
    FROM profiles p, profile_facet_values(p.result) f
)
INSERT INTO facet_pairs (filter_field, filter_value, field, value_lower, count)
SELECT a.field, a.value_lower, b.field, b.value_lower, count(*)
FROM v a JOIN v b ON a.id = b.id
GROUP BY 1, 2, 3, 4;
