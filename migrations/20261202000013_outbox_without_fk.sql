-- The outbox's foreign key to activities checked, for every activity, a row the same
-- statement had just inserted, and took a key-share lock on it: a trigger, a lookup and a WAL
-- record per webhook (#14). Outbox rows are only ever inserted beside their activity (the
-- receiver's statement, `replay`), and activities are never deleted (retention and erasure
-- keep a tombstone and delete the outbox rows themselves), so the key guarded nothing.
alter table outbox drop constraint outbox_event_id_fkey;
