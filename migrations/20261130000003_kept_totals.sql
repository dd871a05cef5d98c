-- Kept totals (issue "a write path that scales"): `/metrics`, `GET /v1/stats`,
-- the console's credit chart and the daily budget read these few rows
-- instead of aggregating `lookups` and `deliveries` on every request.
--
-- Triggers keep them in the transaction that changes the row, so they are
-- exact, never stale. Each change goes to one of 16 shards picked at random:
-- concurrent writers rarely touch the same counter row, so the totals add
-- no lock that serialises the write path. Readers sum the shards.
--
-- They count what is stored: a deleted lookup leaves them. Its spending is
-- not forgotten: the `lookups_gone` trigger (migration gone_lookups_and_spend)
-- moves its credits to the spend ledger, which stats and the budget add.

CREATE TABLE lookup_totals (
    shard     smallint NOT NULL,
    status    text NOT NULL,
    lookups   bigint NOT NULL DEFAULT 0,
    synthetic bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (status, shard)
);

CREATE TABLE day_totals (
    day       date NOT NULL,
    shard     smallint NOT NULL,
    credits   bigint NOT NULL DEFAULT 0,
    finished  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, shard)
);

CREATE TABLE work_totals (
    shard     smallint PRIMARY KEY,
    polls     bigint NOT NULL DEFAULT 0,
    submits   bigint NOT NULL DEFAULT 0,
    ambiguous bigint NOT NULL DEFAULT 0
);

CREATE TABLE delivery_totals (
    shard      smallint NOT NULL,
    outcome    text NOT NULL,
    deliveries bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (outcome, shard)
);

CREATE FUNCTION count_lookup_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := floor(random() * 16);
    on_day date;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO lookup_totals AS t (shard, status, lookups, synthetic)
            VALUES (pick, OLD.status, -1, CASE WHEN OLD.synthetic THEN -1 ELSE 0 END)
            ON CONFLICT (status, shard) DO UPDATE
            SET lookups = t.lookups - 1, synthetic = t.synthetic + EXCLUDED.synthetic;
        IF OLD.completed_at IS NOT NULL THEN
            INSERT INTO day_totals AS t (day, shard, credits, finished)
                VALUES ((OLD.completed_at AT TIME ZONE 'UTC')::date, pick,
                        -OLD.credits_charged, -1)
                ON CONFLICT (day, shard) DO UPDATE
                SET credits = t.credits + EXCLUDED.credits, finished = t.finished - 1;
        END IF;
        IF OLD.poll_count <> 0 OR OLD.submit_attempts <> 0 OR OLD.ambiguous_submits <> 0 THEN
            INSERT INTO work_totals AS t (shard, polls, submits, ambiguous)
                VALUES (pick, -OLD.poll_count, -OLD.submit_attempts, -OLD.ambiguous_submits)
                ON CONFLICT (shard) DO UPDATE
                SET polls = t.polls + EXCLUDED.polls, submits = t.submits + EXCLUDED.submits,
                    ambiguous = t.ambiguous + EXCLUDED.ambiguous;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status THEN
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO lookup_totals AS t (shard, status, lookups, synthetic)
                VALUES (pick, OLD.status, -1, CASE WHEN OLD.synthetic THEN -1 ELSE 0 END)
                ON CONFLICT (status, shard) DO UPDATE
                SET lookups = t.lookups - 1, synthetic = t.synthetic + EXCLUDED.synthetic;
        END IF;
        INSERT INTO lookup_totals AS t (shard, status, lookups, synthetic)
            VALUES (pick, NEW.status, 1, CASE WHEN NEW.synthetic THEN 1 ELSE 0 END)
            ON CONFLICT (status, shard) DO UPDATE
            SET lookups = t.lookups + 1, synthetic = t.synthetic + EXCLUDED.synthetic;
    END IF;
    on_day := (COALESCE(NEW.completed_at, now()) AT TIME ZONE 'UTC')::date;
    IF NEW.credits_charged <> COALESCE(OLD.credits_charged, 0)
       OR (NEW.completed_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.completed_at IS NULL)) THEN
        INSERT INTO day_totals AS t (day, shard, credits, finished)
            VALUES (on_day, pick,
                    GREATEST(NEW.credits_charged - COALESCE(OLD.credits_charged, 0), 0),
                    CASE WHEN NEW.completed_at IS NOT NULL
                          AND (TG_OP = 'INSERT' OR OLD.completed_at IS NULL) THEN 1 ELSE 0 END)
            ON CONFLICT (day, shard) DO UPDATE
            SET credits = t.credits + EXCLUDED.credits, finished = t.finished + EXCLUDED.finished;
    END IF;
    IF NEW.poll_count <> COALESCE(OLD.poll_count, 0)
       OR NEW.submit_attempts <> COALESCE(OLD.submit_attempts, 0)
       OR NEW.ambiguous_submits <> COALESCE(OLD.ambiguous_submits, 0) THEN
        INSERT INTO work_totals AS t (shard, polls, submits, ambiguous)
            VALUES (pick,
                    NEW.poll_count - COALESCE(OLD.poll_count, 0),
                    NEW.submit_attempts - COALESCE(OLD.submit_attempts, 0),
                    NEW.ambiguous_submits - COALESCE(OLD.ambiguous_submits, 0))
            ON CONFLICT (shard) DO UPDATE
            SET polls = t.polls + EXCLUDED.polls, submits = t.submits + EXCLUDED.submits,
                ambiguous = t.ambiguous + EXCLUDED.ambiguous;
    END IF;
    RETURN NULL;
END
$$;

-- Only the columns counted: claims and leases do not fire it.
CREATE TRIGGER lookups_count_insert AFTER INSERT ON lookups
    FOR EACH ROW EXECUTE FUNCTION count_lookup_change();
CREATE TRIGGER lookups_count_update
    AFTER UPDATE OF status, credits_charged, completed_at, poll_count, submit_attempts, ambiguous_submits
    ON lookups FOR EACH ROW EXECUTE FUNCTION count_lookup_change();
CREATE TRIGGER lookups_count_delete AFTER DELETE ON lookups
    FOR EACH ROW EXECUTE FUNCTION count_lookup_change();

CREATE FUNCTION count_delivery_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := floor(random() * 16);
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO delivery_totals AS t (shard, outcome, deliveries) VALUES (pick, OLD.outcome, -1)
            ON CONFLICT (outcome, shard) DO UPDATE SET deliveries = t.deliveries - 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO delivery_totals AS t (shard, outcome, deliveries) VALUES (pick, NEW.outcome, 1)
            ON CONFLICT (outcome, shard) DO UPDATE SET deliveries = t.deliveries + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_count AFTER INSERT OR DELETE OR UPDATE OF outcome ON deliveries
    FOR EACH ROW EXECUTE FUNCTION count_delivery_change();

-- Counts what is stored, from scratch (shard 0): at this migration, and for
-- bulk loads that bypass the triggers (`generate`). It cannot know spending
-- of rows already deleted, so it is not run on a live service.
CREATE FUNCTION rebuild_kept_totals() RETURNS void LANGUAGE sql AS $$
    DELETE FROM lookup_totals;
    DELETE FROM day_totals;
    DELETE FROM work_totals;
    DELETE FROM delivery_totals;
    INSERT INTO lookup_totals (shard, status, lookups, synthetic)
        SELECT 0, status, count(*), count(*) FILTER (WHERE synthetic) FROM lookups GROUP BY status;
    INSERT INTO day_totals (day, shard, credits, finished)
        SELECT (completed_at AT TIME ZONE 'UTC')::date, 0, sum(credits_charged), count(*)
        FROM lookups WHERE completed_at IS NOT NULL GROUP BY 1;
    INSERT INTO work_totals (shard, polls, submits, ambiguous)
        SELECT 0, COALESCE(sum(poll_count), 0), COALESCE(sum(submit_attempts), 0),
               COALESCE(sum(ambiguous_submits), 0)
        FROM lookups;
    INSERT INTO delivery_totals (shard, outcome, deliveries)
        SELECT 0, outcome, count(*) FROM deliveries GROUP BY outcome;
$$;
SELECT rebuild_kept_totals();

-- The age of the oldest unfinished lookup without a scan.
CREATE INDEX lookups_unfinished ON lookups (created_at)
    WHERE status IN ('pending', 'queued', 'processing');
