-- Events without a global lock (issue "a write path that scales").
--
-- Until now the `record_lookup_event` trigger drew each event id under one
-- database-wide advisory lock held until its transaction's commit had been
-- flushed, so that ids became visible in increasing order: every status
-- change of every replica waited for every other one's fsync.
--
-- Now a writer only appends its event to `event_inbox` (no lock, no NOTIFY:
-- NOTIFY itself serialises committing transactions). One sequencer per
-- database, elected among the replicas with a session advisory lock, moves
-- committed inbox rows into `events` in batches: ids are drawn in its
-- transaction, one batch at a time, so they still become visible in
-- increasing order, and a reader that has seen id N never later finds a
-- smaller one. The same transaction queues the webhook sends and notifies
-- the replicas' event streams (src/events/sequencer.rs).

-- Status changes committed, not yet given their place in `events`. No
-- foreign key: an erasure must not wait for (or deadlock with) a batch that
-- holds these rows; the sequencer drops rows whose lookup is gone.
CREATE TABLE event_inbox (
    id          bigserial PRIMARY KEY,
    lookup_id   uuid NOT NULL,
    type        text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    profile_id  uuid
);

-- The fence. A replica that becomes the sequencer increments `epoch`; every
-- batch locks this row and checks it still holds the epoch it started with,
-- so a leader that was replaced (its lock lost) can never assign an id.
CREATE TABLE event_sequencer (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch       bigint NOT NULL DEFAULT 0,
    leader      uuid,
    leading_since timestamptz
);
INSERT INTO event_sequencer DEFAULT VALUES;

-- The trigger keeps its place (deferred to COMMIT, so the profile row exists
-- and a lookup deleted later in the same transaction announces nothing) but
-- takes no lock.
CREATE OR REPLACE FUNCTION record_lookup_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_profile uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM lookups WHERE id = NEW.id) THEN
        RETURN NULL;
    END IF;
    IF NEW.status = 'completed' THEN
        SELECT id INTO new_profile FROM profiles WHERE lookup_id = NEW.id;
    END IF;
    INSERT INTO event_inbox (lookup_id, type, profile_id)
        VALUES (NEW.id, 'lookup.' || NEW.status, new_profile);
    RETURN NULL;
END
$$;
