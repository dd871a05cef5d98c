-- Queue tables: every row is deleted soon after it is written, so each
-- burst leaves as many dead rows, which every read of the queue walks past
-- until vacuum removes them. The default (vacuum once a fifth of the table
-- is dead) waits far too long for a table that is empty when healthy:
-- vacuum them after a few thousand dead rows instead.
ALTER TABLE event_inbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
ALTER TABLE webhook_sends SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
ALTER TABLE facet_changes SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
