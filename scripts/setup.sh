#!/usr/bin/env bash
# Create .venv and install paichan into it (idempotent). Usage: scripts/setup.sh [--dev]
# Skips the install when .venv already has this pyproject.toml installed (stamp file keyed on its hash);
# the first install takes a few minutes and shows one line per package.
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
if ! command -v chromium >/dev/null 2>&1; then
  # The browser tests drive Debian's headless Chromium through Playwright (no browser download).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver (apt-get) ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >&2 \
      || echo "warning: could not install chromium; the browser tests need it (or set PAICHAN_CHROMIUM)" >&2
  else
    echo "warning: chromium not found; the browser tests need it (e.g. 'sudo apt-get install chromium chromium-driver')" \
      "or set PAICHAN_CHROMIUM" >&2
  fi
fi
if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
  # The planner's page speaks Chinese; without a CJK font headless Chromium draws boxes for it.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing a Chinese font for the planner's page (apt-get fonts-noto-cjk) ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk) >&2 \
      || echo "warning: could not install fonts-noto-cjk; Chinese text on the page may show as boxes" >&2
  else
    echo "warning: no Chinese font; install fonts-noto-cjk for the planner's Chinese page" >&2
  fi
fi
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
# the stamp names what is installed: pyproject.toml's content and the extras
stamp_for() { echo ".venv/.paichan-install-$( (cat pyproject.toml; echo "extras=$1") | sha256sum | cut -c1-16)"; }
stamp=$(stamp_for "$extra")
if [ -x .venv/bin/python ] && [ -f "$stamp" ]; then
  exit 0  # up to date: nothing to install
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv ..." >&2
  "$PY" -m venv .venv
fi
echo "installing paichan${extra} and its dependencies into .venv (the first time takes a few minutes) ..." >&2
.venv/bin/python -m pip install -q --upgrade pip >&2
# one line per package as pip collects it; pip's whole output is kept in .venv/pip-install.log
log=.venv/pip-install.log
if ! .venv/bin/python -m pip install -e ".${extra}" 2>&1 | tee "$log" \
    | { grep --line-buffered -E '^Collecting ' | sed -u 's/^Collecting /  collecting /' >&2 || true; }; then
  echo "pip install failed; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
rm -f .venv/.paichan-install-*
touch "$stamp"
[ -n "$extra" ] && touch "$(stamp_for "")"  # the dev install holds the plain one too
echo "installed; later runs skip this step until pyproject.toml changes" >&2
