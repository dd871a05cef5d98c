-- Reads that walked every lookup, or every lookup in flight (issue 16: no
-- work that grows with the tables). The rows each one looks for are a
-- handful at most, so a partial index holds exactly them. Their columns
-- are named by other indexes already, or change only together with such a
-- column (ambiguous_submits, with submit_started_at), so no update that was
-- HOT stops being HOT.
--
-- `recover_abandoned_submits` (src/store/work.rs) runs every 2 s on every
-- replica and scanned every lookup: 77-110 ms at 300,000 lookups
-- (auto_explain during first deliveries).
CREATE INDEX lookups_abandoned_submits ON lookups (submit_started_at)
    WHERE status = 'pending' AND submit_started_at IS NOT NULL;
-- `ambiguous_waiting` of `/metrics` and `/v1/stats` (src/store/stats.rs)
-- read every lookup in flight on every scrape.
CREATE INDEX lookups_ambiguous_waiting ON lookups (created_at)
    WHERE status = 'pending' AND request_id IS NULL AND ambiguous_submits > 0
      AND submit_started_at IS NULL;
