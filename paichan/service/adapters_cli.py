"""``paichan import`` and ``paichan export``: the adapters on the command line.

``paichan import {b2mml,csv} FILE... --output problem.json`` writes the normalised problem and
prints the report (what was read, what was missing and where it came from, what was rejected);
exit code 0 when nothing was rejected, 1 when some records were (the problem is still written
with the good ones), 2 for usage errors. ``paichan export b2mml schedule.json --version
{0600,0700} --problem problem.json --output FILE.xml`` writes a solved schedule (the output of
``paichan solve``, a bare Schedule or a ``paichan run`` schedule.json) as XSD-valid B2MML;
SCHEDULE may be the output directory of ``paichan run`` (its problem.json and schedule.json, no
--problem needed). ``--plant P`` writes one plant's operations, ``--per-plant OUTDIR`` one file per
plant (OUTDIR/P.xml). ``paichan export json`` writes a dispatch list with absolute times.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from paichan.adapters import (
    ExportError,
    ImportOptions,
    import_files,
    plant_of,
    schedule_json,
    write_b2mml,
    write_b2mml_per_plant,
)
from paichan.adapters.values import parse_tz
from paichan.checker import check
from paichan.domain import Problem, Schedule
from paichan.service.common import CliError, load_problem, load_schedule


def _origin(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as e:
        raise CliError(f"--origin: '{text}' is not an ISO-8601 date-time (example: 2026-11-23T00:00:00Z)") from e


def _options(args: argparse.Namespace) -> ImportOptions:
    try:
        parse_tz(args.timezone)
    except ValueError as e:
        raise CliError(f"--timezone: {e}") from e
    lot_status: dict[str, str] = {}
    for item in args.lot_status:
        status, _, verdict = item.rpartition("=")
        if verdict not in ("available", "blocked", "expected") or not status:
            raise CliError(f"--lot-status '{item}': write STATUS=available, STATUS=blocked or STATUS=expected")
        lot_status[status] = verdict
    name = args.name or Path(args.output).stem
    return ImportOptions(origin=_origin(args.origin), timezone=args.timezone, time_unit=args.time_unit,
                         lenient=getattr(args, "lenient", False), latest_end=args.latest_end,
                         untracked_materials=args.untracked_materials, lot_status=lot_status, name=name)


def cmd_import(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files]
    for f in files:
        if not f.is_file():
            raise CliError(f"{f}: no such file")
    result = import_files(files, _options(args), fmt=args.import_format)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.problem.model_dump_json(indent=2) + "\n", encoding="utf-8")
    report = result.report
    print(report.to_text())
    if args.report:
        doc = report.to_dict()
        doc["material_actuals"] = [
            {k: (v.isoformat() if isinstance(v, datetime) else str(v) if k == "src" else v)
             for k, v in asdict(c).items()} for c in result.consumed]
        Path(args.report).write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    if args.rejects:
        Path(args.rejects).write_text(report.rejects_csv(), encoding="utf-8")
    if args.planned:
        planned = result.planned_schedule()
        if planned is None:
            print("no planned schedule: the input does not give machine, start and end for every operation",
                  file=sys.stderr)
        else:
            Path(args.planned).write_text(planned.model_dump_json(indent=2) + "\n", encoding="utf-8")
    p = result.problem
    print(f"wrote {out}: {len(p.orders)} order(s), {sum(len(o.operations) for o in p.orders)} operation(s),"
          f" {len(p.resources)} resource(s), {len(p.materials)} material(s); {len(report.rejected)} rejected",
          file=sys.stderr)
    return 0 if report.ok else 1


def _export_inputs(args: argparse.Namespace) -> tuple[Problem, Path, Schedule, Path]:
    """The problem and schedule to export, with their files: SCHEDULE and --problem, or a run's output directory.

    A directory (of ``paichan run`` or ``paichan demo``) gives its ``problem.json`` and ``schedule.json``; a
    ``--problem`` given beside it wins over the directory's.
    """
    sched_path = Path(args.schedule)
    if sched_path.is_dir():
        run_dir, sched_path = sched_path, sched_path / "schedule.json"
        if not sched_path.exists():
            raise CliError(f"{sched_path}: no such file: {run_dir} is not the output directory of `paichan run`"
                           f" or `paichan demo`")
        problem_path = Path(args.problem) if args.problem else run_dir / "problem.json"
        if not args.problem and not problem_path.exists():
            raise CliError(f"{problem_path}: no such file: an older `paichan run` wrote {run_dir} (before runs wrote"
                           f" problem.json): rerun it, or give --problem PROBLEM.json")
    elif args.problem:
        problem_path = Path(args.problem)
    else:
        raise CliError(f"{sched_path}: give --problem PROBLEM.json (the problem this schedule solves), or the output"
                       f" directory of `paichan run` as SCHEDULE")
    problem = load_problem(problem_path)
    return problem, problem_path, load_schedule(sched_path, problem), sched_path


def _plant_documents(args: argparse.Namespace, problem: Problem, schedule: Schedule) -> dict[str, bytes]:
    """The B2MML documents of the plants asked for: every plant (--per-plant) or one (--plant)."""
    docs = write_b2mml_per_plant(problem, schedule, args.version, origin=_origin(args.origin))
    if args.plant is None:
        return docs
    if args.plant not in docs:
        raise CliError(f"--plant {args.plant}: no operation of {args.schedule} runs in that plant; its plants:"
                       f" {', '.join(docs)}")
    return {args.plant: docs[args.plant]}


def _write_per_plant(outdir: Path, docs: dict[str, bytes], schedule: Schedule) -> None:
    """Write OUTDIR/<plant>.xml for each document, with a progress line per file on stderr."""
    outdir.mkdir(parents=True, exist_ok=True)
    for plant, data in docs.items():
        ops = [s for s in schedule.operations if plant_of(s.resource) == plant]
        path = outdir / f"{plant}.xml"
        path.write_bytes(data)
        print(f"wrote {path}: {len(ops)} operation(s) of {len({s.order for s in ops})} order(s)", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    per_plant, plant = getattr(args, "per_plant", None), getattr(args, "plant", None)
    if per_plant and (args.output or plant):
        raise CliError("--per-plant OUTDIR writes every plant's file there: give it without --output and --plant")
    problem, problem_path, schedule, sched_path = _export_inputs(args)
    try:
        report = check(problem, schedule)
    except Exception as e:  # the checker may fail on a schedule that names unknown operations
        raise CliError(f"{sched_path}: does not fit {problem_path}: {e}") from e
    if not report.ok:
        detail = "\n".join(f"  - {v}" for v in report.violations[:20])
        raise CliError(f"{sched_path}: the schedule is not feasible for {problem_path}; not exported:\n{detail}")
    try:
        if per_plant or plant:
            docs = _plant_documents(args, problem, schedule)
            if per_plant:
                _write_per_plant(Path(per_plant), docs, schedule)
                return 0
            [data] = docs.values()  # the one plant asked for
        elif args.export_format == "b2mml":
            data = write_b2mml(problem, schedule, args.version, origin=_origin(args.origin))
        else:
            data = (json.dumps(schedule_json(problem, schedule, origin=_origin(args.origin)), indent=2)
                    + "\n").encode()
    except ExportError as e:
        raise CliError(f"{sched_path}: {e}") from e
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return 0


def _reporting(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print a CliError as ``paichan``'s main does and exit 2.

    Handled here as well because under ``python -m paichan.service.cli`` the main module's CliError is a
    different class object from the ``paichan.service.cli.CliError`` this module raises.
    """

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CliError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``import`` and ``export`` to the ``paichan`` command line."""
    imp = sub.add_parser("import", help="read B2MML or CSV/JSON into a problem.json, with a report")
    isub = imp.add_subparsers(dest="import_format", required=True)
    for fmt, text in (("b2mml", "B2MML .xml messages (plus .csv/.json master data: routings, resources, stock)"),
                      ("csv", "CSV/JSON tables: orders, routings, resources, setups, calendars, stock, receipts")):
        p = isub.add_parser(fmt, help=text, description=text)
        p.add_argument("files", nargs="+", metavar="FILE")
        p.add_argument("--output", required=True, help="write the normalised problem JSON here")
        p.add_argument("--report", help="also write the report (read, missing, rejected, warnings) as JSON here")
        p.add_argument("--rejects", help="also write the rejected records (file, where, record, reason) as CSV")
        p.add_argument("--planned", help="write the schedule the input itself carries (machine, start and end of"
                                         " every operation, e.g. a paichan export read back) here")
        if fmt == "b2mml":
            p.add_argument("--lenient", action="store_true",
                           help="accept schema errors in the envelope (e.g. a missing releaseID) and extension"
                                " elements with a warning instead of rejecting the file or record")
        p.add_argument("--origin", help="planning origin, ISO-8601 (default: midnight of the earliest order date)")
        p.add_argument("--timezone", default="UTC",
                       help="for date-times without offset and shift clock times (UTC, +01:00, Europe/Paris)")
        p.add_argument("--time-unit", choices=["minute", "second", "hour"], default="minute")
        p.add_argument("--latest-end", choices=["deadline", "due"], default="deadline",
                       help="what a segment's LatestEndTime becomes (default: a hard deadline)")
        p.add_argument("--untracked-materials", choices=["ignore", "zero"], default="ignore",
                       help="materials with no stock or receipt data: leave unconstrained (default) or out of stock")
        p.add_argument("--lot-status", action="append", default=[], metavar="STATUS=available|blocked|expected",
                       help="what a lot status word means for stock (repeatable)")
        p.add_argument("--name", help="problem name (default: the output file's stem)")
        p.set_defaults(func=_reporting(cmd_import))
    exp = sub.add_parser("export", help="write a solved schedule as B2MML or JSON")
    esub = exp.add_subparsers(dest="export_format", required=True)
    for fmt, text in (("b2mml", "XSD-valid B2MML: V0600 ProcessProductionSchedule or V0700 ProcessOperationsSchedule"),
                      ("json", "a dispatch list with absolute UTC times")):
        e = esub.add_parser(fmt, help=text, description=text)
        e.add_argument("schedule", help="the output of 'paichan solve problem.json --output ...', a bare Schedule, a"
                                        " `paichan run` schedule.json, or the output directory of `paichan run`")
        e.add_argument("--problem", help="the problem.json the schedule solves (default for a run's output"
                                         " directory: its problem.json)")
        if fmt == "b2mml":
            e.add_argument("--version", choices=["0600", "0700"], default="0700")
            e.add_argument("--plant", help="only the operations on this plant's machines (plant/line/machine ids)")
            e.add_argument("--per-plant", metavar="OUTDIR", help="write one document per plant, OUTDIR/<plant>.xml")
        e.add_argument("--output", help="write here (default: stdout)")
        e.add_argument("--origin", help="date-time of time 0 when the problem has no origin (ISO-8601)")
        e.set_defaults(func=_reporting(cmd_export))
