-- Each claim of a lookup by a worker gets its own id. Every write a worker
-- makes after its upstream call names that id, so a worker whose lease ran
-- out (and whose job another worker took over) can no longer overwrite the
-- outcome or clear the new owner's lease.
ALTER TABLE lookups ADD COLUMN claim_id uuid;
