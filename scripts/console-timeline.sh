#!/usr/bin/env bash
# The console's record timeline over HTTP, at the size `scripts/bulk-load.sh` left (#14):
# starts `serve` on that database, signs an auditor in, and times N pages
# `/console/records/E-…` of random records (one keep-alive connection, curl's own clock:
# request to last byte), after a warm-up; prints p50/p99/max.
#
#   scripts/console-timeline.sh [N, default 500]     (database teams_bridge_large)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
DB=${LOAD_DB:-teams_bridge_large}
PORT=${TIMELINE_PORT:-29850}
BIN=target/release/teams-bridge
OUT=target/bulk-load; mkdir -p "$OUT"
log() { printf '[console-timeline] %s\n' "$*" >&2; }
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" NATS_URL=nats://127.0.0.1:4222
export NATS_STREAM="BENCH_TIMELINE_$$" NATS_SUBJECT_PREFIX="timeline$$" LISTEN_ADDR="127.0.0.1:$PORT"
export TEAMS_WEBHOOKS="big=QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=" RUST_LOG=warn
cargo build --release --quiet --bin teams-bridge
user="timeline$$"
token=$("$BIN" console add-user "$user" 2>/dev/null)
"$BIN" serve >"$OUT/timeline.serve.log" 2>&1 &
SERVE=$!
cleanup() {
  kill "$SERVE" 2>/dev/null || true; wait "$SERVE" 2>/dev/null || true
  "$BIN" console remove-user "$user" >/dev/null 2>&1 || true
  target/contract-venv/bin/python - "$NATS_STREAM" <<'PY' 2>/dev/null || true
import asyncio, sys, nats
async def main():
    nc = await nats.connect("nats://127.0.0.1:4222")
    await nc.jetstream().delete_stream(sys.argv[1]); await nc.close()
asyncio.run(main())
PY
}
trap cleanup EXIT
base="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
jar="$OUT/timeline.cookies"; rm -f "$jar"
csrf=$(curl -fs -c "$jar" "$base/console/login" | grep -o 'name="csrf" value="[^"]*"' | sed 's/.*value="//; s/"$//')
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" \
  --data-urlencode "name=$user" --data-urlencode "token=$token" --data-urlencode "next=/console" \
  "$base/console/login")
[ "$code" = 303 ] || { log "sign-in answered $code"; exit 1; }
urls() {
  for _ in $(seq 1 "$1"); do
    printf 'url = "%s/console/records/E-%d"\noutput = "/dev/null"\n' "$base" $(( (RANDOM * 32768 + RANDOM) % 100000 ))
  done
}
urls 50 | curl -s -b "$jar" -K - >/dev/null
urls "$N" | curl -s -b "$jar" -K - -w '%{http_code} %{time_total}\n' >"$OUT/timeline.times"
python3 - "$OUT/timeline.times" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
bad = [c for c, _ in rows if c != "200"]
ms = sorted(float(t) * 1000 for _, t in rows)
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
print(f"console record timeline: {len(ms)} pages, p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {ms[-1]:.2f} ms"
      + (f", {len(bad)} not 200" if bad else ""))
sys.exit(1 if bad else 0)
PY
