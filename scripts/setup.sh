#!/usr/bin/env bash
# Create .venv and install paichan into it (idempotent). Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "paichan needs Python >= 3.11 (found: $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.11+." >&2
  exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
  # The agents' message bus (Redis Streams) starts a private redis-server when no REDIS_URL is set.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (apt-get) ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2 \
      || echo "warning: could not install redis-server; install it or set REDIS_URL" >&2
  else
    echo "warning: redis-server not found; install it (e.g. 'sudo apt-get install redis-server') or set REDIS_URL" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
.venv/bin/python -m pip install -q --upgrade pip >&2
.venv/bin/python -m pip install -q -e ".${extra}" >&2
