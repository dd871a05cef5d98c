-- Facet counts of the profiles profiles.sql just generated (its temp table
-- `gen`, same transaction). The profile triggers, off during the load,
-- would queue every value for `facet_fold`; for a bulk load the same counts
-- (totals and spellings, from the schema's own profile_facet_rows) are
-- added here in one set-based pass. Linear in the values generated.
CREATE TEMP TABLE fv ON COMMIT DROP AS
SELECT f.field, f.value_lower, f.spelling
  FROM gen g, profile_facet_rows(g.interests, g.categories, g.brands, g.archetypes,
                                 g.industries) f;
INSERT INTO facet_totals AS t (field, value_lower, count)
SELECT field, value_lower, count(*) FROM fv GROUP BY 1, 2
ON CONFLICT (field, value_lower) DO UPDATE SET count = t.count + EXCLUDED.count;
INSERT INTO facet_spellings AS s (field, value_lower, spelling, count)
SELECT field, value_lower, spelling, count(*) FROM fv GROUP BY 1, 2, 3
ON CONFLICT (field, value_lower, spelling) DO UPDATE SET count = s.count + EXCLUDED.count;
