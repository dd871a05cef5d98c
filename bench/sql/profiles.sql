-- Completed synthetic lookups {{from}}..{{to}} with their profiles,
-- generated in the database (no API, no client round trips). Run by
-- `interests-receiver generate --profiles N` (src/generate.rs), which
-- replaces the {{from}} and {{to}} placeholders with numbers, runs
-- it in one transaction, then profile_facet_counts.sql, then VACUUM
-- ANALYZE. Facet values follow skewed
-- (roughly Zipf-like, value index = size * random()^3) distributions over
-- vocabularies of realistic size, so a few values are very common and most
-- are rare, as in real interest data. Creation times spread over 90 days.
-- The *_facets columns hold what Facets::as_written would derive from the
-- stored result, and profile_facets their search postings, as the profile
-- triggers would write them (migration profile_facets). Each person has an email, phone and
-- profile URL; their identities are the keyed hashes the service itself
-- computes (HMAC-SHA256 under the identifier key derived from
-- SERVICE_SECRET, from its inner and outer pads, which `generate` puts in
-- the temp table identity_key beforehand, bound as parameters: key
-- material never appears in SQL text), so searching by any spelling of
-- them works as for real lookups.
-- Bulk load without per-row index upkeep: plain indexes are dropped and
-- rebuilt afterwards, with room to sort (those backing constraints stay).
SET LOCAL maintenance_work_mem = '512MB';
SET LOCAL work_mem = '256MB';
CREATE TEMP TABLE saved_indexes ON COMMIT DROP AS
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
  FROM pg_index i
 WHERE i.indrelid IN ('profiles'::regclass, 'lookups'::regclass, 'profile_facets'::regclass,
                      'lookup_identities'::regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid);
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT name FROM saved_indexes LOOP EXECUTE 'DROP INDEX ' || r.name; END LOOP;
END $$;

-- label(words, j): the j-th value of a vocabulary: a word, numbered past
-- the first round ("Jazz", ..., "Jazz 1", ...). j = floor(size * random()^3)
-- makes the first values far more common than the tail.
CREATE TEMP TABLE gen ON COMMIT DROP AS
SELECT i,
       md5('lookup-' || i)::uuid AS lookup_id,
       md5('profile-' || i)::uuid AS profile_id,
       now() - random() * interval '90 days' AS created_at,
       ARRAY(SELECT DISTINCT w.cat[1 + floor(30 * random() ^ 2)::int]
               FROM generate_series(1, 2 + i % 4)) AS categories,
       ARRAY(SELECT DISTINCT w.interest[1 + j % 20] || CASE WHEN j < 20 THEN '' ELSE ' ' || j / 20 END
               FROM (SELECT floor(3000 * random() ^ 3)::int AS j FROM generate_series(1, 3 + i % 6)) s) AS interests,
       ARRAY(SELECT DISTINCT w.brand[1 + j % 20] || CASE WHEN j < 20 THEN '' ELSE ' ' || j / 20 END
               FROM (SELECT floor(800 * random() ^ 3)::int AS j FROM generate_series(1, 1 + i % 5)) s) AS brands,
       ARRAY(SELECT DISTINCT w.archetype[1 + j % 10] || CASE WHEN j < 10 THEN '' ELSE ' ' || j / 10 END
               FROM (SELECT floor(40 * random() ^ 3)::int AS j FROM generate_series(1, 1 + i % 2)) s) AS archetypes,
       ARRAY(SELECT DISTINCT w.industry[1 + j % 10] || CASE WHEN j < 10 THEN '' ELSE ' ' || j / 10 END
               FROM (SELECT floor(80 * random() ^ 3)::int AS j FROM generate_series(1, 1 + i % 3)) s) AS industries
  FROM generate_series({{from}}, {{to}}) AS i,
       (SELECT ARRAY['technology','sports','music','travel','food','fashion','gaming','finance',
                     'health','fitness','movies','books','art','photography','science','politics',
                     'parenting','pets','cars','outdoors','education','design','crypto','beauty',
                     'comedy','history','architecture','gardening','languages','space'] AS cat,
               ARRAY['Machine Learning','Trail Running','Jazz','Street Food','Startups','Yoga',
                     'Chess','Photography','Cycling','Sci-Fi','Coffee','Hiking','Climate',
                     'Open Source','Podcasts','Basketball','Wine','Vintage Cars','Meditation',
                     'Architecture'] AS interest,
               ARRAY['Nike','Apple','Patagonia','Tesla','Spotify','Adidas','Lego','Netflix','Sony',
                     'IKEA','Rolex','Airbnb','Peloton','Uniqlo','Canon','Nintendo','Lululemon',
                     'Zara','Audi','Oatly'] AS brand,
               ARRAY['Tech Leader','Thought Leader','Explorer','Creator','Caregiver','Analyst',
                     'Athlete','Connector','Collector','Activist'] AS archetype,
               ARRAY['Software','Venture Capital','Healthcare','Retail','Media','Education',
                     'Energy','Manufacturing','Logistics','Hospitality'] AS industry) AS w;

-- Generated history announces nothing: the lookup event triggers (events
-- and webhook sends) are off during the load, like the facet trigger.
ALTER TABLE lookups DISABLE TRIGGER USER;
INSERT INTO lookups (id, status, email, phone, social_media_url, name, subject_key, request_id,
                     created_at, submitted_at, completed_at, credits_charged, next_action_at,
                     synthetic, metadata, identities_key)
SELECT lookup_id, 'completed',
       'person' || i || '@bench.example',
       '+1415' || lpad(i::text, 7, '0'),
       'https://www.linkedin.com/in/person-' || i,
       'Person ' || i,
       -- Subject::key: sha256 of the first identity.
       encode(sha256(convert_to('email:person' || i || '@bench.example', 'UTF8')), 'hex'),
       md5('profile-rid-' || i) || '_1717000000_' || lpad((i % 10000)::text, 4, '0'),
       created_at, created_at, created_at, 5, created_at,
       true, jsonb_build_object('generated', i),
       -- Keyed under the service's current key, as the service stamps
       -- what it writes (else it re-keys every lookup after its start).
       (SELECT key_id FROM identity_key)
  FROM gen;

-- Subject::identities, each as ServiceSecret::identity_hash (HMAC-SHA256).
-- In key order: the primary key (which stays) is then filled left to
-- right, not split at random places (at a million people it was 428 MB
-- instead of 330 MB, and the slowest statement but one; BENCHMARKS.md).
INSERT INTO lookup_identities (identity, lookup_id)
SELECT encode(sha256(k.opad || sha256(k.ipad || convert_to(id, 'UTF8'))), 'hex') AS identity,
       lookup_id
  FROM identity_key k, gen, LATERAL (VALUES ('email:person' || i || '@bench.example'),
                            ('phone:1415' || lpad(i::text, 7, '0')),
                            ('social_media_url:linkedin.com/in/person-' || i)) AS v(id)
 ORDER BY identity, lookup_id;

ALTER TABLE profiles DISABLE TRIGGER USER;
INSERT INTO profiles (id, lookup_id, request_id, result, completed_on, received_via, created_at,
                      interest_facets, category_facets, brand_facets, archetype_facets, industry_facets)
SELECT profile_id, lookup_id,
       md5('profile-rid-' || i) || '_1717000000_' || lpad((i % 10000)::text, 4, '0'),
       jsonb_build_object(
         'core_profile', jsonb_build_object('archetypes', to_jsonb(archetypes),
                                            'supporting_accounts', '["@techcrunch","@ycombinator"]'::jsonb),
         'interest_graph', (SELECT jsonb_object_agg(c, jsonb_build_object('interests',
                               COALESCE((SELECT jsonb_agg(jsonb_build_object('topic', x, 'supporting_accounts', '["@example"]'::jsonb))
                                  FROM unnest(interests) WITH ORDINALITY AS u(x, n)
                                 WHERE n % cardinality(categories) = o % cardinality(categories)), '[]'::jsonb)))
                              FROM unnest(categories) WITH ORDINALITY AS v(c, o)),
         'brand_affinities', jsonb_build_array(jsonb_build_object('category', 'lifestyle', 'brands', to_jsonb(brands))),
         'professional_ecosystem', jsonb_build_object('industry_focus', to_jsonb(industries),
                                                      'supporting_accounts', '["@a16z"]'::jsonb),
         'following_count', 100 + i % 5000),
       created_at, 'callback', created_at,
       interests, categories, brands, archetypes, industries
  FROM gen;

INSERT INTO profile_facets (field, value, created_at, profile_id)
SELECT f.field, f.value_lower, g.created_at, g.profile_id
  FROM gen g, profile_facet_rows(g.interests, g.categories, g.brands, g.archetypes,
                                 g.industries) f;

DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT def FROM saved_indexes LOOP EXECUTE r.def; END LOOP;
END $$;

ALTER TABLE profiles ENABLE TRIGGER USER;
ALTER TABLE lookups ENABLE TRIGGER USER;

-- The facet index's log (migration facet_index_log) missed these profiles
-- with the triggers off: every follower that has not seen this
-- transaction loads its index again.
UPDATE facet_log_marks SET bulk_load = pg_current_xact_id();

-- The triggers that keep the totals of /v1/stats, /metrics and the budget
-- were off during the load: count what is stored now (migration
-- kept_totals). Meant for a quiet database, as this whole load is.
SELECT rebuild_kept_totals();
