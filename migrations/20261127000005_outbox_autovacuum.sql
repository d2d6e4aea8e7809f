-- The outbox is a queue: every row is inserted and deleted within milliseconds. Vacuum it
-- early and without throttling, so the relay's sweep does not walk dead index entries.
alter table outbox set (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
