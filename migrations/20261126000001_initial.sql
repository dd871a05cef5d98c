-- Lookups: one row per paid (or deduplicated-away) request to the upstream
-- Personal Interests API. The row is also the work item of the submitter and
-- the poller, so nothing in flight lives only in memory.
CREATE TABLE lookups (
    id                uuid PRIMARY KEY,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'queued', 'processing', 'completed', 'failed', 'expired')),
    email             text,
    phone             text,
    social_media_url  text,
    name              text,
    company           text,
    -- sha256 over the normalised identifiers: in-flight dedup and profile cache.
    subject_key       text NOT NULL,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Secret part of this lookup's callback URL (>= 128 bits, base64url).
    callback_token    text NOT NULL,
    request_id        text UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    submitted_at      timestamptz,
    completed_at      timestamptz,
    credits_charged   integer NOT NULL DEFAULT 0,
    error             text,

    -- Work queue columns. A worker claims a row by setting a lease; a crashed
    -- worker's lease simply runs out and another worker takes the row over.
    next_action_at    timestamptz NOT NULL DEFAULT now(),
    lease_owner       uuid,
    lease_until       timestamptz,
    -- Set and committed *before* a submit request leaves the process, cleared
    -- once its outcome is known. A row found with this set and no request_id
    -- had a submit whose outcome is unknown: it must not be re-sent blindly.
    submit_started_at timestamptz,
    submit_attempts   integer NOT NULL DEFAULT 0,
    ambiguous_submits integer NOT NULL DEFAULT 0,
    poll_count        integer NOT NULL DEFAULT 0,
    last_polled_at    timestamptz
);

-- At most one unfinished lookup per person: concurrent requests for the same
-- subject, on any replica, collapse onto one paid job.
CREATE UNIQUE INDEX lookups_one_in_flight_per_subject
    ON lookups (subject_key) WHERE status IN ('pending', 'queued', 'processing');
CREATE INDEX lookups_due ON lookups (next_action_at)
    WHERE status IN ('pending', 'queued', 'processing', 'expired');
CREATE INDEX lookups_created ON lookups (created_at DESC, id DESC);
CREATE INDEX lookups_subject ON lookups (subject_key, completed_at DESC);
CREATE INDEX lookups_email ON lookups (lower(email));
CREATE INDEX lookups_phone ON lookups (lower(phone));
CREATE INDEX lookups_social ON lookups (lower(social_media_url));
CREATE INDEX lookups_name ON lookups (lower(name));

-- Completed profiles, stored as received. The *_facets columns are lowercased
-- extracts of `result` that the list filters search through GIN indexes.
CREATE TABLE profiles (
    id                uuid PRIMARY KEY,
    lookup_id         uuid NOT NULL UNIQUE REFERENCES lookups (id) ON DELETE CASCADE,
    request_id        text NOT NULL UNIQUE,
    result            jsonb NOT NULL,
    completed_on      timestamptz,
    received_via      text NOT NULL CHECK (received_via IN ('callback', 'poll')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    interest_facets   text[] NOT NULL DEFAULT '{}',
    category_facets   text[] NOT NULL DEFAULT '{}',
    brand_facets      text[] NOT NULL DEFAULT '{}',
    archetype_facets  text[] NOT NULL DEFAULT '{}',
    industry_facets   text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX profiles_created ON profiles (created_at DESC, id DESC);
CREATE INDEX profiles_interest ON profiles USING gin (interest_facets);
CREATE INDEX profiles_category ON profiles USING gin (category_facets);
CREATE INDEX profiles_brand ON profiles USING gin (brand_facets);
CREATE INDEX profiles_archetype ON profiles USING gin (archetype_facets);
CREATE INDEX profiles_industry ON profiles USING gin (industry_facets);

-- Every callback delivery that reached the receiver, whatever became of it.
CREATE TABLE deliveries (
    id                bigserial PRIMARY KEY,
    received_at       timestamptz NOT NULL DEFAULT now(),
    lookup_id         uuid REFERENCES lookups (id) ON DELETE CASCADE,
    request_id        text,
    payload_status    text,
    outcome           text NOT NULL CHECK (outcome IN ('applied', 'duplicate', 'refused')),
    reason            text,
    body_sha256       text NOT NULL,
    -- The body as received (NULL when it was not JSON or not authentic).
    body              jsonb
);
CREATE INDEX deliveries_lookup ON deliveries (lookup_id);
CREATE INDEX deliveries_received ON deliveries (received_at);

-- Idempotency-Key records for POST /v1/lookups: the first response is kept
-- and replayed for the same key and body.
CREATE TABLE idempotency_keys (
    key               text PRIMARY KEY,
    request_sha256    text NOT NULL,
    lookup_id         uuid REFERENCES lookups (id) ON DELETE CASCADE,
    response_status   smallint NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Every request made to the upstream API, for pacing (shared by all
-- replicas) and for the stats endpoint.
CREATE TABLE upstream_calls (
    id                bigserial PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    -- NULL while a slot is reserved but not yet used.
    kind              text CHECK (kind IN ('submit', 'poll')),
    outcome           text
);
CREATE INDEX upstream_calls_at ON upstream_calls (at);

-- Account-wide pause learned from upstream (Retry-After, a spent
-- X-RateLimit-Remaining). One row.
CREATE TABLE upstream_pause (
    id                smallint PRIMARY KEY CHECK (id = 1),
    until             timestamptz NOT NULL
);
INSERT INTO upstream_pause (id, until) VALUES (1, '1970-01-01T00:00:00Z');

-- Erased subjects whose future lookups are refused. Only hashes are kept.
CREATE TABLE suppressions (
    identifier_sha256 text PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now()
);
