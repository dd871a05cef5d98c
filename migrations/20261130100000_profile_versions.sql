-- Profile versions and the `profile.changed` event (issue 18).
-- Replaces: record_lookup_event() (last defined in 20261130000001_event_sequencer.sql).
--
-- A refresh is a new lookup with its own profile; the person's earlier
-- profiles stay as versions. When a completed lookup's result differs from
-- the person's previous profile, the transaction that stores it writes the
-- difference into `profiles.change` (src/store/versions.rs); the deferred
-- status trigger, which runs at COMMIT after that write, appends
-- `profile.changed` right after `lookup.completed`, so the sequencer gives
-- it the next place in `events`.

-- `{"previous_profile_id", "added", "removed", "following_count"}`, null
-- for a first version or one that changed nothing.
ALTER TABLE profiles ADD COLUMN change jsonb;

-- Event payloads beyond (lookup_id, type, at, profile_id): the change of a
-- `profile.changed` event. The sequencer copies it from the inbox.
ALTER TABLE event_inbox ADD COLUMN data jsonb;
ALTER TABLE events ADD COLUMN data jsonb;

ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN ('lookup.queued',
    'lookup.processing', 'lookup.completed', 'lookup.failed', 'lookup.expired',
    'profile.changed'));

CREATE OR REPLACE FUNCTION record_lookup_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_profile uuid;
    new_change jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM lookups WHERE id = NEW.id) THEN
        RETURN NULL;
    END IF;
    IF NEW.status = 'completed' THEN
        SELECT id, change INTO new_profile, new_change FROM profiles WHERE lookup_id = NEW.id;
    END IF;
    INSERT INTO event_inbox (lookup_id, type, profile_id)
        VALUES (NEW.id, 'lookup.' || NEW.status, new_profile);
    IF new_change IS NOT NULL THEN
        INSERT INTO event_inbox (lookup_id, type, profile_id, data)
            VALUES (NEW.id, 'profile.changed', new_profile, new_change);
    END IF;
    RETURN NULL;
END
$$;
