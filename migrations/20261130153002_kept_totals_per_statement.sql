-- Kept totals for inserted and deleted lookups counted once per statement
-- (transition tables) instead of once per row.
--
-- Per row, a statement inserting or deleting N lookups upserted the same 16
-- counter rows N times inside one transaction; each upsert walks the chain
-- of versions its own transaction left, so the statement cost grew with N²
-- (200,000 seeded lookups did not finish in 5 minutes). Per statement it is
-- one upsert per status and day. Updates stay per row: the service changes
-- one lookup per statement, and the row trigger's column list keeps claims
-- and leases from firing it (a transition table cannot have one).

CREATE FUNCTION count_lookup_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := floor(random() * 16);
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

CREATE FUNCTION count_lookup_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pick smallint := floor(random() * 16);
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

DROP TRIGGER lookups_count_insert ON lookups;
DROP TRIGGER lookups_count_delete ON lookups;
CREATE TRIGGER lookups_count_insert AFTER INSERT ON lookups
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION count_lookup_inserts();
CREATE TRIGGER lookups_count_delete AFTER DELETE ON lookups
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION count_lookup_deletes();
