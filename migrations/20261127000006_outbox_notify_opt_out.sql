-- A transaction that sends NOTIFY takes a cluster-wide lock from just before its commit until
-- the commit is over (notifications must be queued in commit order), so notifying commits run
-- one at a time, WAL flush included: the group committer's concurrent commits would queue
-- behind each other. `serve` tells its own relay about its commits directly, so connections
-- opened by teams-bridge set `teams_bridge.notify = off`. Every other writer (a refill typed in
-- psql, another tool) still wakes relays running alone.
create or replace function outbox_notify() returns trigger language plpgsql as $$
begin
    if coalesce(current_setting('teams_bridge.notify', true), '') <> 'off' then
        perform pg_notify('teams_bridge_outbox', '');
    end if;
    return null;
end $$;
