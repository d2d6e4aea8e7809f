#!/usr/bin/env bash
# CPU per webhook, this checkout against an earlier commit, built side by side and measured in
# one invocation on this machine (#14: "at most half of 0bc840b's in the same run").
#
#   scripts/cost-compare.sh [BASE_REV, default 0bc840b]
#
# Builds BASE_REV in a git worktree under target/cost-base/ (its own target directory) and
# this checkout, both release. Then, for ROUNDS rounds (the order of the two sides alternates,
# so drift of the machine falls on both), each side gets a fresh database and stream, its own
# `serve` and `worker hr-audit` (this checkout's worker seals the audit log, as in production),
# and this checkout's load generator runs the same scenarios against it:
#   throughput  closed loop c=COST_CONCURRENCY, the floor first (--target both): capacity and
#               bridge/floor ratio;
#   quarter     open loop at a quarter of this checkout's capacity (the same rate for both
#               sides): latency p50/p99/max and CPU per webhook at an ordinary load.
# CPU per webhook = CPU seconds of the service, the worker, Postgres and NATS (from /proc),
# from the start of the load to the end of the ledger check, over the webhooks answered 200.
# The table (median of the rounds) goes to stdout, target/cost/<stamp>/ and, unless
# COST_NO_WRITE=1, BENCHMARKS.md (between the cost markers), with the machine's fdatasync probe.
#
# Knobs: COST_SECONDS [20], COST_ROUNDS [2], COST_CONCURRENCY [1024], COST_RATE (fixes the
# open-loop rate instead of a quarter of the measured capacity), COST_PORT [29790];
# for profiling: COST_SIDES=head (one side only), COST_NO_QUARTER=1 (throughput only),
# COST_NO_THROUGHPUT=1 with COST_RATE (the open loop only); for ingest at size: COST_DATABASE
# (this checkout runs on that existing database, kept: e.g. the one scripts/bulk-load.sh
# filled) and COST_NO_SEAL=1 (no signing key, so no checkpoints, on either side); to compare
# settings rather than commits: COST_BASE_BIN (a binary to run as the base side instead of
# building BASE_REV, which then only labels it; it seals like this checkout), COST_HEAD_ENV / COST_BASE_ENV (VAR=value
# words put in that side's `serve` and `worker` environment, e.g. TOKIO_WORKER_THREADS=1).
# COST_SKELETON=1 adds a third side to every round: teams-bridge-skeleton (bench/src/skeleton),
# the least pipeline on the same parts that keeps the ledger exact, the lower bound for the cost
# per webhook; COST_SKEL_ENV sets its environment (SKELETON_COMMIT_LINGER_MS=3 …).
# Only a comparison of two commits on fresh databases rewrites BENCHMARKS.md's table.
set -euo pipefail

# A relative COST_BASE_BIN is relative to where the script was started.
[ -z "${COST_BASE_BIN:-}" ] || COST_BASE_BIN=$(realpath "$COST_BASE_BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE_REV=${1:-0bc840b}
SECS=${COST_SECONDS:-20}
ROUNDS=${COST_ROUNDS:-2}
CONCURRENCY=${COST_CONCURRENCY:-1024}
PORT=${COST_PORT:-29790}
WORKER_PORT=$((PORT + 1))
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
run_dir cost

if [ -n "${COST_BASE_BIN:-}" ]; then
  log "building this checkout ($(git rev-parse --short HEAD)), release; the base side runs $COST_BASE_BIN ($BASE_REV)"
else
  log "building this checkout ($(git rev-parse --short HEAD)) and $BASE_REV, release"
fi
for word in ${COST_HEAD_ENV:-} ${COST_BASE_ENV:-} ${COST_SKEL_ENV:-}; do
  [[ "$word" == [A-Za-z_]*=* ]] || { log "COST_HEAD_ENV / COST_BASE_ENV take VAR=value words, not '$word'"; exit 2; }
done
cargo build --release --quiet --workspace
BASE_SRC="$ROOT/target/cost-base/src"
if [ "${COST_SIDES:-}" != head ] && [ -z "${COST_BASE_BIN:-}" ]; then
  if [ ! -d "$BASE_SRC" ]; then
    git worktree prune
    git worktree add --detach "$BASE_SRC" "$BASE_REV" >/dev/null
  else
    git -C "$BASE_SRC" checkout --quiet --detach "$BASE_REV"
  fi
  (cd "$BASE_SRC" && CARGO_TARGET_DIR="$ROOT/target/cost-base/target" cargo build --release --quiet --bin teams-bridge)
fi
declare -A BIN=([head]="$ROOT/target/release/teams-bridge" [base]="${COST_BASE_BIN:-$ROOT/target/cost-base/target/release/teams-bridge}" [skel]="$ROOT/target/release/teams-bridge-skeleton")
declare -A SIDE_ENV=([head]="${COST_HEAD_ENV:-}" [base]="${COST_BASE_ENV:-}" [skel]="${COST_SKEL_ENV:-}")
# COST_SKELETON=1: the skeleton is a third side of every round (see the header).
SKEL=""
[ -z "${COST_SKELETON:-}" ] || SKEL=" skel"
BENCH_BIN="$ROOT/target/release/teams-bridge-bench"

TOKEN=$(head -c 32 /dev/urandom | base64)
export TEAMS_BRIDGE_SECRET="$TOKEN"
export NATS_URL="nats://127.0.0.1:4222"
export LISTEN_ADDR="127.0.0.1:$PORT"
export WORKER_LISTEN_ADDR="127.0.0.1:$WORKER_PORT"
export RUST_LOG="${RUST_LOG:-info,sqlx=warn}"
unset TEAMS_BRIDGE_CONFIG AUDIT_SIGNING_KEY_FILE
"${BIN[head]}" audit keygen --out "$OUT/audit.key" >/dev/null
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

SERVE_PID=""
WORKER_PID=""
cleanup() {
  stop_pid "$SERVE_PID"
  stop_pid "$WORKER_PID"
  [ -z "${NATS_STREAM:-}" ] || delete_stream "$NATS_STREAM" || true
}
trap cleanup EXIT

# Starts side $1 (head or base) on a fresh database and stream, label $2.
start_side() {
  local side=$1 label=$2
  local db=teams_bridge_cost_$side
  [ "$side" != head ] || db=${COST_DATABASE:-$db}
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
  export NATS_STREAM="COST_${label//-/_}_$STAMP"
  export NATS_SUBJECT_PREFIX="cost$side$RANDOM"
  export HR_AUDIT_CONSUMER="hr-audit-cost"
  export TEAMS_WEBHOOKS="warm=$TOKEN,run=$TOKEN"
  # This checkout seals, as in production; 0bc840b could not. A base that is this checkout's
  # binary too (COST_BASE_BIN) seals as well, or the comparison would measure the sealing.
  if { [ "$side" = head ] || { [ "$side" = base ] && [ -n "${COST_BASE_BIN:-}" ]; }; } && [ -z "${COST_NO_SEAL:-}" ]; then
    export AUDIT_SIGNING_KEY_FILE="$OUT/audit.key"
  else
    unset AUDIT_SIGNING_KEY_FILE
  fi
  [ "$db" = "${COST_DATABASE:-}" ] \
    || psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $db with (force)" >/dev/null
  local extra
  read -r -a extra <<<"${SIDE_ENV[$side]}"
  env "${extra[@]}" "${BIN[$side]}" serve >>"$OUT/$label.serve.log" 2>&1 &
  SERVE_PID=$!
  wait_ready "http://127.0.0.1:$PORT/readyz" "$SERVE_PID" "$OUT/$label.serve.log"
  env "${extra[@]}" "${BIN[$side]}" worker hr-audit >>"$OUT/$label.worker.log" 2>&1 &
  WORKER_PID=$!
  sleep 1
  kill -0 "$WORKER_PID" 2>/dev/null || { log "worker died; see $OUT/$label.worker.log"; exit 1; }
}
stop_side() {
  stop_pid "$SERVE_PID"; SERVE_PID=""
  stop_pid "$WORKER_PID"; WORKER_PID=""
  delete_stream "$NATS_STREAM" || true
}
# One scenario against the running side: bench label, webhook, then the load's flags.
load() {
  local label=$1; shift
  "$BENCH_BIN" --url "http://127.0.0.1:$PORT" --label "$label" \
    --service-pid "$SERVE_PID" --worker-pid "$WORKER_PID" "$@" >"$OUT/$label.txt" \
    || { log "$label FAILED: $(grep -v '^{' "$OUT/$label.txt" | tail -n 3)"; FAILED="$FAILED $label"; }
  grep '^{' "$OUT/$label.txt" | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l); r['side'] = '$label'.split('.')[0]; r['round'] = '$label'.split('.')[2]
    print(json.dumps(r))" >>"$RESULTS"
}
# One scenario on a fresh side: side, scenario, round, then the load's flags. A 3 s warm-up
# on its own webhook first, so the ledger of the measured one stays exact.
scenario() {
  local side=$1 name=$2 round=$3; shift 3
  wait_quiet
  start_side "$side" "$side-$name$round"
  "$BENCH_BIN" --url "http://127.0.0.1:$PORT" --label warm --webhook warm --rate 1000 --duration 3 --connections 64 >/dev/null || true
  load "$side.$name.$round" --webhook run "$@"
  stop_side
}

FAILED=""
python3 scripts/fsync-probe.py 5 /var/lib/postgresql | tail -n 1 | tee "$OUT/fsync.txt" >&2
for r in $(seq 1 "$ROUNDS"); do
  [ -z "${COST_NO_THROUGHPUT:-}" ] || break
  if [ $((r % 2)) -eq 1 ]; then order="head base$SKEL"; else order="${SKEL# } base head"; fi
  order=${COST_SIDES:-$order}
  for side in $order; do
    log "round $r: $side throughput"
    # The side's closed-loop capacity, the floor in the same invocation.
    scenario "$side" throughput "$r" --target both --concurrency "$CONCURRENCY" --duration "$SECS"
  done
done
if [ -n "${COST_RATE:-}" ]; then
  RATE=$COST_RATE
else
  RATE=$(python3 - "$RESULTS" <<'PY'
import json, sys, statistics
rows = [r for r in map(json.loads, open(sys.argv[1])) if r.get("target") == "bridge"]
# This checkout's capacity; when it did not run (COST_SIDES), the capacity of what did.
caps = [r["ok_rps"] for r in rows if r["side"] == "head"] or [r["ok_rps"] for r in rows]
print(int(statistics.median(caps) / 4 // 50 * 50))
PY
)
fi
log "open loop at $RATE/s (a quarter of this checkout's capacity)"
for r in $(seq 1 "$ROUNDS"); do
  [ -z "${COST_NO_QUARTER:-}" ] || break
  if [ $((r % 2)) -eq 1 ]; then order="${SKEL# } base head"; else order="head base$SKEL"; fi
  order=${COST_SIDES:-$order}
  for side in $order; do
    log "round $r: $side at $RATE/s"
    scenario "$side" quarter "$r" --rate "$RATE" --duration "$SECS" --connections 64
  done
done
python3 scripts/fsync-probe.py 5 /var/lib/postgresql | tail -n 1 | tee -a "$OUT/fsync.txt" >&2

python3 scripts/cost-report.py "$RESULTS" "$OUT/results.md" "$BASE_REV" "$(git rev-parse --short HEAD)" "$OUT/fsync.txt" "$SECS" "$ROUNDS"
cat "$OUT/results.md"
# Only a comparison of commits on fresh databases is the table BENCHMARKS.md keeps.
if [ -n "${COST_BASE_BIN:-}${COST_HEAD_ENV:-}${COST_BASE_ENV:-}${COST_DATABASE:-}${COST_SIDES:-}" ]; then
  log "BENCHMARKS.md left as it is (not a comparison of two commits on fresh databases)"
elif [ -z "${COST_NO_WRITE:-}" ]; then
  python3 - "$OUT/results.md" BENCHMARKS.md <<'PY'
import sys, re
table, doc = open(sys.argv[1]).read(), open(sys.argv[2]).read()
block = f"<!-- cost:start -->\n{table}<!-- cost:end -->"
if "<!-- cost:start -->" in doc:
    doc = re.sub(r"<!-- cost:start -->.*?<!-- cost:end -->", lambda m: block, doc, flags=re.S)
else:
    doc += "\n## Cost per webhook against 0bc840b\n\n" + block + "\n"
open(sys.argv[2], "w").write(doc)
PY
  log "BENCHMARKS.md updated"
fi
[ -z "$FAILED" ] || { log "failed:$FAILED"; exit 1; }
