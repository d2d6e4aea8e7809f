-- Every activity Teams delivered with a valid signature, exactly as it arrived.
-- Postgres is the source of truth: the JetStream stream can always be refilled from here.
create table activities (
    event_id            uuid primary key,          -- our id (UUIDv7: time-ordered), the receipt, ce-id and Nats-Msg-Id
    webhook             text not null,             -- the configured webhook name from the URL
    activity_id         text,                      -- Teams' activity id (opaque)
    activity_type       text,                      -- "message" for outgoing webhooks
    conversation_id     text,
    team_id             text,
    channel_id          text,
    tenant_id           text,
    sender_id           text,
    sender_name         text,
    sender_aad_object_id text,
    text                text,                      -- the message text as Teams sent it (HTML, mentions)
    activity_timestamp  timestamptz,               -- Teams' own timestamp, when it parses
    raw                 bytea not null,            -- the exact bytes Teams signed
    body                jsonb not null,            -- the same bytes as jsonb, for queries
    traceparent         text,                      -- W3C trace context carried to the stream
    received_at         timestamptz not null default now()
);

-- Teams sometimes delivers a message twice: one row per (webhook, activity id).
create unique index activities_webhook_activity_id_key on activities (webhook, activity_id);
create index activities_team_channel_time_idx on activities (team_id, channel_id, received_at desc);
create index activities_sender_time_idx on activities (sender_aad_object_id, received_at desc);
create index activities_received_at_idx on activities (received_at desc);

-- Committed in the same transaction as the activity; a row here means "not yet acknowledged
-- by JetStream". The relay deletes rows once JetStream has acknowledged them.
create table outbox (
    event_id    uuid primary key references activities (event_id) on delete cascade,
    created_at  timestamptz not null default now(),
    attempts    integer not null default 0,
    last_error  text
);
create index outbox_created_at_idx on outbox (created_at, event_id);

-- Wake the relay(s) as soon as a transaction that queued work commits (NOTIFY is delivered
-- on commit, and repeated notifications in one transaction are folded into one).
create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('teams_bridge_outbox', '');
    return null;
end $$;
create trigger outbox_notify after insert on outbox
    for each statement execute function outbox_notify();
