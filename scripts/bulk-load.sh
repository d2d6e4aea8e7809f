#!/usr/bin/env bash
# A year of a large tenant (#14): fills a database straight through Postgres (not over HTTP)
# with N activities and their audit entries, spread over 365 days, 200 teams × 5 channels,
# 5,000 people and 100,000 records (7 in 10 updates, then creates, reads, notes, deletes), then
# times the audit log's queries with pgbench (p50/p99 of each, after a warm-up) and prints
# EXPLAIN ANALYZE for each.
#
#   scripts/bulk-load.sh [N, default 2000000]      (database teams_bridge_large, dropped first)
#   LOAD_QUERIES_ONLY=1 scripts/bulk-load.sh       (times the queries of a database loaded before)
#
# Check free disk first: about 1.2 KB per activity plus its entry and indexes. The schema is
# the service's own (`teams-bridge migrate`); event ids are time-ordered like the service's
# UUIDv7, so the indexes see the insert order production gives them.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
DB=${LOAD_DB:-teams_bridge_large}
CHUNK=250000
PSQL=(psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | head -n 1)
log() { printf '[bulk-load] %s\n' "$*" >&2; }

df -h /var/lib/postgresql | tail -n 1 >&2
if [ "${LOAD_QUERIES_ONLY:-0}" != 1 ]; then
cargo build --release --quiet --bin teams-bridge
"${PSQL[@]}" -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" NATS_URL=nats://127.0.0.1:4222 \
  TEAMS_WEBHOOKS="big=QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=" target/release/teams-bridge migrate

t0=$(date +%s)
for ((from = 1; from <= N; from += CHUNK)); do
  to=$((from + CHUNK - 1)); [ "$to" -le "$N" ] || to=$N
  "${PSQL[@]}" -d "$DB" <<SQL
create temp table g as
select g, now() - interval '365 days' * (1 - g::float8 / $N) as t,
       'T' || (g % 200) as team, 'C' || (g % 1000) as channel, (g * 7919) % 5000 as person,
       'E-' || ((g * 104729) % 100000) as record,
       case when g % 10 < 7 then 'update' when g % 10 = 7 then 'create' when g % 10 = 8 then 'read'
            when g % 20 = 9 then 'note' else 'delete' end as op
from generate_series($from::bigint, $to) g;
-- UUIDv7-shaped ids: 48 bits of milliseconds, then pseudo-random bits.
alter table g add column id uuid;
update g set id = (lpad(to_hex((extract(epoch from t) * 1000)::bigint), 12, '0')
                   || '7' || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid;
insert into activities (event_id, webhook, activity_id, activity_type, conversation_id, team_id,
                        channel_id, tenant_id, sender_id, sender_name, sender_aad_object_id, text,
                        activity_timestamp, raw, received_at, authorized, change_record)
select id, 'big', 'a' || g, 'message', channel || ';messageid=' || g, team, channel, 'tenant-1',
       'user-' || person, 'Person ' || person, 'aad-' || person,
       '<at>HR Audit</at> ' || op || ' employee ' || record || ' title="Staff Engineer" salary_band=5',
       t,
       convert_to(json_build_object('type', 'message', 'id', 'a' || g, 'timestamp', t,
           'text', '<at>HR Audit</at> ' || op || ' employee ' || record || ' title="Staff Engineer"',
           'from', json_build_object('id', 'user-' || person, 'name', 'Person ' || person,
                                     'aadObjectId', 'aad-' || person),
           'conversation', json_build_object('id', channel || ';messageid=' || g),
           'channelData', json_build_object('teamsTeamId', team, 'teamsChannelId', channel,
               'tenant', json_build_object('id', 'tenant-1')),
           'padding', repeat('x', 700))::text, 'UTF8'),
       t, true, case when op in ('create', 'update', 'delete') then record end
from g;
insert into audit_log (event_id, webhook, tenant_id, team_id, channel_id, actor_name,
                       actor_aad_object_id, operation, entity, record_id, changes, message,
                       activity_at, recorded_at)
select id, 'big', 'tenant-1', team, channel, 'Person ' || person, 'aad-' || person,
       case when op = 'note' then 'note' else op end,
       case when op = 'note' then null else 'employee' end,
       case when op = 'note' then null else record end,
       case when op in ('create', 'update') then jsonb_build_object('title', 'Staff Engineer', 'salary_band', '5')
            else '{}'::jsonb end,
       op || ' employee ' || record || ' title="Staff Engineer"', t, t
from g;
SQL
  log "loaded $to of $N ($(( $(date +%s) - t0 )) s)"
done
"${PSQL[@]}" -d "$DB" -c "vacuum analyze activities" -c "vacuum analyze audit_log"
"${PSQL[@]}" -d "$DB" -Atc "select 'size: ' || pg_size_pretty(pg_database_size('$DB')) || ', activities ' || (select count(*) from activities) || ', audit_log ' || (select count(*) from audit_log)" >&2

fi

# The queries `teams-bridge audit`, the API and the console run (src/audit/query.rs): first page
# (limit 50) and a tenth page (the cursor nine pages in), by record, by actor, by operation
# in the last 7 days. Random arguments per run.
Q="select event_id, webhook, tenant_id, team_id, channel_id, actor_name, actor_aad_object_id, operation, entity, record_id, changes, message, activity_at, recorded_at, authorized, redacted, leaf_index, audit_sealed_in(leaf_index) as sealed_in from audit_log"
declare -A QUERIES=(
  [record]="\\set r random(0, 99999)
$Q where record_id = 'E-' || :r order by activity_at desc, event_id desc limit 50;"
  [actor]="\\set p random(0, 4999)
select * from (($Q where actor_aad_object_id = 'aad-' || :p order by activity_at desc, event_id desc limit 50) union ($Q where lower(actor_name) = lower('aad-' || :p) order by activity_at desc, event_id desc limit 50)) u order by activity_at desc, event_id desc limit 50;"
  [operation-7d]="$Q where operation = 'delete' and activity_at >= now() - interval '7 days' order by activity_at desc, event_id desc limit 50;"
  [api-page-1]="$Q where true order by activity_at desc, event_id desc limit 50;"
  [api-page-10]="\\set o random(0, 100)
$Q where (activity_at, event_id) < (select activity_at, event_id from audit_log order by activity_at desc, event_id desc offset 450 + :o limit 1) order by activity_at desc, event_id desc limit 50;"
)
OUT=target/bulk-load; mkdir -p "$OUT"
for name in record actor operation-7d api-page-1 api-page-10; do
  printf '%s\n' "${QUERIES[$name]}" >"$OUT/$name.sql"
  "$PGBENCH" -n -h 127.0.0.1 -U postgres -f "$OUT/$name.sql" -T 3 "$DB" >/dev/null 2>&1 || true
  rm -f "$OUT"/pgbench_log.*
  (cd "$OUT" && "$PGBENCH" -n -h 127.0.0.1 -U postgres -f "$name.sql" -t 500 -l "$DB" >/dev/null)
  python3 - "$name" "$OUT"/pgbench_log.* <<'PY'
import sys
us = sorted(int(l.split()[2]) for f in sys.argv[2:] for l in open(f))
q = lambda p: us[min(len(us) - 1, int(p * len(us)))] / 1000
print(f"{sys.argv[1]}: {len(us)} runs, p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {us[-1] / 1000:.2f} ms")
PY
  rm -f "$OUT"/pgbench_log.*
  sed -e 's/:r/4242/g; s/:p/42/g; s/:o/0/g' -e '/^\\set/d' "$OUT/$name.sql" \
    | sed 's/^/explain (analyze, buffers) /' | "${PSQL[@]}" -d "$DB" >"$OUT/$name.explain.txt"
  # (grep -m, not head: with pipefail a grep that head cuts off fails the script.)
  grep -m 3 -E "Index|Scan" "$OUT/$name.explain.txt" | sed 's/^/    /'
  grep -E "Planning Time|Execution Time" "$OUT/$name.explain.txt" | sed 's/^/    /'
done
