#!/usr/bin/env bash
# Reproduces every number in BENCHMARKS.md on this machine:
#   builds the release binaries, starts `teams-bridge serve` and `teams-bridge worker hr-audit`
#   on a dedicated database and a fresh NATS stream, measures start-up readiness, runs the
#   scenarios with `teams-bridge-bench` (each on its own webhook, so every ledger check is
#   exact), and writes the results table into BENCHMARKS.md (between the results markers)
#   and target/bench/<stamp>/.
#
# Needs Postgres (127.0.0.1:5432, user postgres, trust) and NATS JetStream (127.0.0.1:4222).
# All traffic stays on loopback; every load is bounded in time.
#
# Environment knobs (defaults in brackets):
#   BENCH_SECONDS [30]      length of each measured scenario
#   BENCH_LATENCY_RATE [2000]  offered rate of the latency scenario
#   BENCH_CONCURRENCY [1024]  closed-loop concurrency for the throughput/floor scenario (at most
#                           MAX_IN_FLIGHT, or the closed loop spins on 503s)
#   BENCH_PORT [29780], BENCH_WORKER_PORT [29464] (below the ephemeral port range)
#   BENCH_NO_WRITE=1        do not touch BENCHMARKS.md
#   BENCH_NO_SEAL=1         the worker does not seal the audit log (to measure what sealing costs)
#   BENCH_ONLY="latency sustained"  run only these scenarios (implies BENCH_NO_WRITE); without
#                           the throughput scenario the sustained rate is BENCH_SUSTAINED [10000]
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECONDS_PER_RUN=${BENCH_SECONDS:-30}
LATENCY_RATE=${BENCH_LATENCY_RATE:-2000}
CONCURRENCY=${BENCH_CONCURRENCY:-1024}
PORT=${BENCH_PORT:-29780}
WORKER_PORT=${BENCH_WORKER_PORT:-29464}
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
run_dir bench

log "building the release binaries"
cargo build --release --quiet
BIN="$ROOT/target/release/teams-bridge"
BENCH_BIN="$ROOT/target/release/teams-bridge-bench"

# Each scenario posts to its own webhook: s0 … s7, all with the same fresh token.
TOKEN=$(head -c 32 /dev/urandom | base64)
HOOKS=""
for i in 0 1 2 3 4 5 6 7; do HOOKS="${HOOKS:+$HOOKS,}s$i=$TOKEN"; done
RUN=$(date +%s)
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/teams_bridge_bench"
export NATS_URL="nats://127.0.0.1:4222"
export NATS_STREAM="BENCH_$RUN"
export NATS_SUBJECT_PREFIX="bench$RUN"
export HR_AUDIT_CONSUMER="hr-audit-bench"
export LISTEN_ADDR="127.0.0.1:$PORT"
export WORKER_LISTEN_ADDR="127.0.0.1:$WORKER_PORT"
export TEAMS_WEBHOOKS="$HOOKS"
export TEAMS_BRIDGE_SECRET="$TOKEN"
# The service's own default log level: the per-request line is debug, refusals are warnings.
export RUST_LOG="${RUST_LOG:-info,sqlx=warn}"
unset TEAMS_BRIDGE_CONFIG
# The worker seals the audit log as in production: a signing key of this run's own
# (BENCH_NO_SEAL=1: no sealing, to measure what sealing costs).
if [ -z "${BENCH_NO_SEAL:-}" ]; then
  "$BIN" audit keygen --out "$OUT/audit.key" >/dev/null
  export AUDIT_SIGNING_KEY_FILE="$OUT/audit.key"
else
  unset AUDIT_SIGNING_KEY_FILE
fi

SERVE_PID=""
WORKER_PID=""
cleanup() {
  stop_pid "$SERVE_PID"
  stop_pid "$WORKER_PID"
  delete_stream || true
}
trap cleanup EXIT

# Open connections: the overload scenario holds more than MAX_IN_FLIGHT (1024) at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log "fresh database teams_bridge_bench and stream $NATS_STREAM"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists teams_bridge_bench with (force)" >/dev/null

# Starts `serve`; sets SERVE_PID and READY_MS (milliseconds from spawn to the first /readyz
# 200). Fails if the port is already taken, so an old server cannot answer for the new one.
start_serve() {
  local t0
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/readyz"; then
    log "port $PORT is already served by something else"; exit 1
  fi
  t0=$(now_ms)
  "$BIN" serve >>"$OUT/serve.log" 2>&1 &
  SERVE_PID=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz"; do
    kill -0 "$SERVE_PID" 2>/dev/null || { log "serve died; see $OUT/serve.log"; exit 1; }
    [ $(( $(now_ms) - t0 )) -lt 30000 ] || { log "serve not ready in 30 s"; exit 1; }
    sleep 0.005
  done
  READY_MS=$(( $(now_ms) - t0 ))
}

start_serve
READY_FRESH=$READY_MS
log "serve ready ${READY_FRESH} ms after spawn (fresh database: created + migrated)"
stop_pid "$SERVE_PID"
start_serve
READY_WARM=$READY_MS
log "serve ready ${READY_WARM} ms after spawn (restart)"
printf '{"scenario":"readiness","fresh_db_ms":%s,"restart_ms":%s}\n' "$READY_FRESH" "$READY_WARM" >>"$RESULTS"

"$BIN" worker hr-audit >>"$OUT/worker.log" 2>&1 &
WORKER_PID=$!
sleep 1
kill -0 "$WORKER_PID" || { log "worker died; see $OUT/worker.log"; exit 1; }

# Audit entries not yet sealed (no checkpoint covers them).
unsealed() {
  psql -Atq -h 127.0.0.1 -U postgres -d teams_bridge_bench \
    -c "select count(*) from audit_log where leaf_index is null
        or leaf_index >= (select coalesce(max(size), 0) from audit_checkpoints)" 2>/dev/null || echo 0
}
# After a scenario (its ledger check has waited for the worker): how many entries wait for
# the sealer, the most that waited during the run, and how long until none waits.
seal_drain() {
  local name=$1 t0 left max
  t0=$(now_ms); left=$(unsealed)
  max=$(sort -n "$OUT/$name.unsealed" 2>/dev/null | tail -n 1); max=${max:-0}
  while [ "$(unsealed)" -gt 0 ] && [ $(( $(now_ms) - t0 )) -lt 60000 ]; do sleep 0.1; done
  local ms=$(( $(now_ms) - t0 )) now; now=$(unsealed)
  log "scenario $name: sealing: at most $max unsealed during the run, $left at its end, drained in $ms ms ($now left)"
  printf '{"scenario":"%s-seal","max_unsealed":%s,"unsealed_at_end":%s,"seal_drain_ms":%s,"unsealed_after":%s}\n' \
    "$name" "$max" "$left" "$ms" "$now" >>"$RESULTS"
}

FAILED=""
[ -z "${BENCH_ONLY:-}" ] || BENCH_NO_WRITE=1
wanted() { [ -z "${BENCH_ONLY:-}" ] || [ "$1" = warmup ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }
bench() {
  local name=$1; shift
  wanted "$name" || return 0
  wait_quiet
  log "scenario $name: $*"
  local rc=0
  # The sealer keeps up when the unsealed count stays bounded: sample it once a second.
  ( while :; do unsealed; sleep 1; done >"$OUT/$name.unsealed" ) &
  local sampler=$!
  "$BENCH_BIN" --url "http://127.0.0.1:$PORT" --label "$name" \
    --service-pid "$SERVE_PID" --worker-pid "$WORKER_PID" "$@" >"$OUT/$name.txt" || rc=$?
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  seal_drain "$name"
  grep -v '^{' "$OUT/$name.txt" >&2
  grep '^{' "$OUT/$name.txt" >>"$RESULTS"
  if [ "$rc" -ne 0 ]; then
    log "scenario $name FAILED (exit $rc)"
    FAILED="$FAILED $name"
  fi
  return 0
}
last() { grep -v -- '-seal"' "$RESULTS" | tail -n 1 | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Warm-up: caches, connection pools, JIT-less but page-cache-full.
bench warmup --webhook s0 --rate 1000 --duration 5 --connections 64

# 1. Latency at a fixed offered rate.
bench latency --webhook s1 --rate "$LATENCY_RATE" --duration "$SECONDS_PER_RUN" --connections 64

# 2. Throughput: closed loop against the floor, then the bridge, in the same invocation.
bench throughput --webhook s2 --target both --concurrency "$CONCURRENCY" --duration "$SECONDS_PER_RUN"
if wanted throughput; then
  MAX_OK=$(last "['ok_rps']")
  # 3. Sustained: open loop at 90 % of the closed-loop maximum.
  SUSTAINED=$(python3 -c "print(int(float('$MAX_OK') * 0.9 // 100 * 100))")
else
  SUSTAINED=${BENCH_SUSTAINED:-10000}
fi
bench sustained --webhook s3 --rate "$SUSTAINED" --duration "$SECONDS_PER_RUN" --connections 1536

# 4. Overload: twice the sustainable rate, more connections than MAX_IN_FLIGHT so the
#    service (not the client pool) decides what to shed; no reply may take over 4.5 s.
OVERLOAD=$(( SUSTAINED * 2 ))
bench overload --webhook s4 --rate "$OVERLOAD" --duration "$SECONDS_PER_RUN" --connections 3072 \
  --max-latency-ms 4500
PEAK_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVE_PID/status")
log "serve peak RSS (VmHWM) after all scenarios: ${PEAK_RSS} kB"
printf '{"scenario":"memory","serve_vmhwm_kib":%s}\n' "$PEAK_RSS" >>"$RESULTS"

# 5. The stated target: 10,000 signed webhooks/s offered for the same length.
bench target-10k --webhook s5 --rate 10000 --duration "$SECONDS_PER_RUN" --connections 3072 \
  --max-latency-ms 4500

# 6. The same latency and throughput scenarios with COMMIT_TASKS=12 (the earlier default)
#    instead of 4: more, smaller commits, to show what grouping buys on this 2-core machine.
if wanted latency-commit12 || wanted throughput-commit12; then
  stop_pid "$SERVE_PID"
  export COMMIT_TASKS=12
  start_serve
  log "serve restarted with COMMIT_TASKS=12 (ready in ${READY_MS} ms)"
fi
bench latency-commit12 --webhook s6 --rate "$LATENCY_RATE" --duration "$SECONDS_PER_RUN" --connections 64
bench throughput-commit12 --webhook s7 --target both --concurrency "$CONCURRENCY" --duration "$SECONDS_PER_RUN"

python3 - "$RESULTS" "$OUT/results.md" <<'PY'
import json, sys, platform, os, subprocess
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["scenario"], []).append(r)
def pct(p): return f'{p["p50"]:.2f} / {p["p90"]:.2f} / {p["p99"]:.2f} / {p["p999"]:.2f} / {p["max"]:.1f}'
def cpu(r):
    c = r.get("cpu", {})
    keys = [("service_cpu_pct","svc"),("postgres_cpu_pct","pg"),("nats-server_cpu_pct","nats"),("worker_cpu_pct","wrk"),("bench_cpu_pct","bench"),("others_cpu_pct","others")]
    busy = f' (machine {c["machine_busy_pct"]:.0f} % busy)' if "machine_busy_pct" in c else ""
    return " ".join(f'{n} {c[k]:.0f}' for k, n in keys if k in c) + busy
def ledger(r):
    l = r.get("ledger")
    if not l: return "—"
    verdict = "ok" if not l["problems"] else "DIFFERS"
    return f'{verdict}: {l["activities_matched"]}/{l["stream_new"]}/{l["audit_matched"]}; drained {l["worker_drain_s"]:.1f} s'
out = []
out.append("| scenario | target | load | sent | 200 | 503 | other/err | achieved 200/s | latency ms p50 / p90 / p99 / p99.9 / max (from schedule) | ledger (activities/stream/audit) | CPU, % of one core | pass |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if "target" not in r: continue
    load = f'open {r["offered_rps"]:.0f}/s, {r["connections"]} conns' if r["mode"] == "open" else f'closed c={r["concurrency"]}'
    st = r["status"]
    other = sum(v for k, v in st.items() if k not in ("200", "503")) + r["errors"] + r["unsent"]
    out.append(f'| {r["scenario"]} | {r["target"]} | {load}, {r["duration_s"]:.0f} s | {r["sent"]} | {st.get("200",0)} | {st.get("503",0)} | {other} | {r["ok_rps"]:.0f} | {pct(r["latency_ms"])} | {ledger(r)} | {cpu(r)} | {"yes" if r["pass"] else "NO: " + "; ".join(r["failures"])} |')
out.append("")
for r in rows:
    if r.get("bridge_to_floor") is not None:
        out.append(f'Bridge / floor throughput (closed loop c={r["concurrency"]}, same invocation): {r["ok_rps"]:.0f} / {r["floor_ok_rps"]:.0f} = **{r["bridge_to_floor"]:.3f}**.')
for r in rows:
    if r["scenario"] == "readiness":
        out.append(f'`serve` ready (spawn → first `/readyz` 200): **{r["restart_ms"]} ms** on restart, {r["fresh_db_ms"]} ms on a fresh database (created and migrated).')
    if r["scenario"] == "memory":
        out.append(f'`serve` peak RSS (VmHWM) after all scenarios: **{r["serve_vmhwm_kib"]/1024:.1f} MiB**.')
for r in rows:
    if r["scenario"].endswith("-seal"):
        out.append(f'Sealing during {r["scenario"][:-5]}: at most {r["max_unsealed"]} entries waited for the sealer (sampled each second), {r["unsealed_at_end"]} when the ledger had drained, all sealed {r["seal_drain_ms"]} ms later ({r["unsealed_after"]} left).')
for r in rows:
    if r["scenario"] == "overload":
        out.append(f'Overload: offered {r["offered_rps"]:.0f}/s; {r["status"].get("503",0)} answered 503 (all with Retry-After: {"yes" if r["missing_retry_after"]==0 else "NO"}); slowest reply {r["latency_ms"]["max"]:.0f} ms; 200s at {r["ok_rps"]:.0f}/s; service peak RSS {(r.get("service_peak_rss_kib") or 0)/1024:.1f} MiB.')
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY

log "results: $OUT/results.md"
cat "$OUT/results.md" >&2
if [ -z "${BENCH_NO_WRITE:-}" ]; then
  python3 - "$OUT/results.md" BENCHMARKS.md "$STAMP" <<'PY'
import sys, re
table = open(sys.argv[1]).read()
doc = open(sys.argv[2]).read()
block = f"<!-- results:start -->\nRun {sys.argv[3]} (`scripts/bench.sh`, {__import__('os').environ.get('BENCH_SECONDS', '30')} s per scenario):\n\n{table}<!-- results:end -->"
doc = re.sub(r"<!-- results:start -->.*?<!-- results:end -->", lambda m: block, doc, flags=re.S)
open(sys.argv[2], "w").write(doc)
PY
  log "BENCHMARKS.md updated"
fi
if [ -n "$FAILED" ]; then
  log "failed scenarios:$FAILED"
  exit 1
fi
log "all scenarios passed"
