-- The pgbench ceiling's table: one row per delivery, shaped like a stored
-- profile (uuid key, unique request_id, the JSONB body, a timestamp).
CREATE TABLE ceiling (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    request_id  text NOT NULL UNIQUE,
    body        jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
