-- The HR audit trail: one row per message activity, written by the `hr-audit` worker.
create table audit_log (
    event_id             uuid primary key,          -- the activity's event id: one entry per activity, however often delivered
    webhook              text not null,
    tenant_id            text,
    team_id              text,
    channel_id           text,
    actor_name           text,
    actor_aad_object_id  text,
    operation            text not null check (operation in ('create', 'read', 'update', 'delete', 'note')),
    entity               text,                      -- 'employee' for operations, null for notes
    record_id            text,
    changes              jsonb not null default '{}'::jsonb,
    message              text not null,             -- the text as typed: mention and markup removed
    activity_at          timestamptz not null,      -- Teams' timestamp (receipt time when Teams sent none)
    recorded_at          timestamptz not null default now()
);
create index audit_log_record_idx on audit_log (record_id, activity_at desc, event_id desc);
create index audit_log_actor_aad_idx on audit_log (actor_aad_object_id, activity_at desc, event_id desc);
create index audit_log_actor_name_idx on audit_log (lower(actor_name), activity_at desc, event_id desc);
create index audit_log_team_channel_idx on audit_log (team_id, channel_id, activity_at desc, event_id desc);
create index audit_log_operation_idx on audit_log (operation, activity_at desc, event_id desc);
create index audit_log_activity_at_idx on audit_log (activity_at desc, event_id desc);

-- Messages a consumer could not process after its bounded attempts, kept with the reason and
-- the exact bytes so a person can look, fix and replay.
create table dead_letters (
    id            bigserial primary key,
    consumer      text not null,
    stream        text not null,
    stream_seq    bigint not null,
    subject       text not null,
    event_id      text,
    reason        text not null,
    deliveries    bigint not null,
    headers       jsonb not null default '{}'::jsonb,
    raw           bytea not null,
    created_at    timestamptz not null default now(),
    unique (consumer, stream, stream_seq)
);
