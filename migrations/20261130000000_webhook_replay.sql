-- A replay asked for while an earlier send of the same event is in flight
-- (claimed, its POST not yet recorded) cannot insert a second row: the send
-- is unique per (webhook, event). It marks the send instead, and the sender,
-- once it has recorded the current attempt, sends the event again rather
-- than deleting the row (store/webhooks.rs `record_attempt`).
ALTER TABLE webhook_sends ADD COLUMN replay boolean NOT NULL DEFAULT false;
