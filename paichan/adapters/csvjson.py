"""The CSV/JSON exchange format for users without B2MML, and for routing master data.

One table per file (CSV) or several tables in one JSON object. A CSV table's kind is told by
its header (see ``KINDS``); a JSON file is ``{"orders": [{...}], "routings": [...], ...}`` with the
same field names as the CSV columns. Columns and their meaning are documented in
docs/ADAPTERS.md. Rows are parsed into adapter records here; the rules that combine them
(master data, units, rejections of whole orders) live in :mod:`paichan.adapters.assemble`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from paichan.adapters.records import (
    DowntimeRec,
    EquipmentUse,
    ImportOptions,
    Inputs,
    LotRec,
    MaterialRec,
    OrderRec,
    ReceiptRec,
    ResourceRec,
    RoutingRow,
    SetupRec,
    ShiftRec,
    TimeRef,
)
from paichan.adapters.report import ImportReport, Source
from paichan.adapters.values import parse_datetime, parse_duration, parse_quantity, parse_tz

# kind -> (fields that must not be empty, other fields). A routing row with an empty product or
# segment is a default for any product / any segment.
KINDS: dict[str, tuple[set[str], set[str]]] = {
    "orders": ({"order"}, {"product", "quantity", "unit", "release", "due", "deadline", "priority"}),
    "routings": (set(), {"segment", "product", "seq", "name", "machine", "duration", "duration_unit", "family",
                               "secondary", "min_lag", "max_lag", "can_span_breaks", "consumes"}),
    "resources": ({"resource"}, {"name", "kind", "capacity", "calendar", "initial_family", "default_setup",
                                 "duration_unit"}),
    "setups": ({"resource", "from_family", "to_family", "time"}, {"duration_unit"}),
    "calendars": ({"type", "start", "end"}, {"calendar", "resource", "period", "kind", "reason"}),
    "stock": ({"material", "quantity"}, {"unit", "lot", "sublot", "status", "location", "expiry", "available_at"}),
    "receipts": ({"material", "quantity", "time"}, {"unit", "source"}),
    "materials": ({"material"}, {"name", "unit"}),
}
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_EXTRA = "\x00extra"
_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0", ""}


def kind_of(columns: set[str]) -> str | None:
    """The table kind a CSV header describes (the first rule that matches), or None."""
    if "segment" in columns:
        return "routings"
    if {"from_family", "to_family"} <= columns:
        return "setups"
    if "type" in columns and {"start", "end"} <= columns:
        return "calendars"
    if "order" in columns:
        return "orders"
    if {"material", "quantity", "time"} <= columns:
        return "receipts"
    if {"material", "quantity"} <= columns:
        return "stock"
    if "material" in columns:
        return "materials"
    if "resource" in columns:
        return "resources"
    return None


class _TableReader:
    """Turns rows of one table into records; every bad value becomes a reason on the record."""

    def __init__(self, file: str, opts: ImportOptions, report: ImportReport, inp: Inputs):
        self.file, self.opts, self.report, self.inp = file, opts, report, inp
        self.tz = parse_tz(opts.timezone)
        self.naive = 0

    def time(self, value: str, field: str, problems: list[str]) -> TimeRef | None:
        """An ISO date-time (offset honoured, else the import time zone) or an integer of time units."""
        if not value:
            return None
        if re.fullmatch(r"[+-]?\d+", value):
            return int(value)
        try:
            dt, naive = parse_datetime(value, self.tz)
        except ValueError as e:
            problems.append(f"{field}: {e}")
            return None
        self.naive += naive
        return dt

    def duration(self, value: str, unit: str, field: str, problems: list[str]) -> float | None:
        if not value:
            return None
        try:
            return parse_duration(value, unit or None)
        except ValueError as e:
            problems.append(f"{field}: {e}")
            return None

    def number(self, value: str, field: str, problems: list[str], integer: bool = False) -> float | None:
        if not value:
            return None
        try:
            q, unit = parse_quantity(value)
        except ValueError as e:
            problems.append(f"{field}: {e}")
            return None
        if unit:
            problems.append(f"{field}: '{value}' has a unit where a plain number is expected")
            return None
        if integer and q != int(q):
            problems.append(f"{field}: '{value}' is not a whole number")
            return None
        return q

    def quantity(self, value: str, unit: str, field: str, problems: list[str]) -> tuple[float, str] | None:
        try:
            q, inline = parse_quantity(value)
        except ValueError as e:
            problems.append(f"{field}: {e}")
            return None
        if inline and unit and inline.lower() != unit.lower():
            problems.append(f"{field}: '{value}' carries unit '{inline}' but the unit column says '{unit}'")
            return None
        return q, inline or unit

    def uses(self, value: str, field: str, problems: list[str]) -> list[tuple[str, str]]:
        """``A:2; B:0.5 kg`` -> [('A', '2'), ('B', '0.5 kg')] (amount '1' when omitted)."""
        out = []
        for part in filter(None, (p.strip() for p in value.split(";"))):
            name, _, amount = part.partition(":")
            if not name.strip():
                problems.append(f"{field}: empty name in '{part}'")
                continue
            out.append((name.strip(), amount.strip() or "1"))
        return out

    def clock(self, value: str, period: float, field: str, problems: list[str]) -> float | None:
        """Minutes into the period: '06:00' (daily) or 'Mon 06:00' (weekly); '24:00' ends a day."""
        m = re.fullmatch(r"(?:(?P<day>[A-Za-z]{3})[a-z]*\s+)?(?P<h>\d{1,2}):(?P<m>\d{2})", value.strip())
        if not m or int(m["m"]) > 59 or int(m["h"]) > 24:
            problems.append(f"{field}: '{value}' is not a clock time (06:00, or Mon 06:00 for weekly calendars)")
            return None
        minutes = int(m["h"]) * 60 + int(m["m"])
        if m["day"]:
            day = _DAYS.get(m["day"].lower())
            if day is None:
                problems.append(f"{field}: unknown day '{m['day']}'")
                return None
            minutes += day * 1440
        elif period not in (1440.0,):
            problems.append(f"{field}: '{value}' needs a day (Mon 06:00) in a calendar whose period is not a day")
            return None
        return minutes

    # ---- one method per kind ------------------------------------------------------------------------------
    def row(self, kind: str, r: dict[str, str], src: Source) -> None:
        getattr(self, f"_{kind}")(r, src)

    def _orders(self, r: dict[str, str], src: Source) -> None:
        p: list[str] = []
        qty = self.quantity(r["quantity"], r.get("unit", ""), "quantity", p) if r.get("quantity") else None
        rec = OrderRec(id=r["order"], src=src, product=r.get("product", ""), quantity=qty[0] if qty else None,
                       release=self.time(r.get("release", ""), "release", p), due=self.time(r.get("due", ""), "due", p),
                       deadline=self.time(r.get("deadline", ""), "deadline", p), segments=None, problems=p)
        prio = self.number(r.get("priority", ""), "priority", p, integer=True)
        rec.priority = int(prio) if prio is not None else None
        for t in (rec.release, rec.due, rec.deadline):
            if isinstance(t, datetime):
                self.inp.origin_candidates.append(t)
        self.inp.orders.append(rec)

    def _routings(self, r: dict[str, str], src: Source) -> None:
        p: list[str] = []
        unit = r.get("duration_unit", "")
        secondary = []
        for name, amount in self.uses(r.get("secondary", ""), "secondary", p):
            n = self.number(amount, f"secondary {name}", p, integer=True)
            if n is not None:
                secondary.append(EquipmentUse(name, int(n)))
        consumes = []
        for name, amount in self.uses(r.get("consumes", ""), "consumes", p):
            q = self.quantity(amount, "", f"consumes {name}", p)
            if q is not None:
                consumes.append((name, q[0], q[1]))
        span = r.get("can_span_breaks", "").lower()
        if span not in _TRUE | _FALSE:
            p.append(f"can_span_breaks: '{r['can_span_breaks']}' is not true/false")
        self.inp.routings.append(RoutingRow(
            product=r.get("product", ""), segment=r["segment"], src=src, seq=self.number(r.get("seq", ""), "seq", p),
            name=r.get("name", ""), machine=r.get("machine", ""),
            duration=self.duration(r.get("duration", ""), unit, "duration", p), family=r.get("family") or None,
            secondary=secondary, min_lag=self.duration(r.get("min_lag", ""), unit, "min_lag", p),
            max_lag=self.duration(r.get("max_lag", ""), unit, "max_lag", p),
            can_span_breaks=span in _TRUE if span else None, consumes=consumes, problems=p))

    def _resources(self, r: dict[str, str], src: Source) -> None:
        p: list[str] = []
        kind = (r.get("kind") or "machine").lower()
        if kind not in ("machine", "pool"):
            p.append(f"kind: '{r['kind']}' is neither machine nor pool")
        cap = self.number(r.get("capacity", ""), "capacity", p, integer=True)
        setup = self.duration(r.get("default_setup", ""), r.get("duration_unit", ""), "default_setup", p)
        self.inp.resources.append(ResourceRec(
            id=r["resource"], src=src, name=r.get("name", ""), kind=kind, capacity=int(cap) if cap else 1,
            calendar=r.get("calendar", ""), initial_family=r.get("initial_family") or None,
            default_setup=setup or 0.0, problems=p))

    def _setups(self, r: dict[str, str], src: Source) -> None:
        p: list[str] = []
        t = self.duration(r["time"], r.get("duration_unit", ""), "time", p)
        if t is None and not p:
            p.append("time: empty")
        if self._reject(p, src, "setup"):
            return
        assert t is not None
        self.inp.setups.append(SetupRec(r["resource"], r["from_family"], r["to_family"], t, src))

    def _calendars(self, r: dict[str, str], src: Source) -> None:
        p: list[str] = []
        typ = r["type"].lower()
        if typ == "shift":
            if not r.get("calendar"):
                p.append("calendar: a shift row names its calendar")
            per = (r.get("period") or "day").lower()
            period = {"day": 1440.0, "daily": 1440.0, "week": 10080.0, "weekly": 10080.0}.get(per)
            if period is None:
                period = self.duration(per, "", "period", p)
            if period is not None:
                start, end = self.clock(r["start"], period, "start", p), self.clock(r["end"], period, "end", p)
                if not self._reject(p, src, f"calendar {r.get('calendar', '')}"):
                    assert start is not None and end is not None
                    self.inp.shifts.append(ShiftRec(r["calendar"], period, start, end, src))
                return
        elif typ in ("downtime", "holiday", "maintenance", "breakdown", "break"):
            if not (r.get("calendar") or r.get("resource")):
                p.append("a downtime row names a calendar or a resource")
            t_from, t_to = self.time(r["start"], "start", p), self.time(r["end"], "end", p)
            if t_from is None or t_to is None:
                p.append("start and end date-times are required")
            if not self._reject(p, src, "downtime"):
                assert t_from is not None and t_to is not None
                kind = r.get("kind") or (typ if typ != "downtime" else "maintenance")
                self.inp.downtimes.append(DowntimeRec(start=t_from, end=t_to, src=src, calendar=r.get("calendar", ""),
                                                      resource=r.get("resource", ""), kind=kind.lower(),
                                                      reason=r.get("reason", "")))
            return
        else:
            p.append(f"type: '{r['type']}' is neither shift nor downtime")
        self._reject(p, src, "calendar row")

    def _stock(self, r: dict[str, str], src: Source) -> None:
        p: list[str] = []
        q = self.quantity(r["quantity"], r.get("unit", ""), "quantity", p)
        expiry = self.time(r.get("expiry", ""), "expiry", p)
        avail = self.time(r.get("available_at", ""), "available_at", p)
        if isinstance(expiry, int):
            p.append("expiry: give a date-time")
        name = f"stock {r.get('lot') or r['material']}"
        if self._reject(p, src, name):
            return
        assert q is not None
        self.inp.lots.append(LotRec(material=r["material"], lot=r.get("lot") or f"{src.file} {src.where}",
                                    sublot=r.get("sublot", ""), src=src, quantity=q[0], unit=q[1],
                                    status=r.get("status", ""), location=r.get("location", ""),
                                    expiry=expiry if isinstance(expiry, datetime) else None, available_at=avail))

    def _receipts(self, r: dict[str, str], src: Source) -> None:
        p: list[str] = []
        q = self.quantity(r["quantity"], r.get("unit", ""), "quantity", p)
        t = self.time(r["time"], "time", p)
        if t is None and not p:
            p.append("time: empty")
        if self._reject(p, src, f"receipt {r['material']}"):
            return
        assert q is not None and t is not None
        self.inp.receipts.append(ReceiptRec(r["material"], q[0], q[1], t, src, r.get("source", "")))

    def _materials(self, r: dict[str, str], src: Source) -> None:
        self.inp.materials.append(MaterialRec(r["material"], src, name=r.get("name", ""), unit=r.get("unit", "")))

    def _reject(self, problems: list[str], src: Source, record: str) -> bool:
        if problems:
            self.report.reject(src, record, "; ".join(problems))
        return bool(problems)


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) with stripped values; the delimiter (, ; or tab) is sniffed from the header."""
    first = text.split("\n", 1)[0]
    delim = max([",", ";", "\t"], key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    header: list[str] | None = None
    for row in reader:
        if header is None:
            header = [h.strip().lower() for h in row]
            continue
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        vals = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h}
        if len(row) > len(header):
            vals[_EXTRA] = ",".join(row[len(header):])
        yield reader.line_num, vals


def read_table_file(path: Path, opts: ImportOptions, report: ImportReport) -> Inputs:
    """Records from one CSV table or JSON file; rejects, warnings and unknown columns go to ``report``."""
    inp = Inputs()
    src = Source(path.name)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        report.reject(src, "file", f"not UTF-8 text (byte {e.start}): save the table as UTF-8")
        return inp
    except OSError as e:
        report.reject(src, "file", f"cannot read ({e.strerror})")
        return inp
    tables: list[tuple[str, list[tuple[str, dict[str, str]]]]] = []
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            report.reject(Source(path.name, f"line {e.lineno}"), "file", f"not valid JSON: {e.msg}")
            return inp
        if not isinstance(doc, dict):
            report.reject(src, "file", "a JSON table file is an object: {\"orders\": [...], \"routings\": [...], ...}")
            return inp
        for key, rows in doc.items():
            if key not in KINDS or not isinstance(rows, list):
                report.reject(Source(path.name, f"/{key}"), "file",
                              f"'{key}' is not a table (expected a list under one of {', '.join(KINDS)})")
                continue
            tables.append((key, [(f"/{key}/{i}", _json_row(v)) for i, v in enumerate(rows)]))
    else:
        rows = list(_csv_rows(text))
        header = set(rows[0][1]) if rows else set(_csv_header(text))
        kind = kind_of(header)
        if kind is None:
            report.reject(Source(path.name, "line 1"), "file",
                          "cannot tell what this table holds from its header " + ", ".join(sorted(header))
                          + "; see docs/ADAPTERS.md (e.g. orders need 'order', routings 'segment')")
            return inp
        tables.append((kind, [(f"line {n}", r) for n, r in rows]))
    reader = _TableReader(path.name, opts, report, inp)
    count = 0
    for kind, rows_ in tables:
        required, optional = KINDS[kind]
        for loc, r in rows_:
            s = Source(path.name, loc)
            if "\x00error" in r:
                report.reject(s, kind, r["\x00error"])
                continue
            if _EXTRA in r:
                report.reject(s, kind, f"more fields than the header has columns: '{r[_EXTRA]}'")
                continue
            missing = [c for c in sorted(required) if not r.get(c)]
            if missing:
                report.reject(s, kind, f"required field(s) empty: {', '.join(missing)}")
                continue
            for c in set(r) - required - optional:
                report.ignore(path.name, f"{kind} column '{c}'")
            reader.row(kind, r, s)
            count += 1
    if reader.naive:
        report.warn(src, "file", f"{reader.naive} date-time(s) without UTC offset read as {opts.timezone}")
    label = ("JSON " + ", ".join(k for k, _ in tables)) if path.suffix.lower() == ".json" else f"CSV {tables[0][0]}"
    report.files.append({"file": path.name, "format": label, "records": count})
    return inp


def _csv_header(text: str) -> list[str]:
    first = text.split("\n", 1)[0]
    delim = max([",", ";", "\t"], key=first.count)
    return [h.strip().lower() for h in next(csv.reader([first], delimiter=delim), [])]


def _json_row(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        return {"\x00error": f"expected an object, got {type(v).__name__}"}
    out: dict[str, str] = {}
    for k, x in v.items():
        if isinstance(x, bool):
            out[k.lower()] = "true" if x else "false"
        elif x is None:
            out[k.lower()] = ""
        elif isinstance(x, dict | list):
            out["\x00error"] = f"field '{k}' must be a string or number"
        else:
            out[k.lower()] = str(x).strip()
    return out
