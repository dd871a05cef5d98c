-- An endpoint that has failed every attempt for days is disabled by the
-- sender (as the webhook services do), with an event saying so.
--
-- `failing_since`: the first failed attempt since the endpoint's last
-- success (NULL while it answers). Written only when it changes, so a busy
-- healthy endpoint's row is not rewritten on every send.
-- `disabled_reason`: why a disabled endpoint is disabled: 'failing' (the
-- sender) or 'operator' (PATCH); NULL while enabled.
ALTER TABLE webhooks
    ADD COLUMN failing_since   timestamptz,
    ADD COLUMN disabled_reason text CHECK (disabled_reason IN ('failing', 'operator'));

UPDATE webhooks SET disabled_reason = 'operator' WHERE disabled;

-- Events that are not about one lookup (`webhook.disabled`) carry no
-- lookup id; their `data` says what they are about.
ALTER TABLE events ALTER COLUMN lookup_id DROP NOT NULL;
ALTER TABLE event_inbox ALTER COLUMN lookup_id DROP NOT NULL;

-- The event types, checked where events are written too: a row the
-- sequencer could not place would stop the feed for everyone, so the
-- writer's transaction is the one that must fail. A lookup event names its
-- lookup; an endpoint event names none.
ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (
    (type IN ('lookup.queued', 'lookup.processing', 'lookup.completed', 'lookup.failed',
              'lookup.expired', 'profile.changed') AND lookup_id IS NOT NULL)
    OR (type = 'webhook.disabled' AND lookup_id IS NULL));
ALTER TABLE event_inbox ADD CONSTRAINT event_inbox_type_check CHECK (
    (type IN ('lookup.queued', 'lookup.processing', 'lookup.completed', 'lookup.failed',
              'lookup.expired', 'profile.changed') AND lookup_id IS NOT NULL)
    OR (type = 'webhook.disabled' AND lookup_id IS NULL));
