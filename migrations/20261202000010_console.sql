-- The auditor's console (#13): accounts, sessions and the access log the console shows.

-- One row per auditor. The sign-in token is printed once by `teams-bridge console add-user`
-- and kept only as its SHA-256 (it is 256 random bits: a slow hash adds nothing).
create table console_users (
    name        text primary key,
    token_hash  bytea not null unique,
    created_at  timestamptz not null default now()
);

-- A signed-in browser: the cookie holds a random id, the table its SHA-256.
create table console_sessions (
    id_hash     bytea primary key,
    user_name   text not null references console_users (name) on delete cascade,
    csrf        text not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null
);
create index console_sessions_expiry_idx on console_sessions (expires_at);

-- Who looked at what, when: every page view and export of the console.
create table console_access (
    id         bigserial primary key,
    user_name  text not null,
    method     text not null,
    path       text not null,
    at         timestamptz not null default now()
);
create index console_access_at_idx on console_access (at desc);
