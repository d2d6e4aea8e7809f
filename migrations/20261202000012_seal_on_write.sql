-- Entries are sealed as they are written (#14): the HR audit worker gives each new entry its
-- leaf in the transaction that inserts it, and the sealer only signs checkpoints. The first
-- checkpoint covering a leaf is derived from the checkpoints instead of written into every
-- row afterwards (that update was a second, non-HOT version of every entry). For entries
-- sealed before, the derived value equals the stored `sealed_in`: each seal's checkpoint was
-- the first one larger than its leaves.
create function audit_sealed_in(leaf bigint) returns bigint
    language sql stable parallel safe
    as $$ select min(size) from audit_checkpoints where size > leaf $$;
