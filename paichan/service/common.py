"""Shared pieces of the command line: the user-facing error, problem and schedule loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from paichan.domain import Problem, Schedule, ScheduledOperation
from paichan.domain.errors import first_validation_message, validation_messages


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from e
    if not text.strip():
        raise CliError(f"{path}: empty file, expected {what}")
    return text


def _json(path: Path, what: str, text: str | None = None) -> Any:
    text = _read(path, what) if text is None else text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{path} line {e.lineno}: not JSON ({e.msg}), expected {what}") from e


def load_problem(path: Path, brief: bool = False) -> Problem:
    """Read a problem.json, naming the file and field of any error (``brief``: the first error on one line)."""
    what = "a problem JSON (see `paichan schema`)"
    text = _read(path, what)
    _json(path, what, text)
    try:
        return Problem.model_validate_json(text)
    except ValidationError as e:
        if brief:
            raise CliError(f"{path}: {first_validation_message(e)}; expected {what}") from e
        lines = [f"{path}: {e.error_count()} error(s) in the problem file:"]
        lines += [f"  - {msg}" for msg in validation_messages(e, 50)]
        raise CliError("\n".join(lines)) from e


RUN_KEYS = {"order", "operation", "plant", "line", "machine", "start", "end"}
SCHEDULE_FORMATS = ("a Schedule ({'operations': [{'operation', 'order', 'resource', 'mode', 'start', 'end'}]}), "
                    "the output of `paichan solve problem.json` or a `paichan run` schedule.json")


def load_schedule(path: Path, problem: Problem) -> Schedule:
    """Read a schedule in any of the formats ``paichan`` writes; one-line errors naming file and field.

    A ``paichan run`` schedule (``plant``/``line``/``machine`` rows) is mapped onto ``problem``: operation
    ``order/k`` on resource ``plant/line/machine`` in the mode of that machine.
    """
    raw = _json(path, SCHEDULE_FORMATS)
    if isinstance(raw, dict) and "schedule" in raw:  # `paichan solve problem.json` output
        if raw["schedule"] is None:
            raise CliError(f"{path}: schedule is null (the solve found none: status {raw.get('status')})")
        raw = raw["schedule"]
    if isinstance(raw, dict) and "makespan" in raw and "status" in raw:
        raise CliError(f"{path}: this is the job-shop contract output of `paichan solve --format jssp|fjsp`; "
                       f"check needs {SCHEDULE_FORMATS}")
    ops = raw.get("operations") if isinstance(raw, dict) else None
    if isinstance(ops, list) and ops and all(isinstance(r, dict) and RUN_KEYS <= set(r) for r in ops):
        return _run_schedule(path, ops, problem)
    try:
        return Schedule.model_validate(raw)
    except ValidationError as e:
        raise CliError(f"{path}: {first_validation_message(e)}; expected {SCHEDULE_FORMATS}") from e


def _run_schedule(path: Path, rows: list[dict[str, Any]], problem: Problem) -> Schedule:
    """A `paichan run` schedule.json as a Schedule of ``problem`` (the scenario's global problem)."""
    ops = {op.id: op for o in problem.orders for op in o.operations}
    out = []
    for i, r in enumerate(rows):
        op_id, resource = f"{r['order']}/{r['operation']}", f"{r['plant']}/{r['line']}/{r['machine']}"
        for key in ("start", "end"):
            if not isinstance(r[key], int) or isinstance(r[key], bool):
                raise CliError(f"{path}: operations.{i}.{key}: expected an integer, got {r[key]!r}")
        op = ops.get(op_id)
        mode = next((k for k, m in enumerate(op.modes) if m.resource == resource), 0) if op else 0
        out.append(ScheduledOperation(operation=op_id, order=str(r["order"]), resource=resource, mode=mode,
                                      start=r["start"], end=r["end"]))
    if out and not any(s.operation in ops for s in out):
        raise CliError(f"{path}: none of its {len(out)} operations is in problem '{problem.name}': give the "
                       f"problem this schedule was made for (for `paichan run`, the scenario YAML)")
    return Schedule(problem=problem.name, operations=out)
