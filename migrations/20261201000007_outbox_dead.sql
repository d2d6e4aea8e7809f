-- A row JetStream refuses for ever (a body over the server's max_payload, a subject it
-- rejects) must not hold up the rows behind it. A refused row waits before its next attempt
-- (`not_before`, growing with its refusals) so the sweep passes over it, and after
-- RELAY_MAX_REFUSALS it moves to `outbox_dead`, where `teams-bridge replay --dead` finds it.
-- Failures while NATS is merely away are attempts, not refusals: an outage never kills a row.
alter table outbox add column refusals integer not null default 0,
                   add column not_before timestamptz;

create table outbox_dead (
    event_id    uuid primary key references activities (event_id) on delete cascade,
    created_at  timestamptz not null,              -- when the row was first queued
    attempts    integer not null,
    last_error  text,
    dead_at     timestamptz not null default now()
);
