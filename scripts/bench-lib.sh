# Shell helpers shared by scripts/bench.sh and scripts/cost-compare.sh (sourced, not run).

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# This run's output: sets STAMP, OUT (target/$1/<stamp>/) and an empty RESULTS file there.
run_dir() {
  STAMP=$(date -u +%Y%m%dT%H%M%SZ)
  OUT="$ROOT/target/$1/$STAMP"
  mkdir -p "$OUT"
  RESULTS="$OUT/results.jsonl"
  : >"$RESULTS"
}

# TERM, then KILL after 10 s.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# Deletes a run's stream ($1, default $NATS_STREAM; its files would otherwise stay on disk):
# a JetStream API request sent over the plain NATS protocol.
delete_stream() {
  local name=${1:-$NATS_STREAM}
  exec 3<>/dev/tcp/127.0.0.1/4222 || return 0
  printf 'CONNECT {"verbose":false}\r\nPUB $JS.API.STREAM.DELETE.%s 0\r\n\r\nPING\r\n' "$name" >&3
  timeout 5 grep -m1 -q PONG <&3 || true
  exec 3<&- 3>&-
}

# Waits until $1 answers 200, failing when process $2 dies (see log $3) or after 30 s.
wait_ready() {
  local url=$1 pid=$2 logf=$3 t0
  t0=$(now_ms)
  until curl -fs -o /dev/null "$url"; do
    kill -0 "$pid" 2>/dev/null || { log "process $pid died; see $logf"; exit 1; }
    [ $(( $(now_ms) - t0 )) -lt 30000 ] || { log "$url not ready in 30 s"; exit 1; }
    sleep 0.005
  done
}

# Busy percentage of the whole machine over $1 seconds, from /proc/stat.
cpu_busy_pct() {
  local a b i total=0 idle
  read -ra a < /proc/stat; sleep "$1"; read -ra b < /proc/stat
  idle=$(( b[4] + b[5] - a[4] - a[5] ))
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( 100 * (total - idle) / (total > 0 ? total : 1) ))
}

# Other people build on this machine too: before each scenario wait (at most
# BENCH_QUIET_WAIT seconds, default 600) until it is at most BENCH_QUIET_PCT (20) % busy.
wait_quiet() {
  local waited=0 busy
  while :; do
    busy=$(cpu_busy_pct 2)
    [ "$busy" -le "${BENCH_QUIET_PCT:-20}" ] && return 0
    if [ "$waited" -ge "${BENCH_QUIET_WAIT:-600}" ]; then
      log "machine still ${busy}% busy after ${waited} s; running anyway"
      return 0
    fi
    log "machine ${busy}% busy before the scenario; waiting"
    sleep 8
    waited=$(( waited + 10 ))
  done
}
