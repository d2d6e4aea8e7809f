-- Event ids are UUIDv7 (time-ordered), so the primary key already gives the relay its
-- oldest-first order; the extra index cost an insert and a delete per activity.
drop index outbox_created_at_idx;
