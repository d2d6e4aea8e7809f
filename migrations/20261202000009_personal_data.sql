-- Personal data (#12): who may record a change, how long data is kept, erasure and holds.
-- See the README's "Personal data" section.

-- HR editors per webhook. A webhook with no row here allows everyone (today's behaviour).
-- Every change is also an audit entry (`grant` / `revoke`), written in the same transaction.
create table hr_editors (
    webhook        text not null,
    aad_object_id  text not null,
    name           text,
    added_at       timestamptz not null default now(),
    primary key (webhook, aad_object_id)
);

-- Receivers keep a cached copy of the list; a change wakes them at once (they also reload
-- every few seconds, so a lost notification costs seconds, not correctness of the log).
create function hr_editors_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('teams_bridge_editors', '');
    return null;
end $$;
create trigger hr_editors_notify after insert or update or delete on hr_editors
    for each statement execute function hr_editors_notify();

-- The decision shown in Teams: false when the webhook has an editors list and the sender of
-- a create/update/delete is not on it. The worker copies it into the audit entry.
alter table activities add column authorized boolean not null default true;

-- Retention and erasure keep a tombstone of an activity: its event id, webhook, Teams'
-- activity id (an opaque message id, so a late repeat is still recognised) and times; the
-- bytes, the jsonb copy, the text and every id and name of a person are removed.
alter table activities
    alter column raw drop not null,
    alter column body drop not null,
    add column redacted text check (redacted in ('erased', 'expired')),
    add column redacted_at timestamptz;

alter table audit_log drop constraint audit_log_operation_check;
alter table audit_log add constraint audit_log_operation_check check (operation in
    ('create', 'read', 'update', 'delete', 'note', 'grant', 'revoke', 'erase'));

-- An erased or expired entry keeps its row, its sealed fields, its leaf and the digest of its
-- personal fields; the personal fields and the salt are removed. `erased_by` is the `erase`
-- entry that did it, so `verify` can tell an erasure from a deletion.
alter table audit_log
    add column authorized boolean not null default true,
    add column redacted text check (redacted in ('erased', 'expired')),
    add column redacted_at timestamptz,
    add column erased_by uuid;

create index audit_log_editor_idx on audit_log ((changes ->> 'editor'))
    where operation in ('grant', 'revoke');
-- Retention walks the existing time indexes (activities_received_at_idx,
-- audit_log_activity_at_idx): no new index on the hot insert path.

-- Legal holds win over retention and erasure.
create table legal_holds (
    kind        text not null check (kind in ('actor', 'record')),
    value       text not null,
    reason      text,
    created_at  timestamptz not null default now(),
    primary key (kind, value)
);
