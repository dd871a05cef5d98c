-- Lookup events (contract section 5, GET /v1/events) and outgoing webhooks.

-- One row per lookup status change, written by the trigger below in the
-- transaction that made the change: none is lost, none is invented. The id
-- is the SSE event id and the Standard Webhooks `webhook-id`.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    lookup_id   uuid NOT NULL REFERENCES lookups (id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type IN ('lookup.queued', 'lookup.processing',
                    'lookup.completed', 'lookup.failed', 'lookup.expired')),
    at          timestamptz NOT NULL DEFAULT now(),
    profile_id  uuid
);
CREATE INDEX events_lookup ON events (lookup_id);
CREATE INDEX events_at ON events (at);

-- Registered endpoints. The signing secret is sealed (XChaCha20-Poly1305
-- under a key derived from SERVICE_SECRET): a dump of this table does not
-- reveal it.
CREATE TABLE webhooks (
    id             uuid PRIMARY KEY,
    url            text NOT NULL,
    events         text[] NOT NULL,
    description    text,
    secret_sealed  bytea NOT NULL,
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Pending sends: a queue claimed with FOR UPDATE SKIP LOCKED and a lease, so
-- that each send is made by one replica and a crashed sender's send comes
-- back. A row is deleted once acknowledged or given up.
CREATE TABLE webhook_sends (
    id               bigserial PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    -- Attempts already recorded for this send.
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      uuid,
    lease_until      timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_sends_due ON webhook_sends (next_attempt_at);
CREATE INDEX webhook_sends_event ON webhook_sends (event_id);

-- Every attempt, whatever became of it (GET /v1/webhooks/{id}/attempts).
CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    webhook_id   uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id     bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    status_code  smallint,
    error        text,
    duration_ms  integer NOT NULL
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, id DESC);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id);

-- Records a lookup's status change as an event, queues its webhook sends and
-- wakes the event streams of every replica (NOTIFY is delivered on commit).
--
-- It runs as a deferred constraint trigger, i.e. at COMMIT of the changing
-- transaction, and takes a transaction-scoped lock before drawing the id: ids
-- therefore become visible in increasing order, so a reader that has seen id
-- N can never later find a smaller one (streams read `id > last sent`). At
-- commit time the transaction takes no other lock, so this cannot deadlock,
-- and the profile row exists whatever order the statements ran in.
CREATE FUNCTION record_lookup_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_type    text := 'lookup.' || NEW.status;
    new_profile uuid;
    new_event   bigint;
BEGIN
    -- Deleted later in the same transaction: nothing to announce.
    IF NOT EXISTS (SELECT 1 FROM lookups WHERE id = NEW.id) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('interests-receiver/events', 0));
    IF NEW.status = 'completed' THEN
        SELECT id INTO new_profile FROM profiles WHERE lookup_id = NEW.id;
    END IF;
    INSERT INTO events (lookup_id, type, profile_id)
        VALUES (NEW.id, new_type, new_profile)
        RETURNING id INTO new_event;
    INSERT INTO webhook_sends (webhook_id, event_id)
        SELECT w.id, new_event FROM webhooks w
        WHERE NOT w.disabled AND new_type = ANY (w.events);
    PERFORM pg_notify('events', new_event::text);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER lookups_event_on_insert
    AFTER INSERT ON lookups
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.status IN ('queued', 'processing', 'completed', 'failed', 'expired'))
    EXECUTE FUNCTION record_lookup_event();

CREATE CONSTRAINT TRIGGER lookups_event_on_status
    AFTER UPDATE OF status ON lookups
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('queued', 'processing', 'completed', 'failed', 'expired'))
    EXECUTE FUNCTION record_lookup_event();
