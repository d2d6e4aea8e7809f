-- The ~2 KB activity is kept twice (exact bytes and jsonb); Postgres compresses both when a
-- row is toasted. lz4 costs a fraction of the CPU of the default pglz on the hot insert path.
-- Servers built without lz4 keep pglz (EXECUTE defers the check to run time).
do $$
begin
    execute 'alter table activities alter column raw set compression lz4, alter column body set compression lz4';
exception when others then
    raise notice 'lz4 compression unavailable (%); keeping the default', sqlerrm;
end $$;
