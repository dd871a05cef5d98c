-- Refreshes made by the service (POST /v1/profiles/refresh and the
-- REFRESH_AFTER_DAYS schedule) are marked, so that they spend from
-- REFRESH_CREDITS_DAILY apart from new lookups and are submitted after
-- every due new lookup (src/store/work.rs, claim_submit).
ALTER TABLE lookups ADD COLUMN refresh boolean NOT NULL DEFAULT false;

-- The submit queue's order (new lookups first, then due time), so that
-- claiming stays an index scan however many refreshes wait.
CREATE INDEX lookups_submit_queue ON lookups (refresh, next_action_at, created_at)
    WHERE status = 'pending' AND submit_started_at IS NULL;
