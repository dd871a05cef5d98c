-- One round trip per delivery: apply a job's state, as upstream reported it
-- by callback or poll, to its lookup. Locks the lookup row (serialising
-- concurrent deliveries of the same job), refuses a request_id that belongs
-- to another lookup, applies the forward-only rules, stores the profile,
-- updates the lookup and, for callbacks, records the delivery, all in the
-- caller's transaction (a single statement is its own transaction).
--
-- Returns 'applied', 'duplicate', or 'refused:<reason>'.
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
    p_body            jsonb
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
    outcome        text;
    reason         text;
BEGIN
    SELECT status INTO current_status FROM lookups WHERE id = p_lookup FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'refused';
        reason := 'unknown lookup';
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
                   credits_charged = CASE WHEN p_result <> '{}'::jsonb
                                          AND jsonb_typeof(p_result) = 'object' THEN 5 ELSE 0 END,
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
        VALUES (CASE WHEN reason = 'unknown lookup' THEN NULL ELSE p_lookup END,
                p_request_id, p_status, outcome, reason, p_body_sha256,
                CASE WHEN outcome = 'duplicate' THEN NULL ELSE p_body END);
    END IF;
    RETURN outcome || COALESCE(':' || reason, '');
END;
$$;
