"""Factory-shaped problems: paichan vs PyJobShop vs paichan's CP-SAT model alone.

Instances come from :func:`paichan.generators.factory_instance` (mixed shift calendars with
maintenance, flexible machines, family setups, an operator pool, release/due dates and
priorities; objective 100 x weighted tardiness + makespan). Three solvers run at equal time
limit and workers:

* ``paichan``: ``paichan.solver.solve`` with default parameters;
* ``pyjobshop``: :func:`bench.peers.solve_pyjobshop_rich` (PyJobShop's OR-Tools model);
* ``cpsat``: paichan's full CP-SAT model alone (``use_heuristic=False, decompose=False``:
  no dispatching-rule start, no LNS).

Every schedule goes through ``paichan.checker.check``; one the checker rejects is a failure and
never counted. Objectives are recomputed from the checker's KPIs with the problem's weights.
The best-known objective of an instance is the best checker-clean objective of all its runs
(plus one long paichan run with ``--long``); gaps are to it and to the best valid bound.
Each run happens in a child process killed after 2 x time limit + 90 s, so a crash, a hang or a
model too big to build in time is a failure, not the end of the benchmark.

Example::

    python -m bench.rich --sizes 100,500,2000,10000 --time-limits 10,60 --workers 2 --seeds 0 \\
        --long 300 --output bench/results/rich.md
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shlex
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from bench.machine import ram
from paichan.domain import KPIs, ObjectiveName, Problem, Schedule

SOLVERS = ("paichan", "pyjobshop", "cpsat")
LONG = "paichan-long"


class Claim(BaseModel):
    """What a solver says about its run (unverified), sent back from the child process."""

    status: str
    schedule: Schedule | None = None
    objective: float | None = None
    bound: float | None = None
    first_solution_time: float | None = None
    first_objective: float | None = None
    solutions: int | None = None
    final_source: str = ""
    wall_time: float = 0.0
    peak_rss_mb: float | None = None
    note: str = ""
    error: str = ""


class Run(BaseModel):
    """One verified (instance, time limit, solver) run."""

    instance: str
    size: int
    seed: int
    operations: int
    time_limit: float
    solver: str
    status: str
    failed: bool = True
    objective: int | None = None  # recomputed from the checker's KPIs
    claimed: float | None = None
    bound: float | None = None
    makespan: int | None = None
    weighted_tardiness: int | None = None
    late_orders: int | None = None
    total_setup: int | None = None
    first_solution_time: float | None = None
    first_objective: float | None = None
    solutions: int | None = None
    final_source: str = ""
    improved: bool | None = None  # final objective better than the solver's first solution
    wall_time: float = 0.0
    peak_rss_mb: float | None = None
    gap_best_known_pct: float | None = None
    gap_bound_pct: float | None = None
    schedule_missing: bool = False  # the solver returned no schedule (or errored)
    notes: list[str] = Field(default_factory=list)


class InstanceSummary(BaseModel):
    """Best-known objective and best valid bound of one instance."""

    instance: str
    operations: int
    orders: int
    machines: int
    generate_s: float
    best_known: int | None = None
    best_known_by: str = ""
    best_bound: float | None = None
    best_bound_by: str = ""
    invalid_bounds: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- child process


def _solve(solver: str, problem: Problem, time_limit: float, workers: int, seed: int) -> Claim:
    """Run one solver (in the child process) and report its claim."""
    from bench.peers import solve_pyjobshop_rich
    from paichan.solver import solve
    from paichan.solver.api import SolveParams

    t0 = time.perf_counter()  # after the imports: they are not the solver's time
    if solver == "pyjobshop":
        r = solve_pyjobshop_rich(problem, time_limit, workers, seed)
        return Claim(status=r.status, schedule=r.schedule, objective=r.objective, bound=r.bound,
                     first_solution_time=r.first_solution_time, first_objective=r.first_objective,
                     solutions=r.solutions, final_source="pyjobshop", wall_time=time.perf_counter() - t0,
                     note=f"build {r.build_time:.1f}s, horizon {r.horizon}")
    if solver == "cpsat":
        params = SolveParams(time_limit=time_limit, workers=workers, seed=seed, use_heuristic=False, decompose=False)
    else:
        params = SolveParams(time_limit=time_limit, workers=workers, seed=seed)
    res = solve(problem, params)
    history = res.history
    return Claim(status=res.status.value, schedule=res.schedule, objective=res.objective, bound=res.best_bound,
                 first_solution_time=res.first_solution_time,
                 first_objective=history[0].objective if history else None, solutions=len(history),
                 final_source=history[-1].source if history else "", wall_time=time.perf_counter() - t0,
                 note=f"method {res.stats.get('method', '?')}" + ("; " + "; ".join(res.infeasibility[:2])
                                                                  if res.infeasibility else ""))


def _child(conn: Any, solver: str, problem_json: str, time_limit: float, workers: int, seed: int) -> None:
    """Child entry point: solve, then send the claim as JSON (errors included)."""
    try:
        claim = _solve(solver, Problem.model_validate_json(problem_json), time_limit, workers, seed)
    except Exception as exc:
        kind = "refused" if isinstance(exc, ValueError) and solver == "pyjobshop" else "raised"
        claim = Claim(status="error", error=f"{kind} {type(exc).__name__}: {exc}")
        if kind == "raised":
            traceback.print_exc(file=sys.stderr)
    claim.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(claim.model_dump_json())
    conn.close()


def run_isolated(solver: str, problem: Problem, time_limit: float, workers: int, seed: int,
                 hard_timeout: float) -> Claim:
    """Run a solver in a fresh process; a crash or an overrun of ``hard_timeout`` is an error claim."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_child, args=(child, solver, problem.model_dump_json(), time_limit, workers, seed))
    proc.start()
    child.close()
    payload: str | None = None
    answered = parent.poll(hard_timeout)
    if answered:
        try:
            payload = parent.recv()
        except EOFError:
            payload = None
    proc.join(timeout=30 if answered else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    wall = time.perf_counter() - t0
    if payload is None:
        why = f"killed after {wall:.0f}s (hard timeout {hard_timeout:.0f}s)" if wall >= hard_timeout else (
            f"child process died (exit code {proc.exitcode})")
        return Claim(status="error", wall_time=wall, error=why)
    return Claim.model_validate_json(payload)


# --------------------------------------------------------------------------- verification


def objective_of(problem: Problem, kpis: KPIs) -> int | None:
    """The problem's weighted objective from checker KPIs (None if a term has no KPI)."""
    values = {ObjectiveName.MAKESPAN: kpis.makespan, ObjectiveName.WEIGHTED_TARDINESS: kpis.weighted_tardiness,
              ObjectiveName.SETUP: kpis.total_setup}
    total = 0
    for term, w in problem.objective.weights.items():
        if w == 0:
            continue
        if term not in values:
            return None
        total += w * values[term]
    return total


def verify(problem: Problem, base: dict[str, Any], claim: Claim) -> Run:
    """Check the claimed schedule and build the run record; never trusts the solver's objective."""
    from paichan.checker import check

    run = Run(**base, status=claim.status, claimed=claim.objective, bound=claim.bound,
              first_solution_time=claim.first_solution_time, first_objective=claim.first_objective,
              solutions=claim.solutions, final_source=claim.final_source, wall_time=claim.wall_time,
              peak_rss_mb=claim.peak_rss_mb)
    if claim.note:
        run.notes.append(claim.note)
    if claim.error:
        run.notes.append(claim.error)
        run.schedule_missing = True
        return run
    if claim.schedule is None:
        run.notes.append(f"no schedule (status {claim.status})")
        run.schedule_missing = True
        return run
    try:
        report = check(problem, claim.schedule)
    except Exception as exc:
        run.notes.append(f"checker raised {type(exc).__name__}: {exc}")
        return run
    if not report.ok or report.kpis is None:
        shown = "; ".join(str(v) for v in report.violations[:3])
        run.notes.append(f"CHECKER REJECTED ({len(report.violations)} violations): {shown}")
        return run
    k = report.kpis
    run.failed = False
    run.objective = objective_of(problem, k)
    run.makespan, run.weighted_tardiness, run.late_orders, run.total_setup = (
        k.makespan, k.weighted_tardiness, k.late_orders, k.total_setup)
    if run.claimed is not None and run.objective is not None and abs(run.claimed - run.objective) > 0.5:
        run.notes.append(f"claimed objective {run.claimed:g} != checker's {run.objective}")
    if run.first_objective is not None and run.claimed is not None:
        run.improved = run.claimed < run.first_objective - 0.5
    return run


def summarise(summary: InstanceSummary, runs: list[Run]) -> None:
    """Best-known, best valid bound, and every run's gaps (in place)."""
    clean = [r for r in runs if not r.failed and r.objective is not None]
    if clean:
        best = min(clean, key=lambda r: r.objective or 0)
        summary.best_known, summary.best_known_by = best.objective, f"{best.solver} {best.time_limit:g}s"
    summary.best_bound, summary.best_bound_by, summary.invalid_bounds = None, "", []
    for r in runs:
        if r.bound is None:
            continue
        if summary.best_known is not None and r.bound > summary.best_known + 0.5:
            summary.invalid_bounds.append(
                f"{r.solver} {r.time_limit:g}s: {r.bound:g} > best known {summary.best_known}")
            continue
        if summary.best_bound is None or r.bound > summary.best_bound:
            summary.best_bound, summary.best_bound_by = r.bound, f"{r.solver} {r.time_limit:g}s"
    for r in clean:
        if summary.best_known:
            r.gap_best_known_pct = 100.0 * ((r.objective or 0) - summary.best_known) / summary.best_known
        if summary.best_bound is not None and r.objective:
            r.gap_bound_pct = 100.0 * (r.objective - summary.best_bound) / r.objective


# --------------------------------------------------------------------------- report


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"




def _f(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _work(r: Run) -> str:
    """Did the search do anything: improvement over the first solution, and where the final one came from."""
    if r.failed:
        return "-"
    first = _f(r.first_objective, ".0f")
    count = f", {r.solutions} improving" if r.solutions is not None else ""
    if r.final_source.startswith(("heuristic", "reference")):
        return f"search found nothing better than the dispatching rule ({r.final_source}; first {first}{count})"
    moved = {True: "improved", False: "no improvement", None: "?"}[r.improved]
    src = f", final from {r.final_source}" if r.final_source and r.solver != "pyjobshop" else ""
    return f"{moved} (first {first}{count}{src})"


def render(meta: dict[str, Any], summaries: list[InstanceSummary], runs: list[Run], planned: int) -> str:
    """The Markdown report (partial while the benchmark runs)."""
    out = ["# Factory-shaped problems: paichan vs PyJobShop vs the CP-SAT model alone", ""]
    out += ["```", meta["command"], "```", ""]
    if len(runs) < planned:
        out += [f"**PARTIAL: {len(runs)} of {planned} runs done.**", ""]
    for key in ("date", "machine", "cpu_count", "ram", "load_average_at_start", "load_average_at_end", "python",
                "ortools", "pyjobshop", "paichan", "git", "generator", "workers"):
        out.append(f"- {key}: {meta.get(key)}")
    out += [
        "",
        "Objective = 100 x weighted tardiness + makespan (minutes), **recomputed from the checker's KPIs**; a "
        "schedule the checker rejects is FAILED and not counted. `gap BK` = to the best-known objective of the "
        "instance (best checker-clean objective of all runs, including the long run); `gap LB` = "
        "(objective - best valid bound) / objective. `first` = seconds to the first feasible solution "
        "(paichan: its dispatching rules). `work` = whether the solver improved on its own first solution. "
        "`cpsat` = paichan's full CP-SAT model alone (no heuristic start, no LNS).",
        "",
    ]
    by_instance: dict[str, list[Run]] = {}
    for r in runs:
        by_instance.setdefault(r.instance, []).append(r)
    solvers = list(dict.fromkeys(r.solver for r in runs if r.solver != LONG))
    if runs:
        out += ["## Summary: checker-verified objective (gap to best known %)", "",
                "| instance | best known | best bound | limit s | " + " | ".join(solvers) + " |",
                "|---|---|---|---|" + "---|" * len(solvers)]
        for s in summaries:
            rs = by_instance.get(s.instance, [])
            for limit in dict.fromkeys(r.time_limit for r in rs if r.solver != LONG):
                cells = []
                for solver in solvers:
                    hit = next((x for x in rs if x.solver == solver and x.time_limit == limit), None)
                    if hit is None:
                        cells.append("")
                    elif hit.failed:
                        why = "refused" if any(n.startswith("refused") for n in hit.notes) else (
                            "killed" if any(n.startswith("killed") for n in hit.notes) else "no schedule"
                            if hit.schedule_missing else "REJECTED")
                        cells.append(f"FAILED ({why})")
                    else:
                        cells.append(f"{hit.objective} ({_f(hit.gap_best_known_pct, '+.1f')})")
                out.append(f"| {s.instance} | {_f(s.best_known, '.0f')} | {_f(s.best_bound, '.0f')} | {limit:g} | "
                           + " | ".join(cells) + " |")
        out.append("")
    for s in summaries:
        rs = by_instance.get(s.instance, [])
        out += [f"## {s.instance}: {s.operations} operations, {s.orders} orders, {s.machines} machines", ""]
        out += [f"best known **{_f(s.best_known, '.0f')}** ({s.best_known_by or '-'}); best valid bound "
                f"{_f(s.best_bound, '.0f')} ({s.best_bound_by or '-'}); generated in {s.generate_s:.2f}s", ""]
        if s.invalid_bounds:
            out += ["Bounds above a checker-verified objective (invalid, ignored): " + "; ".join(s.invalid_bounds),
                    ""]
        out += ["| limit s | solver | status | objective | makespan | w. tardiness | late | gap BK % | gap LB % "
                "| first s | wall s | peak MB | work |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            status = f"FAILED ({r.status})" if r.failed else r.status
            out.append(
                f"| {r.time_limit:g} | {r.solver} | {status} | {_f(r.objective, '.0f')} | {_f(r.makespan, '.0f')} "
                f"| {_f(r.weighted_tardiness, '.0f')} | {_f(r.late_orders, '.0f')} | {_f(r.gap_best_known_pct, '.2f')} "
                f"| {_f(r.gap_bound_pct, '.2f')} | {_f(r.first_solution_time, '.2f')} | {r.wall_time:.1f} "
                f"| {_f(r.peak_rss_mb, '.0f')} | {_work(r)} |"
            )
        out.append("")
    noted = [r for r in runs if r.notes]
    if noted:
        out += ["## Notes and failures", ""]
        out += [f"- {r.instance} / {r.time_limit:g}s / {r.solver}: {' | '.join(r.notes)}" for r in noted]
        out.append("")
    return "\n".join(out)


def _git() -> str:
    """The commit being measured: ``git log -1``, or ``$PAICHAN_REV`` when run from an exported tree."""
    try:
        import subprocess

        out = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                             check=False, cwd=Path(__file__).parent).stdout.strip()[:100]
    except OSError:
        out = ""
    return out or os.environ.get("PAICHAN_REV", "unknown")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rich", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500,2000,10000", help="operations per instance, comma-separated")
    parser.add_argument("--time-limits", default="10,60", help="seconds per run, comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", default="0", help="generator seeds, comma-separated (solver seed = 0)")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated: " + ", ".join(SOLVERS))
    parser.add_argument("--long", type=float, default=0.0, help="also run paichan this long per instance (0: no)")
    parser.add_argument("--materials", action="store_true",
                        help="generate materials with receipts (PyJobShop then refuses: no receipts over time)")
    parser.add_argument("--no-spanning", action="store_true", help="no operation may pause over breaks")
    parser.add_argument("--output", type=Path, default=Path("bench/results/rich.md"))
    parser.add_argument("--json", type=Path, default=None, help="raw runs as JSON (default: --output with .json)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    limits = [float(x) for x in args.time_limits.split(",") if x.strip()]
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if not sizes or not limits or not seeds or any(s not in SOLVERS for s in solvers):
        parser.error(f"need sizes, time limits, seeds and solvers from {', '.join(SOLVERS)}")
    json_path = args.json or args.output.with_suffix(".json")

    from paichan.generators import factory_instance

    load = os.getloadavg()
    meta: dict[str, Any] = {
        "command": "python -m bench.rich " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                              else sys.argv[1:])),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} {platform.processor() or platform.machine()}",
        "cpu_count": os.cpu_count(), "ram": ram(), "load_average_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(), "ortools": _version("ortools"), "pyjobshop": _version("pyjobshop"),
        "paichan": _version("paichan"), "git": _git(),
        "generator": f"factory_instance(size, seed, materials={args.materials}, spanning={not args.no_spanning})",
        "workers": args.workers, "time_limits": limits, "sizes": sizes, "seeds": seeds, "long": args.long,
    }
    planned = len(sizes) * len(seeds) * (len(limits) * len(solvers) + (1 if args.long > 0 else 0))
    runs: list[Run] = []
    summaries: list[InstanceSummary] = []

    def write() -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render(meta, summaries, runs, planned), encoding="utf-8")
        payload = {"meta": meta, "instances": [s.model_dump() for s in summaries],
                   "runs": [r.model_dump() for r in runs]}
        json_path.write_text(json.dumps(payload, indent=1), encoding="utf-8")

    for seed in seeds:
        for size in sizes:
            t0 = time.perf_counter()
            problem = factory_instance(size, seed, materials=args.materials, spanning=not args.no_spanning)
            gen = time.perf_counter() - t0
            summary = InstanceSummary(
                instance=problem.name, operations=len(problem.operations()), orders=len(problem.orders),
                machines=sum(r.kind.value == "machine" for r in problem.resources), generate_s=gen)
            summaries.append(summary)
            mine: list[Run] = []
            plan = [(limit, s) for limit in limits for s in solvers] + ([(args.long, LONG)] if args.long > 0 else [])
            for limit, solver in plan:
                base = {"instance": problem.name, "size": size, "seed": seed, "operations": summary.operations,
                        "time_limit": limit, "solver": solver}
                claim = run_isolated("paichan" if solver == LONG else solver, problem, limit, args.workers, 0,
                                     hard_timeout=2 * limit + 90)
                run = verify(problem, base, claim)
                runs.append(run)
                mine.append(run)
                summarise(summary, mine)
                state = "FAILED " + " | ".join(run.notes)[:300] if run.failed else run.status
                print(f"[{len(runs)}/{planned}] {problem.name} limit={limit:g}s {solver:<12} "
                      f"objective={_f(run.objective, '.0f')} claimed={_f(run.claimed, '.0f')} "
                      f"bound={_f(run.bound, '.0f')} first_s={_f(run.first_solution_time, '.2f')} "
                      f"wall_s={run.wall_time:.1f} {state}", file=sys.stderr, flush=True)
                write()
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write()
    print(f"wrote {args.output} and {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
