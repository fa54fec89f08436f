"""The files a run leaves in its output directory, written by the service layer (not by the agents).

``paichan run`` writes ``problem.json`` (the scenario's global problem the run was checked against),
``schedule.json`` (the exchange format: ``{"origin", "operations": [{"order", "operation", "plant", "line",
"machine", "start", "end"}]}``), ``kpis.json``, ``negotiations.jsonl`` and ``gantt.html``; ``paichan demo``
writes ``problem.json``, ``schedule.json`` (a Schedule), ``kpis.json`` and ``gantt.html``. Each overwrites the
files both write and removes the other's files that it does not write (a demo removes the journal), so a
directory never mixes two runs; ``problem.json`` beside ``schedule.json`` lets ``paichan export`` and
``paichan check`` read either kind of directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paichan.agents.runtime import RunResult
from paichan.domain import Schedule
from paichan.service.gantt import gantt_html

RUN_FILES = ("problem.json", "schedule.json", "kpis.json", "negotiations.jsonl", "gantt.html")
DEMO_FILES = ("problem.json", "schedule.json", "kpis.json", "gantt.html")


def clear_stale(out: Path, keep: tuple[str, ...]) -> list[Path]:
    """Remove the files of the other kind of run from ``out`` (so e.g. ``paichan explain`` never tells an older run)."""
    removed = []
    for name in sorted({*RUN_FILES, *DEMO_FILES} - set(keep)):
        f = out / name
        if f.is_file():
            f.unlink()
            removed.append(f)
    return removed


def exchange_rows(schedule: Schedule) -> list[dict[str, Any]]:
    """The run's schedule in the exchange format (resources are ``plant/line/machine``, operations ``order/k``)."""
    rows = []
    for s in sorted(schedule.operations, key=lambda s: (s.order, s.start)):
        plant, line, machine = s.resource.split("/")
        rows.append({"order": s.order, "operation": int(s.operation.rsplit("/", 1)[1]), "plant": plant,
                     "line": line, "machine": machine, "start": s.start, "end": s.end})
    return rows


def write_run(out: Path, result: RunResult) -> dict[str, Any]:
    """Write a run's five files to ``out`` (:data:`RUN_FILES`); returns the KPIs.

    ``problem.json`` is written compact: the 10 x 10 network's is 40 MB (91 MB indented as a demo's).
    """
    out.mkdir(parents=True, exist_ok=True)
    clear_stale(out, RUN_FILES)
    (out / "problem.json").write_text(result.problem.model_dump_json(), encoding="utf-8")
    origin = result.scenario.origin.isoformat() if result.scenario.origin else None
    (out / "schedule.json").write_text(json.dumps({"origin": origin, "operations": exchange_rows(result.schedule)},
                                                  indent=1))
    (out / "kpis.json").write_text(json.dumps(result.kpis, indent=2))
    with (out / "negotiations.jsonl").open("w") as f:
        for e in result.journal or []:
            f.write(json.dumps(e) + "\n")
    (out / "gantt.html").write_text(gantt_html(result.problem, result.schedule, result.report.kpis,
                                               title=result.scenario.name))
    return result.kpis
