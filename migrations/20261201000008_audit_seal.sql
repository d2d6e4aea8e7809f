-- The sealed audit trail (#11). Every audit entry becomes a leaf of an RFC 6962 Merkle tree;
-- the sealer assigns leaf indexes in order, keeps the tree's right frontier, and writes a
-- signed checkpoint (C2SP signed-note) for each extension. See src/domain/audit_leaf.rs for
-- the leaf encoding and the README's "Audit integrity" section.

-- The HMAC Teams sent with the activity and that verified: an auditor re-checks it with the
-- webhook's key (`teams-bridge verify --evidence`). Not a secret: it cannot give the key away.
alter table activities add column mac bytea;

alter table audit_log
    add column raw_sha256      bytea,    -- SHA-256 of the activity's exact signed bytes
    add column personal_salt   bytea,    -- 16 random bytes; erased with the personal fields
    add column personal_digest bytea,    -- salted digest of the personal fields (kept)
    add column leaf_hash       bytea,
    add column leaf_index      bigint unique,
    add column sealed_in       bigint;   -- size of the first checkpoint that covers the entry

create index audit_log_unsealed_idx on audit_log (recorded_at, event_id) where leaf_index is null;

-- The tree as the sealer left it: its size and right frontier (one hash per set bit).
create table audit_tree (
    id        boolean primary key default true check (id),
    size      bigint not null default 0,
    frontier  bytea[] not null default '{}'
);
insert into audit_tree default values;

create table audit_checkpoints (
    size        bigint primary key,
    root        bytea not null,
    note        text not null,            -- the signed note, as published
    created_at  timestamptz not null default now(),
    published   boolean not null default false
);
create index audit_checkpoints_unpublished_idx on audit_checkpoints (size) where not published;
