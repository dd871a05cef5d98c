-- Paid results for lookups that are no longer stored (issue 15, contract
-- section 6), credits as upstream charged them, and retention from the time
-- a lookup finished.
--
-- Replaces: apply_job_update (20261126000004_apply_job_update.sql), now with
-- a p_credits argument and an answer for a lookup that is gone.
-- New: lookups_gone() (trigger lookups_gone).

-- Credits of lookups that are no longer stored (erased, or removed by
-- retention), per UTC day: the day's spend and the daily budget still count
-- them. No lookup id, request_id or identifier: nothing links a row to a
-- person. Sandbox (synthetic) lookups cost nothing and leave no row, so
-- deleting them before running for real leaves no invented spend.
CREATE TABLE spend_ledger (
    day     date NOT NULL,
    credits bigint NOT NULL CHECK (credits > 0)
);
CREATE INDEX spend_ledger_day ON spend_ledger (day);

-- Lookups that are no longer stored, known only by a SHA-256 of their id
-- (a random UUID, which no table keeps once the lookup is gone), so that a
-- delivery arriving after them is counted once: `settled` says their credits
-- are already in the spend (or none can come: failed, or never sent).
-- `in_flight`: upstream was running its job when the lookup went, so the
-- daily budget keeps room for it on that day until its result settles it.
-- Kept as long as delivery records (RETENTION_DELIVERY_DAYS).
CREATE TABLE gone_lookups (
    lookup_sha256 text PRIMARY KEY,
    settled       boolean NOT NULL,
    in_flight     boolean NOT NULL DEFAULT false,
    synthetic     boolean NOT NULL DEFAULT false,
    gone_on       date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date
);
CREATE INDEX gone_lookups_gone_on ON gone_lookups (gone_on);

-- Whatever deletes lookups (erasure, retention, an operator), their spend
-- stays counted and their later deliveries are recognised.
CREATE FUNCTION lookups_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO spend_ledger (day, credits)
    SELECT (completed_at AT TIME ZONE 'UTC')::date, sum(credits_charged)
      FROM gone
     WHERE credits_charged > 0 AND completed_at IS NOT NULL AND NOT synthetic
     GROUP BY 1;
    INSERT INTO gone_lookups (lookup_sha256, settled, in_flight, synthetic)
    SELECT encode(sha256(convert_to(id::text, 'UTF8')), 'hex'),
           status IN ('completed', 'failed')
             OR (status = 'pending' AND submit_started_at IS NULL AND ambiguous_submits = 0),
           status IN ('queued', 'processing')
             OR (status = 'pending' AND (submit_started_at IS NOT NULL OR ambiguous_submits > 0)),
           synthetic
      FROM gone
    ON CONFLICT (lookup_sha256) DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER lookups_gone AFTER DELETE ON lookups
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION lookups_gone();

-- When an unfinished lookup stopped waiting (expired; `completed_at` stays
-- NULL, as the contract shows it): retention counts from then, not from its
-- creation, so a late paid result still finds it. Lookups that expired
-- before this column get their last known activity.
ALTER TABLE lookups ADD COLUMN expired_at timestamptz;
UPDATE lookups SET expired_at = GREATEST(created_at, last_polled_at, submitted_at)
 WHERE status = 'expired';

DROP FUNCTION apply_job_update(uuid, text, text, jsonb, timestamptz, text, text, uuid,
                               text[], text[], text[], text[], text[], boolean, text, jsonb);

-- One round trip per delivery: apply a job's state, as upstream reported it
-- by callback or poll, to its lookup. Locks the lookup row (serialising
-- concurrent deliveries of the same job), refuses a request_id that belongs
-- to another lookup, applies the forward-only rules, stores the profile,
-- updates the lookup and, for callbacks, records the delivery, all in the
-- caller's transaction (a single statement is its own transaction).
--
-- A lookup that is gone (erased, or removed by retention) keeps nothing of
-- the delivery: a paid result's credits go to the spend ledger, once per
-- lookup, and the answer is 'gone'.
--
-- Returns 'applied', 'duplicate', 'gone' or 'refused:<reason>'.
CREATE FUNCTION apply_job_update(
    p_lookup          uuid,
    p_request_id      text,
    p_status          text,          -- queued | processing | completed | failed
    p_result          jsonb,         -- completed only
    p_completed_on    timestamptz,   -- completed only
    p_error           text,          -- failed only
    p_via             text,          -- callback | poll
    p_profile_id      uuid,
    p_interests       text[],
    p_categories      text[],
    p_brands          text[],
    p_archetypes      text[],
    p_industries      text[],
    p_record_delivery boolean,
    p_body_sha256     text,
    p_body            jsonb,
    p_credits         integer        -- completed only: charged for the result as received
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
    outcome        text;
    reason         text;
    settled_now    boolean;
    was_synthetic  boolean;
BEGIN
    SELECT status INTO current_status FROM lookups WHERE id = p_lookup FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM lookups WHERE request_id = p_request_id) THEN
            RETURN 'refused:request_id belongs to another lookup';
        END IF;
        IF p_status IN ('completed', 'failed') THEN
            INSERT INTO gone_lookups (lookup_sha256, settled)
            VALUES (encode(sha256(convert_to(p_lookup::text, 'UTF8')), 'hex'), true)
            ON CONFLICT (lookup_sha256) DO UPDATE SET settled = true
                WHERE NOT gone_lookups.settled
            RETURNING true, gone_lookups.synthetic INTO settled_now, was_synthetic;
            IF settled_now AND NOT was_synthetic AND p_status = 'completed' AND p_credits > 0 THEN
                INSERT INTO spend_ledger (day, credits)
                VALUES ((now() AT TIME ZONE 'UTC')::date, p_credits);
            END IF;
        END IF;
        RETURN 'gone';
    ELSIF EXISTS (SELECT 1 FROM lookups WHERE request_id = p_request_id AND id <> p_lookup) THEN
        outcome := 'refused';
        reason := 'request_id belongs to another lookup';
    ELSIF p_status = 'completed' THEN
        -- `expired` may still become `completed`: the result was paid for.
        IF current_status IN ('completed', 'failed') THEN
            outcome := 'duplicate';
        ELSE
            INSERT INTO profiles (id, lookup_id, request_id, result, completed_on, received_via,
                                  interest_facets, category_facets, brand_facets,
                                  archetype_facets, industry_facets)
            VALUES (p_profile_id, p_lookup, p_request_id, p_result, p_completed_on, p_via,
                    p_interests, p_categories, p_brands, p_archetypes, p_industries)
            ON CONFLICT DO NOTHING;
            UPDATE lookups SET status = 'completed', completed_at = now(),
                   credits_charged = p_credits,
                   error = NULL, request_id = COALESCE(request_id, p_request_id),
                   submitted_at = COALESCE(submitted_at, now()), submit_started_at = NULL,
                   callback_token = NULL
             WHERE id = p_lookup;
            outcome := 'applied';
        END IF;
    ELSIF p_status = 'failed' THEN
        IF current_status IN ('completed', 'failed', 'expired') THEN
            outcome := 'duplicate';
        ELSE
            UPDATE lookups SET status = 'failed', error = p_error, completed_at = now(),
                   credits_charged = 0, request_id = COALESCE(request_id, p_request_id),
                   submit_started_at = NULL, callback_token = NULL
             WHERE id = p_lookup;
            outcome := 'applied';
        END IF;
    ELSE
        -- queued / processing: forward only.
        IF (CASE current_status WHEN 'pending' THEN 0 WHEN 'queued' THEN 1
                                WHEN 'processing' THEN 2 ELSE 3 END)
           >= (CASE p_status WHEN 'queued' THEN 1 ELSE 2 END) THEN
            outcome := 'duplicate';
        ELSE
            UPDATE lookups SET status = p_status,
                   request_id = COALESCE(request_id, p_request_id),
                   submitted_at = COALESCE(submitted_at, now())
             WHERE id = p_lookup;
            outcome := 'applied';
        END IF;
    END IF;

    IF p_record_delivery THEN
        -- A duplicate's body is the applied one's again: only its digest is kept.
        INSERT INTO deliveries (lookup_id, request_id, payload_status, outcome, reason,
                                body_sha256, body)
        VALUES (p_lookup, p_request_id, p_status, outcome, reason, p_body_sha256,
                CASE WHEN outcome = 'duplicate' THEN NULL ELSE p_body END);
    END IF;
    RETURN outcome || COALESCE(':' || reason, '');
END;
$$;
