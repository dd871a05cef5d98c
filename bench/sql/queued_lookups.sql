-- :n lookups already accepted upstream (status queued, a request_id each),
-- as the submitter leaves them, with nothing due for a long time: the
-- workers stay idle while deliveries are measured. No stored callback
-- token: it is derived from SERVICE_SECRET, as for every new lookup.
INSERT INTO lookups (id, status, email, subject_key, request_id, created_at,
                     submitted_at, next_action_at, identities_key)
SELECT md5('queued-' || i)::uuid,
       'queued',
       'queued' || i || '@bench.example',
       encode(sha256(convert_to('queued-' || i, 'UTF8')), 'hex'),
       md5('rid-' || i) || '_1717000000_' || lpad((i % 10000)::text, 4, '0'),
       now() - interval '1 minute',
       now() - interval '1 minute',
       now() + interval '30 days',
       :'key_id'
  FROM generate_series(1, :n) AS i;
-- Identities are recorded at creation; without them the service would
-- backfill each lookup at start. The bench never looks a person up, so a
-- placeholder per lookup stands in for the keyed hashes.
INSERT INTO lookup_identities (identity, lookup_id)
SELECT 'bench:' || id, id FROM lookups WHERE email LIKE 'queued%@bench.example';
-- The planner needs both tables' statistics from the start (autovacuum would
-- gather them a minute later): without them the same-person join of
-- profile versions is planned as a scan of every identity.
ANALYZE lookups, lookup_identities;
