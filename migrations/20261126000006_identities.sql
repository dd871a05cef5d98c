-- The identities a lookup's person is recognised by (contract section 5:
-- email, phone, profile URL each on its own, else name with company), as
-- keyed hashes (HMAC under a key derived from SERVICE_SECRET): in-flight
-- dedup, the profile cache and erasure find lookups through them, and no
-- identifier is kept here in clear text or as a plain digest.
CREATE TABLE lookup_identities (
    identity  text NOT NULL,
    lookup_id uuid NOT NULL REFERENCES lookups (id) ON DELETE CASCADE,
    PRIMARY KEY (identity, lookup_id)
);
CREATE INDEX lookup_identities_lookup ON lookup_identities (lookup_id);

-- Suppressed identities, keyed hashes only. The older `suppressions` table
-- (unkeyed SHA-256 digests) is still honoured and gains no rows.
CREATE TABLE suppressed_identities (
    identity   text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
