#!/usr/bin/env bash
# Set up and run the main job: the single-plant scenario end to end — agents on local Ray
# negotiating over a private Redis the engine starts itself (unless REDIS_URL / RAY_ADDRESS are set).
# Writes out/demo/{problem.json,schedule.json,kpis.json,negotiations.jsonl,gantt.html}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/paichan run scenarios/single_plant.yaml --output out/demo "$@"
