#!/usr/bin/env bash
# What a durable commit costs this machine's Postgres, without teams-bridge (#14): pgbench at a
# fixed rate, Postgres' CPU per transaction (its backends and its own processes, from /proc),
# for the transaction shapes a webhook's commit could take. The floor under the receiver's
# ~390 us of Postgres CPU per commit (BENCHMARKS.md, "whom Postgres works for").
#
#   scripts/commit-floor.sh [SECONDS, default 15]     (database teams_bridge_commit_floor)
#
# Rows are ~1.2 KB like an activity, in a table with a primary key, a unique pair and a time
# index; 4 clients, 700 transactions/s (the receiver's commit rate at 2,100 webhooks/s) and
# 2,800/s.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
DB=teams_bridge_commit_floor
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | head -n 1)
PSQL=(psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
OUT=target/commit-floor; mkdir -p "$OUT"
"${PSQL[@]}" -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"

ROW="gen_random_uuid(), 'w', md5(random()::text), convert_to(repeat(md5(random()::text), 36), 'UTF8')"
INSERT3="insert into t (id, webhook, activity_id, raw) select $ROW from generate_series(1, 3);"
declare -A SCRIPTS=(
  [one-row-autocommit]="insert into t (id, webhook, activity_id, raw) select $ROW;"
  [three-rows-like-the-receiver]="begin;
set local statement_timeout = 3000;
$INSERT3
commit;"
  [three-rows-pipelined]="\\startpipeline
begin;
set local statement_timeout = 3000;
$INSERT3
commit;
\\endpipeline"
  [three-rows-no-flush-wait]="begin;
set local statement_timeout = 3000;
set local synchronous_commit = off;
$INSERT3
commit;"
)
declare -A ROWS=([one-row-autocommit]=1)

# utime + stime ticks of every Postgres process of this database and the server's own.
pg_ticks() {
  local sum=0 pid f
  for pid in $(pgrep -u postgres -f "postgres: .*: (postgres $DB |walwriter|checkpointer|background writer)"); do
    read -r -a f < <(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
    sum=$((sum + f[11] + f[12]))
  done
  echo "$sum"
}
count() { "${PSQL[@]}" -d "$DB" -Atc "select count(*) from t"; }

printf '| transaction | rate/s | Postgres CPU µs per transaction | latency avg ms |\n|---|---|---|---|\n'
for name in one-row-autocommit three-rows-like-the-receiver three-rows-pipelined three-rows-no-flush-wait; do
  printf '%s\n' "${SCRIPTS[$name]}" >"$OUT/$name.sql"
  for rate in 700 2800; do
    "${PSQL[@]}" -d "$DB" -c "drop table if exists t" \
      -c "create table t (id uuid primary key, webhook text not null, activity_id text not null,
            received_at timestamptz not null default now(), raw bytea not null, unique (webhook, activity_id))" \
      -c "create index on t (received_at, id)"
    "$PGBENCH" -n -h 127.0.0.1 -U postgres -M extended -c 4 -j 1 -R "$rate" -T "$SECS" \
      -f "$OUT/$name.sql" "$DB" >"$OUT/$name.$rate.txt" 2>&1 &
    bench=$!
    # Measure the middle of the run: connections made, the last transactions not yet done.
    sleep 1; t0=$(pg_ticks); n0=$(count)
    sleep $((SECS - 3)); t1=$(pg_ticks); n1=$(count)
    wait "$bench"
    tx=$(((n1 - n0) / ${ROWS[$name]:-3}))
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$OUT/$name.$rate.txt")
    printf '| %s | %s | %s | %s |\n' "$name" "$rate" "$(((t1 - t0) * 10000 / tx))" "$lat"
  done
done
"${PSQL[@]}" -d postgres -c "drop database $DB"
