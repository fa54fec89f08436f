#!/usr/bin/env bash
# Reproduce the committed quality tables (about 70 minutes on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "from paichan.solver.readers import read_jssp; from paichan.solver import solve, SolveParams; \
solve(read_jssp('bench/instances/jssp/ft06.txt'), SolveParams(time_limit=2))"  # warm the numba cache
python -m bench.quality --families la,ta01-10,ta21-30,ta41-50,ta51-60,ta71-80,swv11-15 \
  --solvers paichan,plain,pyjobshop --time-limit 10 --workers 2 \
  --out bench/results/quality_jssp.md --json bench/results/quality_jssp.json
python -m bench.quality --families mk01-10,rdata \
  --solvers paichan,plain,pyjobshop --time-limit 10 --workers 2 \
  --out bench/results/quality_fjsp.md --json bench/results/quality_fjsp.json
