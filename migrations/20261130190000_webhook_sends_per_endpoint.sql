-- The sender claims each endpoint's oldest due sends (store::webhooks::
-- claim_due walks the endpoints and takes a few of each): one index walk
-- per endpoint, whatever the length of the queue.
CREATE INDEX webhook_sends_endpoint_due ON webhook_sends (webhook_id, next_attempt_at, id);
