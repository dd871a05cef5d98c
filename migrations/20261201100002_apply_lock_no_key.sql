-- Delivery groups and the event sequencer never wait on each other in a
-- cycle (issue 16).
--
-- Replaces: apply_job_update (20261130120000_gone_lookups_and_spend.sql),
-- with one change: the lookup row is locked FOR NO KEY UPDATE, not FOR
-- UPDATE. That still serialises two deliveries of one lookup (and an
-- erasure, whose DELETE conflicts with it), but no longer conflicts with
-- the KEY SHARE lock that a foreign key check takes on the lookup: the
-- sequencer's insert of a batch of events (events.lookup_id references
-- lookups) locks their lookups KEY SHARE in inbox order, while a group of
-- deliveries locks its lookups in id order, and a lookup with an event
-- still to place and a delivery in a group made a deadlock (seen in the
-- bench: "deadlock detected", a group held 1 s by deadlock_timeout). The
-- UPDATE that follows takes FOR NO KEY UPDATE too, unless it fills the
-- lookup's `request_id` (a unique column, so a key): then it needs FOR
-- UPDATE after all, and the sequencer takes its KEY SHARE locks in id
-- order, as groups do (src/store/sequencer.rs), so that no cycle forms.

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
CREATE OR REPLACE FUNCTION apply_job_update(
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
    SELECT status INTO current_status FROM lookups WHERE id = p_lookup FOR NO KEY UPDATE;
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
