-- The sender counts each endpoint's sends in flight before it claims one
-- (at most a few per endpoint): this index holds only leased rows.
CREATE INDEX webhook_sends_leased ON webhook_sends (webhook_id) WHERE lease_owner IS NOT NULL;
