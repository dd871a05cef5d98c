-- Periodic sweeps that read whole tables (issue 16: no work that grows with
-- the tables). `recover_abandoned_submits` (src/store/work.rs) runs every
-- few seconds on every replica and scanned every lookup (77-110 ms at
-- 300,000 lookups, auto_explain during first deliveries): the submits it
-- looks for are a handful at most, so a partial index holds exactly them.
CREATE INDEX lookups_abandoned_submits ON lookups (lease_until)
    WHERE status = 'pending' AND submit_started_at IS NOT NULL;
