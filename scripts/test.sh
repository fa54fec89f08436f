#!/usr/bin/env bash
# Set up and run the test suite (lint, layer contracts, types, tests; slow benchmarks are excluded by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check paichan bench tests
.venv/bin/lint-imports --config .importlinter
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
