-- The refresh budget (REFRESH_CREDITS_DAILY) reads what the service's own
-- refreshes spent today; this keeps that read to today's refreshes.
CREATE INDEX lookups_refresh_completed ON lookups (completed_at) WHERE refresh;
