#!/usr/bin/env bash
# Quick start: build teams-bridge and run the receiver (+ outbox relay) and the HR audit
# worker against the local Postgres (127.0.0.1:5432) and NATS JetStream (127.0.0.1:4222).
# Settings come from the environment; the demo defaults below use the documented `contoso`
# test token (with DEV_MODE=1, the only way `serve` accepts it), so the README's curl and
# simulate examples work as they are.
# Ctrl-C stops both processes gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TEAMS_WEBHOOKS:-}" ]; then
  echo "run.sh: no TEAMS_WEBHOOKS set; using the documented contoso test token (DEV_MODE=1)" >&2
  export TEAMS_WEBHOOKS="contoso=vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA="
  export DEV_MODE=1
fi
export AUDIT_API_TOKEN="${AUDIT_API_TOKEN:-dev-audit-token-not-for-production-use}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/teams_bridge}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"

cargo build --release --locked
bin=target/release/teams-bridge

# The sealed audit trail needs a signing key; a development one unless you give yours.
if [ -z "${AUDIT_SIGNING_KEY_FILE:-}" ]; then
  export AUDIT_SIGNING_KEY_FILE=target/dev-audit.key
  if [ ! -f "$AUDIT_SIGNING_KEY_FILE" ]; then
    "$bin" audit keygen --out "$AUDIT_SIGNING_KEY_FILE" >/dev/null
    echo "run.sh: created a development audit signing key in $AUDIT_SIGNING_KEY_FILE (verifier: $AUDIT_SIGNING_KEY_FILE.pub)" >&2
  else
    echo "run.sh: sealing the audit log with the development key $AUDIT_SIGNING_KEY_FILE" >&2
  fi
fi

"$bin" migrate
"$bin" serve &
serve=$!
"$bin" worker hr-audit &
worker=$!
trap 'kill -TERM $serve $worker 2>/dev/null; wait $serve $worker 2>/dev/null' INT TERM EXIT
echo "teams-bridge: receiver on ${LISTEN_ADDR:-0.0.0.0:3978} (pid $serve), hr-audit worker (pid $worker). Ctrl-C stops both."
wait -n $serve $worker
