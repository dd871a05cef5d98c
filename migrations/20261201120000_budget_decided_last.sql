-- Creates under a daily budget decide their spend last (issue 16).
--
-- The budget's lock (a transaction advisory lock, one per budget) used to
-- be taken before the create looked for an in-flight lookup, and held
-- through the insert of the lookup, its identities, the idempotency key and
-- the audit row: six round trips, so under a burst every create of every
-- replica waited on it (`Lock:advisory`, 482 creates/s against 753/s
-- without a budget in the bench). A create now does all of that first and
-- calls `budget_allows` just before its commit (which does not wait for its
-- fsync): the lock is held for this one statement and the commit. The new
-- lookup is already in its kept totals, so it counts itself; the caller
-- rolls everything back when the answer is false.

-- Credits committed today: charged today plus what lookups in flight may
-- still cost (p_per_job each), of the service's refreshes (p_refresh) or of
-- the other lookups. Kept totals (a few rows whatever the size of
-- `lookups`), lookups erased or purged today and jobs of lookups erased
-- while upstream ran them included; the refreshes' share from partial
-- indexes over refresh lookups. This is the query `store::lookups` ran until
-- now, moved here so that `budget_allows` reads it after its lock.
CREATE FUNCTION credits_committed_today(p_per_job bigint, p_refresh boolean)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- PL/pgSQL, not SQL: a SQL function's query is planned again on every
    -- call (1.2 ms here, more than it runs), PL/pgSQL keeps its plan for
    -- the session.
    RETURN (WITH refreshes AS (
        SELECT (SELECT COALESCE(SUM(credits_charged), 0) FROM lookups
                 WHERE refresh AND completed_at >= date_trunc('day', now()))::bigint
             + p_per_job * (SELECT count(*) FROM lookups
                 WHERE refresh AND status IN ('pending', 'queued', 'processing')) AS n),
    everything AS (
        SELECT (SELECT COALESCE(sum(credits), 0)::bigint FROM day_totals
                 WHERE day = (now() AT TIME ZONE 'UTC')::date)
             + p_per_job * (SELECT COALESCE(sum(lookups), 0)::bigint FROM lookup_totals
                     WHERE status IN ('pending', 'queued', 'processing'))
             + (SELECT COALESCE(SUM(credits), 0) FROM spend_ledger
                 WHERE day >= (now() AT TIME ZONE 'UTC')::date)::bigint
             + p_per_job * (SELECT count(*) FROM gone_lookups WHERE in_flight AND NOT settled
                 AND NOT synthetic AND gone_on >= (now() AT TIME ZONE 'UTC')::date) AS n)
    SELECT CASE WHEN p_refresh THEN (SELECT n FROM refreshes)
                ELSE (SELECT n FROM everything) - (SELECT n FROM refreshes) END);
END
$$;

-- The refreshes in flight, for the count above. Read as one condition with
-- the completed ones (as before), the in-flight half walked every unfinished
-- lookup (`lookups_unfinished`) and kept the refreshes: 4 ms at 14,000
-- lookups pending, under the budget's lock, for every create.
CREATE INDEX lookups_refresh_in_flight ON lookups (status)
    WHERE refresh AND status IN ('pending', 'queued', 'processing');

-- Does the day's budget (p_budget credits) still hold everything committed,
-- the caller's own new lookup included? Takes the budget's lock first, held
-- to the end of the transaction, so that decisions on every replica are made
-- one after the other. The function is volatile: its count runs on a
-- snapshot taken after the lock was granted, so it sees every decision
-- committed before (a commit is visible before its locks are released). A
-- single statement that locked and counted would count on the snapshot of
-- its start, and two creates could both see the same room.
CREATE FUNCTION budget_allows(p_budget bigint, p_per_job bigint, p_refresh boolean)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(
        CASE WHEN p_refresh THEN 'refresh_budget' ELSE 'credit_budget' END, 0));
    RETURN credits_committed_today(p_per_job, p_refresh) <= p_budget;
END
$$;
