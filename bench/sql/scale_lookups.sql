-- :n completed lookups, each charged as the service charges one (5
-- credits, completed over the last 30 days), so that the tables which the
-- counting requests used to sum hold :n more rows. Nothing in them is due.
INSERT INTO lookups (id, status, email, subject_key, request_id, created_at,
                     submitted_at, completed_at, credits_charged, next_action_at, identities_key)
SELECT md5('scale-' || i)::uuid,
       'completed',
       'scale' || i || '@bench.example',
       encode(sha256(convert_to('scale-' || i, 'UTF8')), 'hex'),
       md5('scale-rid-' || i) || '_1717000000_' || lpad((i % 10000)::text, 4, '0'),
       now() - make_interval(secs => (i % 2592000)),
       now() - make_interval(secs => (i % 2592000)),
       now() - make_interval(secs => (i % 2592000)),
       5,
       now() + interval '30 days',
       :'key_id'
  FROM generate_series(1, :n) AS i;
INSERT INTO lookup_identities (identity, lookup_id)
SELECT 'bench:' || id, id FROM lookups WHERE email LIKE 'scale%@bench.example';
-- The planner needs both tables' statistics from the start (autovacuum would
-- gather them a minute later): without them the same-person join of
-- profile versions is planned as a scan of every identity.
ANALYZE lookups, lookup_identities;
