"""Size of the full CP-SAT model on the scenario networks, solved as one problem.

Counts variables and constraints of ``ModelBuilder`` on each scenario's global problem
(``paichan run --centralised``): over the safe horizon, and with the objective cuts
``solve`` adds once the dispatching rules have an incumbent. Run it on two commits to
compare models (the result table in bench/results/model_size.md was made that way).

    python -m bench.model_size [--scenarios single_plant,network_3x4,network_10x10] [--label NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from paichan.agents.scenario import global_problem, load_scenario
from paichan.solver.compiled import compile_problem
from paichan.solver.model import ModelBuilder


def measure(name: str, cuts: bool) -> dict[str, object]:
    """Variables, constraints and build time of one scenario's full model."""
    sc = load_scenario(Path("scenarios") / f"{name}.yaml")
    problem = global_problem(sc, {d.material: d.delay for d in sc.disruptions  # type: ignore[misc]
                                  if d.type == "supplier_delay"})
    cp = compile_problem(problem)
    row: dict[str, object] = {"scenario": name, "operations": len(cp.ops),
                              "modes": sum(len(c.modes) for c in cp.ops), "horizon": cp.horizon}
    t0 = time.monotonic()
    proto = ModelBuilder(cp, cp.horizon).build().model.Proto()
    row.update(variables=len(proto.variables), constraints=len(proto.constraints),
               build_s=round(time.monotonic() - t0, 2))
    if cuts:
        from paichan.solver import evaluate
        from paichan.solver.heuristic import construct
        from paichan.solver.model import end_bounds

        best = min(evaluate.scalar(problem.objective, evaluate.terms(cp, tt))
                   for _, tt in construct(cp, ("edd",)) if tt.feasible)
        proto = ModelBuilder(cp, cp.horizon, ub=end_bounds(cp, problem.objective, best)).build().model.Proto()
        row.update(cut_variables=len(proto.variables), cut_constraints=len(proto.constraints), incumbent=best)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenarios", default="single_plant,network_3x4,network_10x10")
    ap.add_argument("--label", default="current")
    ap.add_argument("--no-cuts", action="store_true", help="the model only (for commits without objective cuts)")
    args = ap.parse_args()
    for name in args.scenarios.split(","):
        print(f"{name} ...", file=sys.stderr, flush=True)
        row = measure(name, cuts=not args.no_cuts)
        row["label"] = args.label
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
