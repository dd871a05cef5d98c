-- Which identity key a lookup's `lookup_identities` rows were last written
-- under: a short fingerprint of the key derived from SERVICE_SECRET (never
-- the key, never the secret). After a rotation, lookups still under the
-- previous key are re-keyed when matched and by a maintenance pass, so that
-- dedup and the profile cache keep working once SERVICE_SECRET_PREVIOUS is
-- dropped. NULL: written before this column (re-keyed by the pass).
ALTER TABLE lookups ADD COLUMN identities_key text;
