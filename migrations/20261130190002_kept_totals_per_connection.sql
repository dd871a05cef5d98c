-- Kept totals: each connection writes its own shard.
--
-- A change went to one of 16 shards picked at random, so writers on 32
-- connections met on the same counter rows and each waited for the other's
-- commit (the first deliveries' top wait in BENCHMARKS.md was
-- Lock:transactionid). A connection runs one transaction at a time, so a
-- shard picked by the backend's pid is never contended by another
-- connection (unless two pids share a remainder), and a transaction that
-- changes several lookups stays on one shard. Readers still sum the shards.

CREATE FUNCTION kept_total_shard() RETURNS smallint LANGUAGE sql STABLE AS $$
    SELECT (pg_backend_pid() % 32)::smallint
$$;

CREATE OR REPLACE FUNCTION count_lookup_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := kept_total_shard();
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

CREATE OR REPLACE FUNCTION count_lookup_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := kept_total_shard();
BEGIN
    INSERT INTO lookup_totals AS t (shard, status, lookups, synthetic)
        SELECT pick, status, count(*), count(*) FILTER (WHERE synthetic) FROM added GROUP BY status
        ON CONFLICT (status, shard) DO UPDATE
        SET lookups = t.lookups + EXCLUDED.lookups, synthetic = t.synthetic + EXCLUDED.synthetic;
    INSERT INTO day_totals AS t (day, shard, credits, finished)
        SELECT (COALESCE(completed_at, now()) AT TIME ZONE 'UTC')::date, pick,
               sum(GREATEST(credits_charged, 0)), count(completed_at)
        FROM added WHERE credits_charged <> 0 OR completed_at IS NOT NULL GROUP BY 1
        ON CONFLICT (day, shard) DO UPDATE
        SET credits = t.credits + EXCLUDED.credits, finished = t.finished + EXCLUDED.finished;
    INSERT INTO work_totals AS t (shard, polls, submits, ambiguous)
        SELECT pick, sum(poll_count), sum(submit_attempts), sum(ambiguous_submits) FROM added
        WHERE poll_count <> 0 OR submit_attempts <> 0 OR ambiguous_submits <> 0
        HAVING count(*) > 0
        ON CONFLICT (shard) DO UPDATE
        SET polls = t.polls + EXCLUDED.polls, submits = t.submits + EXCLUDED.submits,
            ambiguous = t.ambiguous + EXCLUDED.ambiguous;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION count_lookup_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := kept_total_shard();
BEGIN
    INSERT INTO lookup_totals AS t (shard, status, lookups, synthetic)
        SELECT pick, status, -count(*), -count(*) FILTER (WHERE synthetic) FROM removed GROUP BY status
        ON CONFLICT (status, shard) DO UPDATE
        SET lookups = t.lookups + EXCLUDED.lookups, synthetic = t.synthetic + EXCLUDED.synthetic;
    INSERT INTO day_totals AS t (day, shard, credits, finished)
        SELECT (completed_at AT TIME ZONE 'UTC')::date, pick, -sum(credits_charged), -count(*)
        FROM removed WHERE completed_at IS NOT NULL GROUP BY 1
        ON CONFLICT (day, shard) DO UPDATE
        SET credits = t.credits + EXCLUDED.credits, finished = t.finished + EXCLUDED.finished;
    INSERT INTO work_totals AS t (shard, polls, submits, ambiguous)
        SELECT pick, -sum(poll_count), -sum(submit_attempts), -sum(ambiguous_submits) FROM removed
        WHERE poll_count <> 0 OR submit_attempts <> 0 OR ambiguous_submits <> 0
        HAVING count(*) > 0
        ON CONFLICT (shard) DO UPDATE
        SET polls = t.polls + EXCLUDED.polls, submits = t.submits + EXCLUDED.submits,
            ambiguous = t.ambiguous + EXCLUDED.ambiguous;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION count_delivery_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := kept_total_shard();
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
