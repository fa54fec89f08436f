"""Solution quality on public JSSP/FJSP benchmarks: paichan versus peer solvers.

Every schedule any solver returns is re-verified by ``paichan.checker.check``;
a schedule the checker rejects counts as a failure and its makespan is not used.
Gaps are to the best-known upper bound (BKS) of ``bench/instances/*_bks.csv``.

Example::

    python -m bench.quality --families ft,la --solvers paichan,plain,pyjobshop \\
        --time-limit 10 --workers 2 --out bench/results/quality.md --json bench/results/quality.json

Runs are long (instances x solvers x time limit); run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from bench.bks import INSTANCES, load_bks
from bench.machine import ram
from bench.peers import solve_plain_cpsat, solve_pyjobshop
from paichan.domain import Problem, Schedule
from paichan.solver.readers import read_instance


@dataclass(frozen=True)
class Instance:
    name: str
    fmt: Literal["jssp", "fjsp"]
    path: Path


def _jssp(names: list[str]) -> list[Instance]:
    return [Instance(n, "jssp", INSTANCES / "jssp" / f"{n}.txt") for n in names]


def _fjsp(subdir: str, names: list[str]) -> list[Instance]:
    return [Instance(n, "fjsp", INSTANCES / "fjsp" / subdir / f"{n}.fjs") for n in names]


def _rdata_all() -> list[Instance]:
    return _fjsp("hurink_rdata", sorted(p.stem for p in (INSTANCES / "fjsp" / "hurink_rdata").glob("*.fjs")))


def _ta(first: int, last: int) -> list[Instance]:
    return _jssp([f"ta{i:02d}" for i in range(first, last + 1)])


FAMILIES: dict[str, Callable[[], list[Instance]]] = {
    "ft": lambda: _jssp(["ft06", "ft10", "ft20"]),
    "la": lambda: _jssp("la01 la05 la10 la16 la17 la18 la19 la20 la21 la24 la25 la27 la29 la38 la40".split()),
    "ta01-10": lambda: _ta(1, 10),
    "ta21-30": lambda: _ta(21, 30),
    "ta41-50": lambda: _ta(41, 50),
    "ta51-60": lambda: _ta(51, 60),
    "ta71-80": lambda: _ta(71, 80),
    "swv11-15": lambda: _jssp([f"swv{i}" for i in range(11, 16)]),
    "mk01-10": lambda: _fjsp("brandimarte", [f"mk{i:02d}" for i in range(1, 11)]),
    "rdata": _rdata_all,
    "rdata-la": lambda: _fjsp("hurink_rdata", [f"la{i:02d}_rdata" for i in range(1, 41)]),
}


@dataclass
class Outcome:
    """What a solver claims, before verification."""

    status: str
    schedule: Schedule | None
    objective: float | None
    bound: float | None
    first_solution_time: float | None
    note: str = ""


def _run_paichan(problem: Problem, time_limit: float, workers: int, seed: int) -> Outcome:
    from paichan.solver import solve
    from paichan.solver.api import SolveParams

    res = solve(problem, SolveParams(time_limit=time_limit, workers=workers, seed=seed))
    note = "; ".join(res.infeasibility[:2])
    return Outcome(res.status.value, res.schedule, res.objective, res.best_bound, res.first_solution_time, note)


def _peer(fn: Callable[..., Any]) -> Callable[[Problem, float, int, int], Outcome]:
    def run(problem: Problem, time_limit: float, workers: int, seed: int) -> Outcome:
        r = fn(problem, time_limit, workers, seed)
        return Outcome(r.status, r.schedule, r.makespan, r.bound, r.first_solution_time)

    return run


SOLVERS: dict[str, Callable[[Problem, float, int, int], Outcome]] = {
    "paichan": _run_paichan,
    "plain": _peer(solve_plain_cpsat),
    "pyjobshop": _peer(solve_pyjobshop),
}

Checker = Callable[[Problem, Schedule], Any]


def load_checker() -> tuple[Checker, str]:
    """``paichan.checker.check``. Without it no makespan can be trusted, so there is no fallback: the run stops."""
    try:
        from paichan.checker import check
    except ImportError as exc:
        raise SystemExit(f"error: paichan.checker cannot be imported ({exc}); schedules cannot be verified, "
                         "so no results are written") from exc
    return check, "every schedule verified by paichan.checker.check"


@dataclass
class Row:
    """One (instance, solver) run, verified."""

    family: str
    instance: str
    solver: str
    status: str
    makespan: int | None  # verified by the checker
    claimed: float | None
    bound: float | None
    lb: int | None
    ub: int | None
    gap_pct: float | None
    proven_optimal: bool
    reached_bks: bool
    wall_time: float
    first_solution_time: float | None
    failed: bool
    checked: bool
    notes: list[str] = field(default_factory=list)


def run_one(
    family: str, inst: Instance, problem: Problem, solver: str, bounds: tuple[int, int] | None,
    time_limit: float, workers: int, seed: int, checker: Checker,
) -> Row:
    """Solve, verify and score one instance with one solver; never raises on solver/checker errors."""
    lb, ub = bounds if bounds else (None, None)
    row = Row(family, inst.name, solver, "error", None, None, None, lb, ub, None, False, False, 0.0, None, True, False)
    t0 = time.perf_counter()
    try:
        out = SOLVERS[solver](problem.model_copy(deep=True), time_limit, workers, seed)
    except Exception as exc:
        row.wall_time = time.perf_counter() - t0
        traceback.print_exc(file=sys.stderr)
        row.notes.append(f"solver raised {type(exc).__name__}: {exc}")
        return row
    row.wall_time = time.perf_counter() - t0
    row.status, row.claimed, row.bound = out.status, out.objective, out.bound
    row.first_solution_time = out.first_solution_time
    if out.note:
        row.notes.append(out.note)
    if out.schedule is None:
        row.notes.append(f"no schedule (status {out.status})")
        return row
    try:
        report = checker(problem, out.schedule)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        row.notes.append(f"checker raised {type(exc).__name__}: {exc}")
        return row
    row.checked = True
    if not report.ok:
        shown = "; ".join(str(v) for v in list(report.violations)[:3])
        row.notes.append(f"INFEASIBLE schedule ({len(report.violations)} violation(s)): {shown}")
        return row
    row.makespan = int(report.kpis.makespan)
    row.failed = False
    if row.claimed is not None and abs(row.claimed - row.makespan) > 1e-6:
        row.notes.append(f"claimed objective {row.claimed:g} != schedule makespan {row.makespan}")
    # A bound that meets the makespan is a proof too; say so if the solver's status disagrees.
    bound_proves = row.bound is not None and row.bound >= row.makespan - 1e-6
    row.proven_optimal = out.status == "optimal" or bound_proves
    if bound_proves and out.status != "optimal":
        row.notes.append(f"bound {row.bound:g} proves optimality but status is '{out.status}'")
    if ub is not None:
        row.gap_pct = 100.0 * (row.makespan - ub) / ub
        row.reached_bks = row.makespan <= ub
        if row.proven_optimal and row.makespan > ub:
            row.notes.append(f"claims optimal at {row.makespan} but BKS is {ub}")
    if lb is not None and row.makespan < lb:
        row.notes.append(f"makespan {row.makespan} below best-known LB {lb}")
    return row




def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def environment(args: argparse.Namespace, checker_msg: str) -> dict[str, Any]:
    """Header facts that make a results file interpretable later."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "ram": ram(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
        "ortools": _version("ortools"),
        "pyjobshop": _version("pyjobshop"),
        "paichan": _version("paichan"),
        "time_limit": args.time_limit,
        "workers": args.workers,
        "seed": args.seed,
        "families": args.families,
        "solvers": args.solvers,
        "checker": checker_msg,
    }


def _fmt(x: float | None, spec: str = ".2f", none: str = "n/a") -> str:
    return none if x is None else format(x, spec)


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _cell(r: Row) -> str:
    if r.failed:
        return f"FAILED ({r.status})"
    tag = " opt" if r.proven_optimal else ""
    gap = f" ({r.gap_pct:+.2f}%)" if r.gap_pct is not None else ""
    return f"{r.makespan}{gap}{tag}, {r.wall_time:.1f}s"


def render(meta: dict[str, Any], families: list[str], solvers: list[str], rows: list[Row], total: int) -> str:
    """The Markdown report (partial while the run is in progress)."""
    out = ["# Solution quality on JSSP/FJSP benchmarks", ""]
    done = len(rows)
    if done < total:
        out += [f"**PARTIAL: {done} of {total} runs done.**", ""]
    if not meta["checker"].startswith("every"):
        out += [f"> **WARNING: {meta['checker']}.**", ""]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    out += [
        "",
        "gap = (makespan - BKS upper bound) / BKS, averaged over solved instances (see `solved`). "
        "`failed` = no schedule, a schedule the checker rejects, or an exception. "
        "`opt` = the solver proved optimality. Times are wall-clock seconds; first = time to first feasible "
        "solution as reported by the solver (n/a when the solver does not expose it).",
        "",
    ]
    for fam in families:
        frows = [r for r in rows if r.family == fam]
        if not frows:
            continue
        names = list(dict.fromkeys(r.instance for r in frows))
        out += [f"## {fam} ({len(names)} instances)", ""]
        out += ["| solver | solved | mean gap % | proven optimal | reached BKS | mean first s | mean wall s | failed |"]
        out += ["|---|---|---|---|---|---|---|---|"]
        for s in solvers:
            srows = [r for r in frows if r.solver == s]
            ok = [r for r in srows if not r.failed]
            gaps = [r.gap_pct for r in ok if r.gap_pct is not None]
            firsts = [r.first_solution_time for r in ok if r.first_solution_time is not None]
            out.append(
                f"| {s} | {len(ok)}/{len(srows)} | {_fmt(_mean(gaps))} | {sum(r.proven_optimal for r in ok)} "
                f"| {sum(r.reached_bks for r in ok)} | {_fmt(_mean(firsts))} "
                f"| {_fmt(_mean([r.wall_time for r in srows]), '.1f')} | {sum(r.failed for r in srows)} |"
            )
        out += ["", "| instance | LB | UB | " + " | ".join(solvers) + " |", "|---|---|---|" + "---|" * len(solvers)]
        by = {(r.instance, r.solver): r for r in frows}
        for n in names:
            any_row = next(r for r in frows if r.instance == n)
            cells = [_cell(by[n, s]) if (n, s) in by else "" for s in solvers]
            out.append(f"| {n} | {_fmt(any_row.lb, 'd')} | {_fmt(any_row.ub, 'd')} | " + " | ".join(cells) + " |")
        out.append("")
    notes = [r for r in rows if r.notes]
    if notes:
        out += ["## Failures and notes", ""]
        out += [f"- {r.instance} / {r.solver}: {' | '.join(r.notes)}" for r in notes]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", required=True, help="comma-separated: " + ", ".join(FAMILIES))
    parser.add_argument("--solvers", default="paichan,plain,pyjobshop", help="comma-separated: " + ", ".join(SOLVERS))
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per instance and solver")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality.md"))
    parser.add_argument("--json", type=Path, default=None, help="also write the raw per-run rows as JSON")
    args = parser.parse_args(argv)

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    for kind, got, known in (("family", families, FAMILIES), ("solver", solvers, SOLVERS)):
        unknown = [x for x in got if x not in known]
        if unknown or not got:
            parser.error(f"unknown or no {kind} {unknown}; choose from {', '.join(known)}")

    checker, checker_msg = load_checker()
    meta = environment(args, checker_msg)
    bks = load_bks()
    plan = [(fam, inst) for fam in families for inst in FAMILIES[fam]()]
    total = len(plan) * len(solvers)
    rows: list[Row] = []

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(meta, families, solvers, rows, total), encoding="utf-8")
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {"meta": meta, "rows": [asdict(r) for r in rows]}
            args.json.write_text(json.dumps(payload, indent=1), encoding="utf-8")

    for fam, inst in plan:
        problem = read_instance(inst.path, inst.fmt)
        for solver in solvers:
            row = run_one(fam, inst, problem, solver, bks.get(inst.name), args.time_limit, args.workers, args.seed,
                          checker)
            rows.append(row)
            status = "FAILED " + " | ".join(row.notes) if row.failed else row.status
            print(
                f"[{len(rows)}/{total}] {fam:<8} {inst.name:<11} {solver:<9} makespan={_fmt(row.makespan, 'd')} "
                f"ub={_fmt(row.ub, 'd')} gap%={_fmt(row.gap_pct, '+.2f')} first_s={_fmt(row.first_solution_time)} "
                f"wall_s={row.wall_time:.1f} {status}",
                file=sys.stderr, flush=True,
            )
            write()
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""), file=sys.stderr)
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
