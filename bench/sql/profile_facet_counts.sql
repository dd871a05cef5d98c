-- Facet counts of the profiles profiles.sql just generated (its temp table
-- `gen`, same transaction). The service's insert trigger would queue every
-- new profile for `facet_fold`, which adds them one batch at a time; for a
-- bulk load the same counts (totals, spellings, value pairs, from the
-- schema's own profile_facet_values) are added here in one set-based pass,
-- and the trigger is off meanwhile (DISABLE TRIGGER in profiles.sql).
-- Pair counts grow with the square of a profile's values: past a few
-- hundred thousand new profiles this pass takes longer than the whole
-- benchmark (about 2 minutes per 100,000 on 2 cores), so `generate` queues
-- larger loads for the service's own fold instead (or skips them with
-- --no-facet-counts, as bench.sh does: facets at that size not measured).
CREATE TEMP TABLE fv ON COMMIT DROP AS
SELECT g.profile_id AS id, f.field, f.value_lower, f.spelling
  FROM gen g JOIN profiles p ON p.id = g.profile_id, profile_facet_values(p.result) f;
INSERT INTO facet_totals AS t (field, value_lower, count)
SELECT field, value_lower, count(*) FROM fv GROUP BY 1, 2
ON CONFLICT (field, value_lower) DO UPDATE SET count = t.count + EXCLUDED.count;
INSERT INTO facet_spellings AS s (field, value_lower, spelling, count)
SELECT field, value_lower, spelling, count(*) FROM fv GROUP BY 1, 2, 3
ON CONFLICT (field, value_lower, spelling) DO UPDATE SET count = s.count + EXCLUDED.count;
INSERT INTO facet_pairs AS p (filter_field, filter_value, field, value_lower, count)
SELECT a.field, a.value_lower, b.field, b.value_lower, count(*)
  FROM fv a JOIN fv b ON a.id = b.id
 GROUP BY 1, 2, 3, 4
ON CONFLICT (filter_field, filter_value, field, value_lower) DO UPDATE SET count = p.count + EXCLUDED.count;
