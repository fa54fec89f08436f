"""The ``paichan`` command line.

``paichan solve --format {jssp,fjsp} INSTANCE --time-limit S --workers N --output OUT.json``
keeps the exact contract other tools call; ``paichan solve problem.json`` takes the
project's own problem format (``paichan schema`` prints its JSON Schema);
``paichan demo`` solves the bundled demo plant end to end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from paichan.checker import check
from paichan.domain import Problem, ProblemError
from paichan.service import events_cli, session_cli
from paichan.service.adapters_cli import register as register_adapters
from paichan.service.common import CliError, load_problem, load_schedule
from paichan.service.serve_cli import register as register_serve
from paichan.solver import SolutionEvent, SolveParams, SolveResult, solve
from paichan.solver.readers import InstanceFormatError, instance_indices, machine_index, read_instance


def _progress(quiet: bool) -> Any:
    def show(ev: SolutionEvent) -> None:
        if not quiet:
            bound = f"  bound {ev.bound:g}" if ev.bound is not None else ""
            print(f"[{ev.time:6.2f}s] objective {ev.objective:g}{bound}  ({ev.source})", file=sys.stderr, flush=True)

    return show


def _verified(problem: Problem, result: SolveResult) -> dict[str, Any] | None:
    """KPIs recomputed by the independent checker; refuses an infeasible schedule."""
    if result.schedule is None:
        return None
    report = check(problem, result.schedule)
    if not report.ok:
        detail = "\n".join(f"  - {v}" for v in report.violations[:20])
        raise CliError(f"internal error: the solver's schedule fails the independent checker:\n{detail}")
    return report.kpis.model_dump() if report.kpis is not None else None


def cmd_solve(args: argparse.Namespace) -> int:
    path = Path(args.instance)
    fmt = args.format or ("json" if path.suffix.lower() == ".json" else None)
    if fmt is None:
        raise CliError(f"{path}: say --format jssp or --format fjsp for instance files (or give a .json problem)")
    if fmt in ("jssp", "fjsp"):
        try:
            problem = read_instance(path, "jssp" if fmt == "jssp" else "fjsp")
        except InstanceFormatError as e:
            raise CliError(str(e)) from e
        except OSError as e:
            raise CliError(f"{path}: cannot read ({e.strerror})") from e
    else:
        problem = load_problem(path)
    params = SolveParams(time_limit=args.time_limit, workers=args.workers, seed=args.seed)
    try:
        result = solve(problem, params, on_solution=_progress(args.quiet))
    except ProblemError as e:
        raise CliError(f"{path}: {e}") from e
    kpis = _verified(problem, result)
    if fmt in ("jssp", "fjsp"):
        out: dict[str, Any] = {
            "status": result.status.value,
            "makespan": int(result.objective) if result.objective is not None else None,
            "operations": sorted(
                (
                    {
                        "job": instance_indices(s.operation)[0],
                        "index": instance_indices(s.operation)[1],
                        "machine": machine_index(s.resource),
                        "start": s.start,
                        "end": s.end,
                    }
                    for s in (result.schedule.operations if result.schedule else [])
                ),
                key=lambda d: (d["job"], d["index"]),
            ),
        }
    else:
        out = {
            "status": result.status.value,
            "objective": result.objective,
            "best_bound": result.best_bound,
            "gap": result.gap,
            "kpis": kpis,
            "infeasibility": result.infeasibility,
            "schedule": result.schedule.model_dump() if result.schedule else None,
            "stats": result.stats,
        }
    text = json.dumps(out, indent=None if fmt in ("jssp", "fjsp") else 2)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    if args.gantt and result.schedule is not None:
        from paichan.service.gantt import gantt_html

        Path(args.gantt).write_text(gantt_html(problem, result.schedule), encoding="utf-8")
    summary = f"status {result.status.value}"
    if result.objective is not None:
        summary += f", objective {result.objective:g}"
    if result.best_bound is not None:
        summary += f", bound {result.best_bound:g}"
    print(summary + f" ({result.wall_time:.1f} s)", file=sys.stderr)
    for reason in result.infeasibility:
        print(f"  {reason}", file=sys.stderr)
    return 0 if result.schedule is not None or result.status.value == "infeasible" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from paichan.examples import demo_plant
    from paichan.service.gantt import gantt_html
    from paichan.service.output import DEMO_FILES, clear_stale

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for f in clear_stale(out, DEMO_FILES):  # an agents run's journal would tell another story than this chart
        print(f"removed {f} (from an earlier `paichan run` into the same directory)", file=sys.stderr)
    problem = demo_plant()
    (out / "problem.json").write_text(problem.model_dump_json(indent=2), encoding="utf-8")
    ops = sum(len(o.operations) for o in problem.orders)
    print(f"demo plant: {len(problem.orders)} orders, {ops} operations, "
          f"{len(problem.resources)} resources; solving for {args.time_limit:g} s ...", file=sys.stderr)
    result = solve(problem, SolveParams(time_limit=args.time_limit, workers=args.workers),
                   on_solution=_progress(False))
    if result.schedule is None:
        raise CliError(f"demo: no schedule ({result.status.value}): {'; '.join(result.infeasibility)}")
    kpis = _verified(problem, result)
    (out / "schedule.json").write_text(result.schedule.model_dump_json(indent=2), encoding="utf-8")
    (out / "kpis.json").write_text(json.dumps(kpis, indent=2), encoding="utf-8")
    report = check(problem, result.schedule)
    (out / "gantt.html").write_text(gantt_html(problem, result.schedule, report.kpis), encoding="utf-8")
    print(f"status: {result.status.value} (checked feasible by the independent checker)")
    assert kpis is not None
    for k, v in kpis.items():
        if k != "utilisation":
            print(f"  {k:20s} {v}")
    print("  utilisation         " + ", ".join(f"{m} {u:.0%}" for m, u in kpis["utilisation"].items()))
    print(f"wrote {out / 'problem.json'}, {out / 'schedule.json'}, {out / 'kpis.json'}, {out / 'gantt.html'}")
    return 0


def _write_schema(model: type[BaseModel], output: str | None) -> int:
    text = json.dumps(model.model_json_schema(), indent=2)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    return _write_schema(Problem, args.output)


def _check_problem(path: Path) -> Problem:
    """A problem.json, or a scenario YAML (its global problem with all its disruptions, as `paichan run` ends)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        from paichan.agents.scenario import ScenarioError, global_problem, load_scenario, scenario_delays

        try:
            sc = load_scenario(path)
        except ScenarioError as e:
            raise CliError(str(e)) from e
        return global_problem(sc, scenario_delays(sc))
    return load_problem(path, brief=True)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 feasible, 1 infeasible (violations listed), 2 unusable input (one line naming file and field)."""
    problem = _check_problem(Path(args.problem))
    schedule = load_schedule(Path(args.schedule), problem)
    report = check(problem, schedule)
    for v in report.violations:
        print(v)
    print("feasible" if report.ok else f"{len(report.violations)} violation(s)")
    return 0 if report.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    from paichan.agents.runtime import ResumeError, run_agents, run_centralised
    from paichan.agents.scenario import ScenarioError, load_scenario
    from paichan.bus.server import RedisUnavailable
    from paichan.service.output import write_run

    if (args.scenario is None) == (args.resume is None):
        raise CliError("run: give a SCENARIO (with --output DIR), or --resume DIR to continue an interrupted run")
    if args.resume is not None and (args.centralised or (args.output and Path(args.output) != Path(args.resume))):
        raise CliError("--resume DIR continues the agents' run in DIR: no --centralised, no other --output")
    if args.scenario is not None and not args.output:
        raise CliError("run: --output DIR is required")
    sc = None
    if args.scenario is not None:
        try:
            sc = load_scenario(args.scenario)
        except ScenarioError as e:
            raise CliError(str(e)) from e
    out = Path(args.output or args.resume)
    hint = f"; continue it with: paichan run --resume {out}"
    try:
        if args.centralised:
            assert sc is not None
            result = run_centralised(sc, args.time_limit)
        else:
            result = run_agents(sc, out, timeout=args.timeout, cleanup=args.cleanup, resume=args.resume is not None)
    except ResumeError as e:
        raise CliError(str(e)) from e
    except RedisUnavailable as e:
        resumable = (out / "run.json").is_file() and not args.centralised
        raise CliError(str(e) + (hint if resumable else "")) from e
    except KeyboardInterrupt:  # Network.close has stopped the agents, Ray and the private redis-server
        if args.centralised:
            print("interrupted: centralised solve stopped; nothing written", file=sys.stderr)
        else:
            resumable = (out / "run.json").is_file()
            print("interrupted: run stopped, agents, Ray and the private redis-server shut down; no result "
                  "written" + (hint if resumable else ""), file=sys.stderr)
        return 130
    kpis = write_run(out, result)
    print(json.dumps({k: kpis.get(k) for k in ("feasible", "weighted_tardiness", "makespan", "late_orders",
                                               "total_tardiness", "messages", "wall_time_s")}))
    print(f"wrote {out / 'problem.json'}, {out / 'schedule.json'}, {out / 'kpis.json'}, "
          f"{out / 'negotiations.jsonl'}, {out / 'gantt.html'}", file=sys.stderr)
    return 0 if kpis["feasible"] else 1


def cmd_explain(args: argparse.Namespace) -> int:
    from paichan.agents.explain import JournalError, clock, load_journal, order_story, run_origin, summary

    try:
        entries = load_journal(args.run)
    except JournalError as e:
        raise CliError(str(e)) from e
    origin = run_origin(args.run)
    at = clock(origin)
    if args.order:
        try:
            print("\n".join(order_story(entries, args.order, at)))
        except KeyError as e:
            raise CliError(str(e.args[0])) from e
        return 0
    rows = sorted(summary(entries), key=lambda r: (-(r["tardiness"] or 0) * r["priority"], r["order"]))
    w = 17 if origin else 7  # "12345 (Mon 08:00)"
    if origin:
        print(f"times: minutes from {origin.isoformat()} (weekday and clock time in brackets)")
    print(f"{'order':10} {'plant':6} {'line':10} {'due':>{w}} {'done':>{w}} {'late':>6} {'prio':>4} {'rounds':>6} "
          f"{'bids':>4} {'esc':>3} {'moves':>5} {'upd':>3}")
    for r in rows:
        done = at(r["completion"]) if r["completion"] is not None else "-"
        print(f"{r['order']:10} {r['plant']:6} {r['line'] or '-':10} {at(r['due']):>{w}} {done:>{w}} "
              f"{r['tardiness'] if r['tardiness'] is not None else '-':>6} {r['priority']:>4} {r['rounds']:>6} "
              f"{r['bids']:>4} {'yes' if r['escalated'] else '':>3} {r['moves']:>5} {r['updates']:>3}")
    return 0


def cmd_scenario_schema(args: argparse.Namespace) -> int:
    from paichan.agents.scenario import Scenario

    return _write_schema(Scenario, args.output)


def _version() -> str:
    """The installed distribution's version, else the package's own (a source checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paichan")
    except PackageNotFoundError:
        from paichan import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paichan", description="Production scheduling on a CP-SAT core.")
    p.add_argument("--version", action="version", version=f"paichan {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("solve", help="solve a job-shop instance or a problem.json")
    s.add_argument("instance", help="instance file (with --format) or problem .json")
    s.add_argument("--format", choices=["jssp", "fjsp", "json"], default=None)
    s.add_argument("--time-limit", type=float, default=10.0, help="seconds (default 10)")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--output", help="write the result JSON here (default: stdout)")
    s.add_argument("--gantt", help="also write an HTML Gantt chart here")
    s.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    s.set_defaults(func=cmd_solve)
    d = sub.add_parser("demo", help="solve the bundled demo plant and write schedule, KPIs and Gantt")
    d.add_argument("--output", default="out/demo")
    d.add_argument("--time-limit", type=float, default=10.0)
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(func=cmd_demo)
    sc = sub.add_parser("schema", help="print the JSON Schema of problem.json")
    sc.add_argument("--output")
    sc.set_defaults(func=cmd_schema)
    r = sub.add_parser("run", help="run a scenario: agents on Ray over Redis (or --centralised)")
    r.add_argument("scenario", nargs="?", help="scenario YAML (see scenarios/ and `paichan scenario-schema`)")
    r.add_argument("--output", help="directory for problem.json, schedule.json, kpis.json, "
                   "negotiations.jsonl, gantt.html (and run.json, the private Redis's data)")
    r.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR from its Redis data "
                   "(instead of SCENARIO)")
    r.add_argument("--centralised", action="store_true", help="solve as one CP-SAT problem instead")
    r.add_argument("--time-limit", type=float, default=60.0, help="centralised solve time (s)")
    r.add_argument("--timeout", type=float, default=1800.0, help="give up waiting for the agents after this (s)")
    r.add_argument("--cleanup", action="store_true",
                   help="with REDIS_URL (a shared Redis): delete this run's keys once its files are written")
    r.set_defaults(func=cmd_run)
    x = sub.add_parser("explain", help="explain a run from its negotiations.jsonl: every order, or one in detail")
    x.add_argument("run", help="run directory (or its negotiations.jsonl)")
    x.add_argument("--order", help="tell this order's negotiation round by round")
    x.set_defaults(func=cmd_explain)
    ss = sub.add_parser("scenario-schema", help="print the JSON Schema of scenario files")
    ss.add_argument("--output")
    ss.set_defaults(func=cmd_scenario_schema)
    c = sub.add_parser("check", help="verify a schedule against a problem with the independent checker "
                       "(exit 0 feasible, 1 infeasible, 2 unusable input)")
    c.add_argument("problem", help="problem.json, or the scenario YAML of a `paichan run` schedule")
    c.add_argument("schedule", help="a Schedule, `paichan solve problem.json` output, or `paichan run` schedule.json")
    c.set_defaults(func=cmd_check)
    register_adapters(sub)
    register_serve(sub)
    events_cli.register(sub)
    session_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
