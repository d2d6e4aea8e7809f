-- A `view` or `history` question reads the entries of one record on one webhook that count
-- (authorized creates, updates and deletes). The record index held only the record and the
-- order, so every entry of the record was fetched from the heap and then discarded when it
-- was another webhook's, a read, or unauthorized: at 10 M entries ~100 heap pages a question,
-- nearly all outside the buffer cache (BENCHMARKS.md, "Ingest cost at 10 M after session 9").
-- With the webhook, the operation and the authorization as trailing key columns, the index
-- keeps its order (the audit log's `--record` pages still read it newest first and stop at the
-- page's end) and Postgres tests those three in the index, so the heap is read only for the
-- entries the answer uses. The entries are a few bytes wider; there are no more of them.
--
-- Built in the migration's transaction (the worker's inserts into audit_log wait meanwhile;
-- the receivers go on taking webhooks). A large installation builds it first, writes flowing,
-- then starts the new version, whose migration finds it made and only drops the old:
--   create index concurrently if not exists audit_log_record_webhook_idx on audit_log
--       (record_id, activity_at desc, event_id desc, webhook, operation, authorized);
create index if not exists audit_log_record_webhook_idx
    on audit_log (record_id, activity_at desc, event_id desc, webhook, operation, authorized);
drop index if exists audit_log_record_idx;
