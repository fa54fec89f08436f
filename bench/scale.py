"""Scale benchmark: generated flexible job shops from 2,000 to 100,000 operations.

For each size, in a fresh subprocess (so peak memory is that size's own): build the
problem, solve with a time limit, and record time to the first feasible schedule (from
the solve() call, validation included), the objective over time, peak RSS, and the
checker's verdict on the final schedule. A simple lower bound (max of the largest
machine-independent job length and the total minimal work / machines) gives a gap.

    python -m bench.scale [--sizes 2000,20000,100000] [--out bench/results/scale.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# (jobs, ops per job, machines) per size; 20k and 100k are the reference points
SHAPES = {
    2000: (200, 10, 20),
    5000: (500, 10, 50),
    20000: (2000, 10, 100),
    50000: (5000, 10, 100),
    100000: (10000, 10, 100),
}


def _lower_bound(problem) -> int:
    jobs = max(sum(min(m.duration for m in op.modes) for op in o.operations) for o in problem.orders)
    work = sum(min(m.duration for m in op.modes) for o in problem.orders for op in o.operations)
    return max(jobs, -(-work // len(problem.resources)))


def one(size: int, time_limit: float, workers: int) -> dict[str, object]:
    """Run one size in this process and return its measurements."""
    from paichan.checker import check
    from paichan.examples import flexible_job_shop
    from paichan.solver import SolveParams, solve

    jobs, per_job, machines = SHAPES[size]
    t = time.monotonic()
    problem = flexible_job_shop(jobs, per_job, machines, seed=size)
    build_s = time.monotonic() - t
    trace: list[tuple[float, float, str]] = []

    def on(ev) -> None:
        trace.append((round(ev.time, 2), ev.objective, ev.source))
        print(f"  [{size}] {ev.time:6.1f}s objective {ev.objective:g} ({ev.source})", file=sys.stderr, flush=True)

    res = solve(problem, SolveParams(time_limit=time_limit, workers=workers), on_solution=on)
    t = time.monotonic()
    report = check(problem, res.schedule) if res.schedule is not None else None
    check_s = time.monotonic() - t
    lb = _lower_bound(problem)
    first = trace[0][1] if trace else None
    final = res.objective
    return {
        "operations": size, "jobs": jobs, "machines": machines, "time_limit": time_limit,
        "build_s": round(build_s, 2), "first_feasible_s": res.first_solution_time,
        "first_objective": first, "final_objective": final, "lower_bound": lb,
        "gap_to_lb_pct": None if final is None else round(100 * (final - lb) / final, 2),
        "improvements": len(trace), "method": res.stats.get("method"),
        "tabu_iterations": res.stats.get("tabu_iterations"), "lns_steps": res.stats.get("lns_steps"),
        "checker_ok": None if report is None else report.ok, "check_s": round(check_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "trace": trace,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="2000,5000,20000,50000,100000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench/results/scale.md")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--time-limit", type=float, default=None, help="seconds per size (default: 30, 60 above 20k)")
    args = ap.parse_args()
    if args.one:
        limit = args.time_limit or (30.0 if args.one <= 20000 else 60.0)
        print(json.dumps(one(args.one, limit, args.workers)))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"size {size} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "bench.scale", "--one", str(size), "--workers", str(args.workers)]
        if args.time_limit:
            cmd += ["--time-limit", str(args.time_limit)]
        out = subprocess.run(cmd, capture_output=False, stdout=subprocess.PIPE, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")),
               "?")
    lines = [
        "# Scale: generated flexible job shops (1-3 eligible machines per operation)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}, {os.cpu_count()} cores, "
        f"{int(mem) // 1024 // 1024 if mem != '?' else '?'} GiB RAM; workers={args.workers}. "
        "Command: `python -m bench.scale`.",
        "",
        "| operations | jobs x ops, machines | limit s | first feasible s | first obj | final obj | LB | gap to LB % "
        "| improvements | method | peak RSS MiB | checker |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['operations']} | {r['jobs']}x10, {r['machines']} | {r['time_limit']:g} "
            f"| {r['first_feasible_s']:.2f} "
            f"| {r['first_objective']:g} | {r['final_objective']:g} | {r['lower_bound']} | {r['gap_to_lb_pct']} "
            f"| {r['improvements']} | {r['method']} | {r['peak_rss_mib']} | {'ok' if r['checker_ok'] else 'FAILED'} |"
        )
    lines += ["", "Objective over time (seconds, makespan, source) per size:", ""]
    for r in rows:
        trace = r["trace"]
        shown = trace if len(trace) <= 12 else trace[:4] + trace[len(trace) // 2 : len(trace) // 2 + 2] + trace[-6:]
        lines.append(f"- {r['operations']}: " + ", ".join(f"{t}s {o:g} ({s})" for t, o, s in shown))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
