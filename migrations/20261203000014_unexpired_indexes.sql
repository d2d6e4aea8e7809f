-- Retention (#14) walks the rows that still hold personal data, oldest first, through these
-- partial indexes: a row it expires (or erasure redacts) leaves the index, so no later batch
-- or pass reads it again. Through the plain time indexes every batch read every tombstone
-- before it: on a year of ten million rows the first month went at 2,500 rows/s falling to
-- 140/s, and batches passed 1 s (BENCHMARKS.md). `replay` selects activities by the same
-- condition (`raw is not null`).
--
-- activities_unexpired_idx takes the place of activities_received_at_idx, so the receiver's
-- insert writes as many index entries as before; audit_log_unexpired_idx is one more per entry
-- (audit_log_activity_at_idx must keep the expired entries: the log lists them).
--
-- Building them takes a lock that holds back inserts into the table until it is done (on ten
-- million rows here: 37 s for activities, 7 s for audit_log). A large installation builds
-- them first, with writes flowing (13 s and 7 s on the same rows), and this migration then
-- finds them:
--   create index concurrently if not exists activities_unexpired_idx
--       on activities (received_at, event_id) where raw is not null;
--   create index concurrently if not exists audit_log_unexpired_idx
--       on audit_log (activity_at, event_id) where redacted is null;
-- (Not here: CREATE INDEX CONCURRENTLY cannot run inside the migration's transaction, and run
-- outside it, it waits for every other session's snapshot, including another replica's
-- waiting for the migration lock this one holds: a deadlock when two replicas start together.)
create index if not exists activities_unexpired_idx
    on activities (received_at, event_id) where raw is not null;
create index if not exists audit_log_unexpired_idx
    on audit_log (activity_at, event_id) where redacted is null;
drop index if exists activities_received_at_idx;
