-- A `history` or `view` question reads the activities of the last hour that change its record
-- and have no audit entry yet. It now finds them by record and time alone and compares the
-- webhook afterwards (src/ingest/answer.rs says why: with the webhook in the statement, a
-- webhook the statistics did not know yet sent the planner to the webhook's unique index,
-- reading every activity of that webhook per question). So the index leads with the record;
-- the webhook left it, and with it a column from every entry.
--
-- Built in the migration's transaction (inserts into activities wait meanwhile: measured
-- 34 s on the 10 M rows of scripts/bulk-load.sh). A large installation builds it first, writes
-- flowing, then starts the new version, whose migration finds it made and only drops the old:
--   create index concurrently if not exists activities_change_record_time_idx
--       on activities (change_record, received_at) where change_record is not null;
create index if not exists activities_change_record_time_idx
    on activities (change_record, received_at) where change_record is not null;
drop index if exists activities_change_record_idx;
