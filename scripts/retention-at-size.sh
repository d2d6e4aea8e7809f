#!/usr/bin/env bash
# Retention at size (#14: "retention removes a month without long locks"): on the database
# scripts/bulk-load.sh filled (a year of activities and entries), removes the oldest month,
# then the next one, then runs a pass with nothing left to do, each with `teams-bridge
# retention` (the worker's pass, run now). For each: the rows, the wall time, the batches and
# the longest one (the CLI's own figures: the longest any row lock was held), and the longest
# transaction of the pass as pg_stat_activity saw it (sampled every 50 ms, a second opinion).
#
#   scripts/retention-at-size.sh [DAYS_KEPT, default 335]     (LOAD_DB, default teams_bridge_large)
#
# It changes the database (the removed rows become tombstones): load it again to repeat.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=${1:-335}
DB=${LOAD_DB:-teams_bridge_large}
PSQL=(psql -q -X -At -h 127.0.0.1 -U postgres -d "$DB")
log() { printf '[retention] %s\n' "$*" >&2; }
cargo build --release --quiet --bin teams-bridge
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" NATS_URL=nats://127.0.0.1:4222
export TEAMS_WEBHOOKS="big=QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=" RUST_LOG=warn
"${PSQL[@]}" -c "select 'activities ' || count(*) || ', kept raw ' || count(raw) from activities" >&2

# The longest open transaction of the application's sessions, sampled until stopped.
sample() {
  local max=0 v
  while [ ! -e "$1.stop" ]; do
    v=$("${PSQL[@]}" -c "select coalesce(max(extract(epoch from clock_timestamp() - xact_start) * 1000)::int, 0) \
        from pg_stat_activity where application_name = 'teams-bridge' and state <> 'idle'")
    [ "$v" -le "$max" ] || max=$v
    sleep 0.05
  done
  echo "$max" >"$1"
}

pass() {
  local days=$1 what=$2 mark t0 out
  mark=$(mktemp); rm -f "$mark.stop"
  sample "$mark" & local sampler=$!
  t0=$(date +%s.%N)
  out=$(ACTIVITY_RETENTION_DAYS=$days AUDIT_RETENTION_DAYS=$days target/release/teams-bridge retention)
  local secs; secs=$(echo "$(date +%s.%N) - $t0" | bc)
  touch "$mark.stop"; wait "$sampler"
  printf '| %s (keep %s days) | %s | %.1f s | %s ms |\n' "$what" "$days" "$(echo "$out" | tr '\n' ' ')" "$secs" "$(cat "$mark")"
  rm -f "$mark" "$mark.stop"
}

echo "| pass | what the CLI says | wall | longest transaction seen |"
echo "|---|---|---|---|"
pass "$KEEP" "the oldest month"
pass $((KEEP - 30)) "the next month"
pass $((KEEP - 30)) "nothing left"
# What autovacuum does in production (it is off on CI's and the bench's Postgres): the
# entries of expired rows leave the partial indexes, then the same again.
t0=$(date +%s)
"${PSQL[@]}" -c "vacuum activities" -c "vacuum audit_log"
log "vacuum of both tables: $(( $(date +%s) - t0 )) s"
pass $((KEEP - 60)) "a third month, after vacuum"
pass $((KEEP - 60)) "nothing left, after vacuum"
