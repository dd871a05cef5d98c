-- Idempotency-Keys of POST /v1/lookups whose lookup was erased: a replay
-- answers 410 instead of paying for the person again. A key may hold an
-- identifier (e.g. "crm-ann@example.com"), so only keyed hashes (HMAC under
-- a key derived from SERVICE_SECRET) of the key and of the request body are
-- kept, never the key.
CREATE TABLE erased_idempotency_keys (
    key_hash     text PRIMARY KEY,
    request_hash text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
