-- Sandbox results are synthetic: every lookup says whether it was made
-- against the built-in simulator, so an operator can never take one for a
-- real, paid result (and a database cannot silently mix the two).
ALTER TABLE lookups ADD COLUMN synthetic boolean NOT NULL DEFAULT false;

-- Callback tokens are now derived from SERVICE_SECRET (an HMAC of the lookup
-- id) and never stored. Lookups created before keep their stored token
-- until they finish; new rows leave it NULL.
ALTER TABLE lookups ALTER COLUMN callback_token DROP NOT NULL;
UPDATE lookups SET callback_token = NULL WHERE status IN ('completed', 'failed');
CREATE INDEX lookups_synthetic ON lookups (synthetic);
