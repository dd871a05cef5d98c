-- A batch's Idempotency-Key is claimed by a row instead of a transaction
-- held while its items run: a keyed batch used to keep one pool connection
-- (and an advisory lock) for its whole run while its items needed others,
-- so a few concurrent keyed batches could take the whole pool.
--
-- A row with `answers` NULL is a batch still running, owned until
-- `running_until`; a crashed or abandoned run's claim runs out and the key
-- can be used again (items are deduplicated per person, so a re-run pays
-- for nobody twice).
ALTER TABLE batch_idempotency_keys
    ALTER COLUMN answers DROP NOT NULL,
    ADD COLUMN running_until timestamptz;
