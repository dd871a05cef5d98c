-- The write path in groups (issue 16).
--
-- New: apply_job_updates(…), several callback deliveries applied in one
--   statement and one transaction (src/callbacks/applier.rs gathers them).
-- Replaces: kept_total_shard() (20261130190002_kept_totals_per_connection.sql),
--   which now prefers the shard the connection claimed.

-- Applies several job updates, as `apply_job_update` does one, in the order
-- of their lookup ids (every group takes its row locks in the same order,
-- so two groups never wait on each other in a cycle), and answers one row
-- per update: its 1-based place in the arrays and `apply_job_update`'s
-- answer. Two updates of one lookup in a group are applied in their order,
-- the second seeing the first (a duplicate then answers `duplicate`).
-- Facets come as one JSON object per update, field name to array of values.
CREATE FUNCTION apply_job_updates(
    p_lookups      uuid[],
    p_request_ids  text[],
    p_statuses     text[],
    p_results      jsonb[],
    p_completed_on timestamptz[],
    p_errors       text[],
    p_via          text,
    p_profile_ids  uuid[],
    p_facets       jsonb[],
    p_record_delivery boolean,
    p_body_sha256s text[],
    p_bodies       jsonb[],
    p_credits      integer[]
) RETURNS TABLE (item integer, answer text)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN SELECT u.n FROM unnest(p_lookups) WITH ORDINALITY AS u(id, n) ORDER BY u.id, u.n LOOP
        item := i;
        answer := apply_job_update(
            p_lookups[i], p_request_ids[i], p_statuses[i], p_results[i], p_completed_on[i],
            p_errors[i], p_via, p_profile_ids[i],
            ARRAY(SELECT jsonb_array_elements_text(p_facets[i] -> 'interest')),
            ARRAY(SELECT jsonb_array_elements_text(p_facets[i] -> 'category')),
            ARRAY(SELECT jsonb_array_elements_text(p_facets[i] -> 'brand')),
            ARRAY(SELECT jsonb_array_elements_text(p_facets[i] -> 'archetype')),
            ARRAY(SELECT jsonb_array_elements_text(p_facets[i] -> 'industry')),
            p_record_delivery, p_body_sha256s[i], p_bodies[i], p_credits[i]);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- A connection's kept-total shard: the one it claimed when it connected
-- (the session setting `interests_receiver.kept_shard`, see
-- store::claim_kept_shard: a session advisory lock per shard, so no two
-- live connections of any replica hold the same one), else its backend
-- pid modulo 32 as before (a connection that found every shard taken, or
-- a client other than the service). Claimed shards are 100 to 163, apart
-- from the pid ones, so no two connections that claimed one ever wait on
-- one counter row, nor on a client's that did not.
CREATE OR REPLACE FUNCTION kept_total_shard() RETURNS smallint LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('interests_receiver.kept_shard', true), '')::smallint,
                    (pg_backend_pid() % 32)::smallint)
$$;
