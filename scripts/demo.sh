#!/usr/bin/env bash
# Set up and run the main job: solve the bundled demo plant, print KPIs, write schedule + Gantt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/paichan demo --output out/demo "$@"
