"""ERP/MES/WMS adapters: B2MML and CSV/JSON in, B2MML and JSON out.

``import_files`` reads B2MML messages (orders, stock, consumption actuals) and CSV/JSON tables
(orders, routings, resources, setups, calendars, stock, receipts) into one
:class:`~paichan.domain.Problem` plus an :class:`ImportReport` of what was read, missing and
rejected; ``write_b2mml`` (whole, or ``write_b2mml_per_plant``) and ``schedule_json`` write a solved
schedule back. See docs/ADAPTERS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from paichan.adapters.assemble import assemble
from paichan.adapters.b2mml import read_b2mml, validate
from paichan.adapters.b2mml_write import ExportError, plant_of, schedule_json, write_b2mml, write_b2mml_per_plant
from paichan.adapters.csvjson import read_table_file
from paichan.adapters.records import ImportOptions, ImportResult, Inputs
from paichan.adapters.report import ImportReport, Issue, Missing, Source

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".json")


def import_files(paths: Sequence[str | Path], opts: ImportOptions | None = None,
                 fmt: Literal["b2mml", "csv"] = "b2mml") -> ImportResult:
    """Read every file into one problem; each file's bad records are rejected, the rest kept.

    ``.xml`` files are B2MML (only with ``fmt="b2mml"``); ``.csv``/``.json`` files are tables:
    orders and the rest for ``fmt="csv"``, or master data (routings, resources, stock...) beside
    B2MML messages.
    """
    opts = opts or ImportOptions()
    report = ImportReport()
    inp = Inputs()
    for p in map(Path, paths):
        suffix = p.suffix.lower()
        if suffix == ".xml" and fmt == "b2mml":
            inp.extend(read_b2mml(p, opts, report))
        elif suffix == ".xml":
            report.reject(Source(p.name), "file", "this is XML: read B2MML with 'paichan import b2mml'")
        elif suffix in TABLE_SUFFIXES:
            inp.extend(read_table_file(p, opts, report))
        else:
            report.reject(Source(p.name), "file", f"unknown file type '{suffix}' (.xml for B2MML, .csv or .json)")
    return assemble(inp, opts, report)


__all__ = ["ExportError", "ImportOptions", "ImportReport", "ImportResult", "Issue", "Missing", "Source",
           "import_files", "plant_of", "schedule_json", "validate", "write_b2mml", "write_b2mml_per_plant"]
