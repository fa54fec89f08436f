"""Reading B2MML (ISA-95 / IEC 62264 XML) into adapter records, with XSD validation.

Supported messages (any of the verbs Sync, Process, Show, Change, or the bare noun as root):

* V0401 and V0600 ``ProductionSchedule`` (ProductionRequest / nested SegmentRequirement) and
  V0700 ``OperationsSchedule`` (OperationsRequest / SegmentRequirement / SegmentRequirementChild)
  -> orders and operations;
* ``MaterialInformation`` / ``MaterialLot`` / ``MaterialSubLot`` -> stock and expected receipts,
  ``MaterialDefinition`` -> material names and base units;
* V0401/V0600 ``ProductionPerformance`` -> consumed-material actuals (MaterialActual, Consumed).

This is the one B2MML reader: :func:`read_performance` also reads the SegmentResponses of
V0401/V0600 ProductionPerformance and V0700 OperationsPerformance for the MES adapter
(:mod:`paichan.adapters.performance` turns them into progress events), with the same safe parser,
packaged XSDs and schema-error location as the import.

Every file is validated against the packaged MESA schemas (``schemas/``). A schema error inside a
record (ProductionRequest, MaterialLot, ...) rejects that record; one outside any record (the
envelope: root attributes, ApplicationArea) rejects the file, unless ``lenient`` is set, which
also tolerates elements from foreign (extension) namespaces. Checks the XSD cannot make (a
QuantityString that is not a number of its DataType, an end before a start) are done here in
both modes. The field-by-field mapping is documented in docs/ADAPTERS.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path

from lxml import etree

from paichan.adapters.records import (
    ConsumedRec,
    EquipmentUse,
    ImportOptions,
    Inputs,
    LotRec,
    MaterialRec,
    MaterialReq,
    OrderRec,
    SegmentRec,
)
from paichan.adapters.report import ImportReport, Source
from paichan.adapters.values import check_typed_value, parse_datetime, parse_duration, parse_quantity, parse_tz

NAMESPACES = {
    "http://www.wbf.org/xml/B2MML-V0401": "0401",
    "http://www.mesa.org/xml/B2MML-V0600": "0600",
    "http://www.mesa.org/xml/B2MML": "0700",
}
NAMESPACE_OF = {v: k for k, v in NAMESPACES.items()}
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
_SCHEMA_FILES = {
    ("0401", "ProductionSchedule"): "v0401/B2MML-V0401-ProductionSchedule.xsd",
    ("0401", "ProductionPerformance"): "v0401/B2MML-V0401-ProductionSchedule.xsd",
    ("0600", "ProductionSchedule"): "v0600/B2MML-V0600-ProductionSchedule.xsd",
    ("0600", "ProductionPerformance"): "v0600/B2MML-V0600-ProductionPerformance.xsd",
    ("0700", "OperationsSchedule"): "v0700/B2MML-OperationsSchedule.xsd",
    ("0700", "OperationsPerformance"): "v0700/B2MML-OperationsPerformance.xsd",
}
_MATERIAL_SCHEMA = {"0401": "v0401/B2MML-V0401-Material.xsd", "0600": "v0600/B2MML-V0600-Material.xsd",
                    "0700": "v0700/B2MML-Material.xsd"}
for _v, _f in _MATERIAL_SCHEMA.items():
    for _noun in ("MaterialInformation", "MaterialDefinition", "MaterialLot", "MaterialSubLot"):
        _SCHEMA_FILES[(_v, _noun)] = _f
NOUNS = ("ProductionSchedule", "OperationsSchedule", "MaterialInformation", "MaterialDefinition", "MaterialSubLot",
         "MaterialLot", "ProductionPerformance")  # what `paichan import b2mml` reads
PERFORMANCE_NOUNS = ("ProductionPerformance", "OperationsPerformance")  # what the MES performance reader reads
DATA_VERBS = ("Sync", "Process", "Show", "Change", "")
OTHER_VERBS = ("Get", "Cancel", "Acknowledge", "Respond", "Confirm")
RECORDS = {"ProductionRequest", "OperationsRequest", "MaterialLot", "MaterialSubLot", "MaterialDefinition",
           "ProductionResponse"}
DURATION_PARAMETERS = {"duration", "processingtime", "processtime", "runtime"}
EXPIRY_PROPERTIES = {"expirydate", "expirationdate", "bestbefore", "shelflifeexpirationdate"}
AVAILABLE_PROPERTIES = {"availabledate", "availabilitydate", "expecteddate", "receiptdate", "expectedreceiptdate"}


@cache
def schema(version: str, noun: str) -> etree.XMLSchema:
    """The compiled packaged XSD for a B2MML version ('0401', '0600', '0700') and message noun."""
    try:
        rel = _SCHEMA_FILES[(version, noun)]
    except KeyError:
        raise ValueError(f"no packaged schema for B2MML V{version} {noun}") from None
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / rel)))


class B2MMLError(ValueError):
    """A B2MML document that cannot be read at all (not well-formed, or rejected by its schema)."""


def parse_xml(data: bytes) -> etree._ElementTree:
    """The document tree, parsed without entity expansion or network access; raises etree.XMLSyntaxError."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=False)
    return etree.fromstring(data, parser).getroottree()


def split_root(tag: str, nouns: tuple[str, ...] = NOUNS) -> tuple[str, str] | None:
    """('Sync', 'ProductionSchedule') for 'SyncProductionSchedule'; None if the noun is none of ``nouns``."""
    local = etree.QName(tag).localname
    for noun in nouns:
        if local.endswith(noun):
            verb = local[: -len(noun)]
            if verb in DATA_VERBS or verb in OTHER_VERBS:
                return verb, noun
    return None


def validate(doc: etree._ElementTree | etree._Element | bytes) -> list[str]:
    """Schema errors of a B2MML document against the packaged XSDs ('line N: message'); [] if valid."""
    tree = etree.fromstring(doc).getroottree() if isinstance(doc, bytes) else (
        doc.getroottree() if isinstance(doc, etree._Element) else doc)
    root = tree.getroot()
    version = NAMESPACES.get(etree.QName(root).namespace or "")
    parts = split_root(root.tag, NOUNS + PERFORMANCE_NOUNS)
    if version is None or parts is None or (version, parts[1]) not in _SCHEMA_FILES:
        return [f"line {root.sourceline}: {etree.QName(root).text} is not a B2MML message paichan knows"]
    sch = schema(version, parts[1])
    if sch.validate(tree):
        return []
    return [f"line {e.line}: {_clean(e.message)}" for e in sch.error_log]


def schema_errors(tree: etree._ElementTree,
                  sch: etree.XMLSchema) -> list[tuple[etree._Element | None, int, str]]:
    """Each XSD error as (element it is about, line, ``'schema: Name line N: message'``); [] if valid."""
    if sch.validate(tree):
        return []
    by_line: dict[int, etree._Element] = {}
    for el in tree.getroot().iter():
        if isinstance(el.tag, str):
            by_line.setdefault(el.sourceline or 0, el)
    out: list[tuple[etree._Element | None, int, str]] = []
    for err in sch.error_log:
        el = _error_element(tree, err, by_line)
        name = _ln(el) if el is not None else "line"
        out.append((el, err.line, f"schema: {name} line {err.line}: {_clean(err.message)}"))
    return out


def children(el: etree._Element, name: str, ns: str) -> list[etree._Element]:
    """The child elements ``{ns}name`` of ``el``, in document order."""
    return [c for c in el if isinstance(c.tag, str) and c.tag == f"{{{ns}}}{name}"]


def _clean(msg: str) -> str:
    return re.sub(r"\{(?:https?|urn):[^}]*\}", "", msg)


def _ln(el: etree._Element) -> str:
    return etree.QName(el).localname


def xpath_of(el: etree._Element) -> str:
    """Readable XPath with local names, indexed only where a name repeats: /A/B[2]/C."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        name = _ln(node)
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))


def where(el: etree._Element) -> str:
    return f"{xpath_of(el)} (line {el.sourceline})"


class _FileReader:
    """Reads one B2MML file into :class:`Inputs`, reporting into the shared report."""

    def __init__(self, path: Path, opts: ImportOptions, report: ImportReport):
        self.path, self.opts, self.report = path, opts, report
        self.file = path.name
        self.tz = parse_tz(opts.timezone)
        self.used: set[etree._Element] = set()
        self.inp = Inputs()
        self.naive = 0
        self.ns = ""
        self.version = ""
        self.created: datetime | None = None
        self.bad: dict[etree._Element, list[str]] = {}
        self._window_starts: list[datetime] = []
        self._window_ends: list[datetime] = []

    # ---- element helpers ------------------------------------------------------------------------------
    def kids(self, el: etree._Element, name: str) -> list[etree._Element]:
        out = children(el, name, self.ns)
        self.used.update(out)
        return out

    def kid(self, el: etree._Element, name: str) -> etree._Element | None:
        k = self.kids(el, name)
        return k[0] if k else None

    def text(self, el: etree._Element, name: str) -> str:
        k = self.kid(el, name)
        if k is None:
            return ""
        for c in k:
            if isinstance(c.tag, str):
                self.used.add(c)
        return (k.text or "").strip()

    def dt(self, el: etree._Element, name: str, problems: list[str]) -> datetime | None:
        k = self.kid(el, name)
        if k is None or not (k.text or "").strip():
            return None
        try:
            value, naive = parse_datetime(k.text or "", self.tz)
        except ValueError as e:
            problems.append(f"{name} line {k.sourceline}: {e}")
            return None
        self.naive += naive
        return value

    def quantities(self, el: etree._Element, problems: list[str], *, use: bool = True) -> tuple[float, str] | None:
        """Check every Quantity of ``el``; return the first amount that is not a rate (unit with '/')."""
        chosen: tuple[float, str] | None = None
        for q in self.kids(el, "Quantity"):
            s, dtype, unit = self.text(q, "QuantityString"), self.text(q, "DataType"), self.text(q, "UnitOfMeasure")
            self.text(q, "Key")
            k = self.kid(q, "QuantityString")
            try:
                check_typed_value(s, dtype or None)
            except ValueError as e:
                problems.append(f"Quantity line {k.sourceline if k is not None else q.sourceline}: QuantityString {e}")
                continue
            if chosen is None and use and "/" not in unit and dtype != "boolean":
                try:
                    value, inline = parse_quantity(s, dtype or None)
                except ValueError as e:
                    problems.append(f"Quantity line {q.sourceline}: {e}")
                    continue
                chosen = (value, unit or inline)
        return chosen

    def values(self, el: etree._Element, problems: list[str]) -> list[tuple[str, str, str]]:
        """(ValueString, DataType, UnitOfMeasure) of each Value child, each checked against its DataType."""
        out = []
        for v in self.kids(el, "Value"):
            s, dtype, unit = self.text(v, "ValueString"), self.text(v, "DataType"), self.text(v, "UnitOfMeasure")
            try:
                check_typed_value(s, dtype or None)
            except ValueError as e:
                problems.append(f"Value line {v.sourceline}: ValueString {e}")
                continue
            out.append((s, dtype, unit))
        return out

    def properties(self, el: etree._Element, names: tuple[str, ...], problems: list[str]) -> dict[str, str]:
        """{lower-case property ID: first ValueString} of property children named ``names``."""
        out: dict[str, str] = {}
        for name in names:
            for p in self.kids(el, name):
                pid = self.text(p, "ID")
                vals = self.values(p, problems)
                if vals and pid.lower() in EXPIRY_PROPERTIES | AVAILABLE_PROPERTIES:
                    out[pid.lower()] = vals[0][0]
                elif pid.lower() not in EXPIRY_PROPERTIES | AVAILABLE_PROPERTIES:
                    self.used.discard(p)
        return out

    def location(self, el: etree._Element) -> str:
        for name in ("StorageLocation", "Location", "HierarchyScope"):
            k = self.kid(el, name)
            if k is not None:
                return self.text(k, "EquipmentID") or (k.text or "").strip()
        return ""

    # ---- file -----------------------------------------------------------------------------------------------
    def read(self) -> Inputs:
        src = Source(self.file)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            self.report.reject(src, "file", f"cannot read ({e.strerror})")
            return self.inp
        try:
            tree = parse_xml(data)
        except etree.XMLSyntaxError as e:
            self.report.reject(Source(self.file, f"line {e.lineno}"), "file", f"not well-formed XML: {e.msg}")
            self._describe("XML (not well-formed)", 0)
            return self.inp
        root = tree.getroot()
        self.ns = etree.QName(root).namespace or ""
        self.version = NAMESPACES.get(self.ns, "")
        parts = split_root(root.tag)
        if not self.version:
            self.report.reject(Source(self.file, where(root)), "file",
                               f"not a B2MML document: root namespace '{self.ns}' is none of"
                               f" {', '.join(NAMESPACES)}")
            return self.inp
        if parts is None:
            self.report.reject(Source(self.file, where(root)), "file",
                               f"{_ln(root)} is not a message paichan imports (it reads {', '.join(NOUNS)})")
            return self.inp
        verb, noun = parts
        label = f"B2MML V{self.version} {_ln(root)}"
        if verb in OTHER_VERBS:
            self.report.reject(Source(self.file, where(root)), "file",
                               f"verb {verb} carries no data to import (paichan imports Sync, Process, Show, Change)")
            self._describe(label, 0)
            return self.inp
        if (self.version, noun) not in _SCHEMA_FILES:
            self.report.reject(Source(self.file, where(root)), "file",
                               f"{noun} is not read for B2MML V{self.version}"
                               + (" (V0700 uses OperationsSchedule)" if self.version == "0700" else ""))
            return self.inp
        if not self._schema_check(tree, noun):
            self._describe(label, 0)
            return self.inp
        file_problems: list[str] = []
        area = self.kid(root, "ApplicationArea")
        if area is not None:
            self.created = self.dt(area, "CreationDateTime", file_problems)
        if file_problems:
            self.report.reject(Source(self.file, where(root)), "file", "; ".join(file_problems))
            self._describe(label, 0)
            return self.inp
        if self.created is not None:
            self.inp.fallback_origins.append(self.created)
        if verb:
            area = self.kid(root, "DataArea")
            nouns = self.kids(area, noun) if area is not None else []
            if area is not None:
                self.kids(area, verb)
        else:
            nouns = [root]
            self.used.add(root)
        count = 0
        for n in nouns:
            if noun in ("ProductionSchedule", "OperationsSchedule"):
                count += self._schedule(n)
            elif noun == "MaterialInformation":
                count += self._material_information(n)
            elif noun == "MaterialDefinition":
                count += self._material_definition(n)
            elif noun == "MaterialLot":
                count += self._lot(n, "")
            elif noun == "MaterialSubLot":
                count += self._sublot(n, self.text(n, "MaterialLotID"), "")
            else:
                count += self._performance(n)
        if self.naive:
            self.report.warn(Source(self.file), "file", f"{self.naive} date-time(s) without UTC offset read as"
                                                        f" {self.opts.timezone}")
        self._ignored(nouns)
        self._describe(label, count)
        return self.inp

    def _describe(self, label: str, count: int) -> None:
        self.report.files.append({"file": self.file, "format": label, "records": count})

    def _schema_check(self, tree: etree._ElementTree, noun: str) -> bool:
        """Validate; sort errors into record-level (reject record) and file-level (reject file or warn)."""
        errors = schema_errors(tree, schema(self.version, noun))
        if not errors:
            return True
        root = tree.getroot()
        file_errors: list[str] = []
        for el, line, msg in errors:
            foreign = el is not None and etree.QName(el).namespace != self.ns
            record = record_of(el) if el is not None else None
            if self.opts.lenient and (record is None or foreign):
                hint = " (extension element ignored)" if foreign else ""
                self.report.warn(Source(self.file, where(el) if el is not None else f"line {line}"), "file",
                                 f"accepted in lenient mode despite {msg}{hint}")
            elif record is None:
                file_errors.append(msg)
            else:
                self.bad.setdefault(record, []).append(msg)
        if file_errors:
            hint = "" if self.opts.lenient else " (use --lenient to accept envelope deviations with a warning)"
            self.report.reject(Source(self.file, where(root)), "file", "; ".join(file_errors) + hint)
            return False
        return True

    # ---- schedules ------------------------------------------------------------------------------------------
    def _schedule(self, sched: etree._Element) -> int:
        problems: list[str] = []
        self.text(sched, "ID")
        start = self.dt(sched, "StartTime", problems)
        if start is not None:
            self.inp.schedule_starts.append(start)
        if self.version == "0700":
            otype = self.text(sched, "OperationsType")
            if otype and otype != "Production":
                self.report.warn(Source(self.file, where(sched)), "file",
                                 f"OperationsType '{otype}': its requests are imported as production orders")
        if problems:
            self.report.reject(Source(self.file, where(sched)), "schedule", "; ".join(problems))
            return 0
        reqs = self.kids(sched, "OperationsRequest" if self.version == "0700" else "ProductionRequest")
        for req in reqs:
            self.inp.orders.append(self._request(req))
        return len(reqs)

    def _request(self, req: etree._Element) -> OrderRec:
        rec = OrderRec(id=self.text(req, "ID"), src=Source(self.file, where(req)))
        self._window_starts, self._window_ends = [], []
        rec.problems.extend(self.bad.get(req, []))
        rec.release = self.dt(req, "StartTime", rec.problems)
        rec.due = self.dt(req, "EndTime", rec.problems)
        if rec.release and rec.due and rec.release > rec.due:
            rec.problems.append(f"StartTime {rec.release.isoformat()} is after EndTime {rec.due.isoformat()}")
        prio = self.text(req, "Priority")
        if prio:
            try:
                value, _ = parse_quantity(prio)
                rec.priority = round(value)
                if rec.priority != value:
                    self.report.warn(rec.src, f"order {rec.id}", f"Priority {prio} rounded to {rec.priority}")
            except ValueError as e:
                rec.problems.append(f"Priority: {e}")
        # V0700 OperationsDefinitionID / V0401-V0600 ProductProductionRuleID name the product's routing
        definition = self.text(req, "OperationsDefinitionID" if self.version == "0700" else "ProductProductionRuleID")
        seg_name = "SegmentRequirement"
        rec.segments = self._segments(req, seg_name, rec, "", set())
        rec.message = True
        if not rec.product and definition:
            rec.product = definition
        if not rec.segments:
            rec.segments = None  # an order header only: the routing master supplies the operations
        earliest = [s for s in [rec.release, *self._window_starts] if isinstance(s, datetime)]
        latest = [s for s in self._window_ends if isinstance(s, datetime)]
        self.inp.origin_candidates.extend([*earliest, *latest, *([rec.due] if rec.due else [])])
        if earliest:
            rec.release = min(earliest)
        if latest:
            rec.latest_end = max(latest)
        return rec

    def _segments(self, parent: etree._Element, name: str, rec: OrderRec, prefix: str,
                  taken: set[str]) -> list[SegmentRec]:
        out: list[SegmentRec] = []
        child_name = "SegmentRequirementChild" if self.version == "0700" else "SegmentRequirement"
        for i, sr in enumerate(self.kids(parent, name), 1):
            pos = f"{prefix}{i}"
            problems = rec.problems
            sid, psid = self.text(sr, "ID"), self.text(sr, "ProcessSegmentID")
            prod_sid = self.text(sr, "ProductSegmentID") if self.version != "0700" else ""
            if self.version == "0700":
                self.text(sr, "OperationsDefinitionID")
                self.text(sr, "OperationsSegmentID")
            earliest = self.dt(sr, "EarliestStartTime", problems)
            latest = self.dt(sr, "LatestEndTime", problems)
            if earliest and latest and earliest > latest:
                problems.append(f"SegmentRequirement line {sr.sourceline}: EarliestStartTime {earliest.isoformat()}"
                                f" is after LatestEndTime {latest.isoformat()}")
            if earliest:
                self._window_starts.append(earliest)
            if latest:
                self._window_ends.append(latest)
            duration = self._duration(sr, problems)
            equipment = self._equipment(sr, problems)
            personnel = self._personnel(sr, problems)
            consumed = self._materials(sr, rec, problems)
            children = self.kids(sr, child_name)
            if not (sid or psid or prod_sid or earliest or latest or duration is not None or equipment or personnel
                    or consumed or children):
                self.report.warn(Source(self.file, where(sr)), f"order {rec.id}",
                                 "SegmentRequirement names no segment, time, machine or consumption: not an operation")
                continue
            if children and not (psid or prod_sid or duration is not None or equipment):
                sub = self._segments(sr, child_name, rec, pos + ".", taken)
                if consumed and sub:
                    sub[0].materials[:0] = consumed
                elif consumed:
                    problems.append(f"SegmentRequirement line {sr.sourceline}: consumed material on a grouping"
                                    " segment with no operation below it")
                out.extend(sub)
                continue
            derived = psid or prod_sid or f"seg-{pos}"
            local = sid or derived
            if not sid and local in taken:
                local = f"{derived}#{pos}"
            taken.add(local)
            out.append(SegmentRec(local_id=local, name=psid or prod_sid or sid or local, key=psid or prod_sid or sid,
                                  src=Source(self.file, where(sr)), earliest=earliest, latest=latest,
                                  duration=duration, equipment=equipment, personnel=personnel, materials=consumed))
            out.extend(self._segments(sr, child_name, rec, pos + ".", taken))
        return out

    def _duration(self, sr: etree._Element, problems: list[str]) -> float | None:
        k = self.kid(sr, "Duration")
        if k is not None and (k.text or "").strip():
            try:
                return parse_duration(k.text or "")
            except ValueError as e:
                problems.append(f"Duration line {k.sourceline}: {e}")
                return None
        holders = ([p for pp in self.kids(sr, "ProductionParameter") for p in self.kids(pp, "Parameter")]
                   if self.version != "0700" else self.kids(sr, "SegmentParameter"))
        for p in holders:
            pid = self.text(p, "ID")
            vals = self.values(p, problems)
            if pid.lower() not in DURATION_PARAMETERS:
                if pid.lower() != "setuptime":
                    self.used.discard(p)
                continue
            if not vals:
                problems.append(f"Parameter {pid} line {p.sourceline}: no Value")
                return None
            value, dtype, unit = vals[0]
            try:
                if dtype != "duration" and not value.strip().startswith("P") and not unit:
                    raise ValueError(f"'{value}' has no UnitOfMeasure (give s, min, h or an ISO-8601 duration)")
                return parse_duration(value, unit or None)
            except ValueError as e:
                problems.append(f"Parameter {pid} line {p.sourceline}: {e}")
                return None
        return None

    def _equipment(self, sr: etree._Element, problems: list[str]) -> list[EquipmentUse]:
        out: list[EquipmentUse] = []
        for er in self.kids(sr, "EquipmentRequirement"):
            ids = [(e.text or "").strip() for e in self.kids(er, "EquipmentID") if (e.text or "").strip()]
            classes = [(e.text or "").strip() for e in self.kids(er, "EquipmentClassID")]
            if self.version == "0700":
                self.text(er, "ID")
                self.text(er, "EquipmentUse")
            amount = self.quantities(er, problems)
            if classes and not ids:
                self.report.warn(Source(self.file, where(er)), "equipment",
                                 f"EquipmentClassID {', '.join(classes)} is not resolved to machines: give EquipmentID"
                                 " or a routing master row")
            for eid in ids:
                out.append(EquipmentUse(eid, max(1, round(amount[0])) if amount else 1))
        return out

    def _personnel(self, sr: etree._Element, problems: list[str]) -> list[EquipmentUse]:
        out: list[EquipmentUse] = []
        for pr in self.kids(sr, "PersonnelRequirement"):
            ids = [(e.text or "").strip() for n in ("PersonnelClassID", "PersonID") for e in self.kids(pr, n)]
            if self.version == "0700":
                self.text(pr, "ID")
            amount = self.quantities(pr, problems)
            out.extend(EquipmentUse(i, max(1, round(amount[0])) if amount else 1) for i in ids if i)
        return out

    def _materials(self, sr: etree._Element, rec: OrderRec, problems: list[str]) -> list[MaterialReq]:
        out: list[MaterialReq] = []
        for mr in self.kids(sr, "MaterialRequirement"):
            n_before = len(problems)
            mids = [(e.text or "").strip() for e in self.kids(mr, "MaterialDefinitionID")]
            use = self.text(mr, "MaterialUse")
            if self.version == "0700":
                self.text(mr, "ID")
            qty = self.quantities(mr, problems)
            for a in self.kids(mr, "AssemblyRequirement"):
                self.quantities(a, problems, use=False)
                self.used.discard(a)
            if len(problems) > n_before:
                continue
            src = Source(self.file, where(mr))
            if use in ("Consumed", "Material Consumed"):
                if not mids or not mids[0]:
                    problems.append(f"MaterialRequirement line {mr.sourceline}: Consumed but no MaterialDefinitionID")
                elif qty is None:
                    problems.append(f"MaterialRequirement line {mr.sourceline}: Consumed {mids[0]} has no quantity")
                else:
                    out.append(MaterialReq(mids[0], qty[0], qty[1], src))
            elif use in ("Produced", "Material Produced", "Yield Produced") and mids and mids[0]:
                if not rec.product:
                    rec.product = mids[0]
                    rec.quantity = qty[0] if qty and qty[0] > 0 else None
                elif rec.product != mids[0]:
                    self.report.warn(src, f"order {rec.id}", f"second produced material {mids[0]} not used"
                                                              f" (the order's product is {rec.product})")
            elif not use:
                if mids or self.kids(mr, "MaterialLotID"):
                    self.report.warn(src, f"order {rec.id}", "MaterialRequirement without MaterialUse read as a"
                                                             " reference (e.g. a lot allocation), not as consumption")
                self.used.discard(mr)
            else:
                self.used.discard(mr)
        return out

    # ---- materials ------------------------------------------------------------------------------------------
    def _material_information(self, info: etree._Element) -> int:
        info_id = self.text(info, "ID")
        n = 0
        for md in self.kids(info, "MaterialDefinition"):
            n += self._material_definition(md)
        for lot in self.kids(info, "MaterialLot"):
            n += self._lot(lot, info_id)
        for sub in self.kids(info, "MaterialSubLot"):
            n += self._sublot(sub, self.text(sub, "MaterialLotID"), info_id)
        return n

    def _material_definition(self, md: etree._Element) -> int:
        mid = self.text(md, "ID")
        src = Source(self.file, where(md))
        problems = list(self.bad.get(md, []))
        descs = self.kids(md, "Description")
        unit = ""
        for p in self.kids(md, "MaterialDefinitionProperty"):
            pid = self.text(p, "ID")
            vals = self.values(p, problems)
            if pid.lower() in ("baseunitofmeasure", "unitofmeasure", "baseunit") and vals:
                unit = vals[0][0]
            else:
                self.used.discard(p)
        if not mid:
            problems.append("no ID")
        if problems:
            self.report.reject(src, f"material {mid or '(no ID)'}", "; ".join(problems))
            return 1
        self.inp.materials.append(MaterialRec(mid, src, name=(descs[0].text or "").strip() if descs else "", unit=unit))
        return 1

    def _lot(self, lot: etree._Element, info_id: str) -> int:
        lot_id = self.text(lot, "ID")
        src = Source(self.file, where(lot))
        problems = list(self.bad.get(lot, []))
        material = self.text(lot, "MaterialDefinitionID")
        if not material and info_id:
            material = info_id
            self.report.warn(src, f"stock {lot_id}", f"lot names no MaterialDefinitionID: material '{info_id}' taken"
                                                     " from MaterialInformation/ID")
        rec = self._stock_fields(lot, lot_id, "", material, src, problems, ("MaterialLotProperty",))
        n = 1
        subs = [*self.kids(lot, "MaterialSubLot")]
        if problems or not lot_id:
            self.report.reject(src, f"stock {lot_id or '(no ID)'}", "; ".join(problems or ["no ID"]))
            for s in subs:
                self.report.reject(Source(self.file, where(s)), f"stock {lot_id}/{self.text(s, 'ID')}",
                                   "its lot was rejected")
            return n + len(subs)
        self.inp.lots.append(rec)
        for s in subs:
            n += self._sublot(s, lot_id, material)
        return n

    def _sublot(self, sub: etree._Element, lot_id: str, material: str) -> int:
        sid = self.text(sub, "ID")
        src = Source(self.file, where(sub))
        problems = list(self.bad.get(sub, []))
        self.text(sub, "MaterialLotID")
        rec = self._stock_fields(sub, lot_id, sid, material, src, problems,
                                 ("MaterialSublotProperty", "MaterialLotProperty"))
        if not sid:
            problems.append("no ID")
        if problems:
            self.report.reject(src, f"stock {lot_id}/{sid or '(no ID)'}", "; ".join(problems))
            return 1
        self.inp.lots.append(rec)
        n = 1
        for child in [*self.kids(sub, "MaterialSubLot"), *self.kids(sub, "MaterialSubLotChild")]:
            n += self._sublot(child, lot_id, material)
        return n

    def _stock_fields(self, el: etree._Element, lot_id: str, sub_id: str, material: str, src: Source,
                      problems: list[str], prop_names: tuple[str, ...]) -> LotRec:
        status_el = self.kid(el, "Status")
        qty = self.quantities(el, problems)
        props = self.properties(el, prop_names, problems)
        expiry = available = None
        for key, value in props.items():
            try:
                when, naive = parse_datetime(value, self.tz)
                self.naive += naive
            except ValueError as e:
                problems.append(f"property {key}: {e}")
                continue
            if key in EXPIRY_PROPERTIES:
                expiry = when
            else:
                available = when
        if available is None and self.version == "0700":
            available = self.dt(el, "EffectiveStartDate", problems)
        return LotRec(material=material, lot=lot_id, sublot=sub_id, src=src, quantity=qty[0] if qty else None,
                      unit=qty[1] if qty else "", status=(status_el.text or "").strip() if status_el is not None
                      else None, location=self.location(el), expiry=expiry, available_at=available,
                      snapshot=self.created)

    # ---- performance (material actuals) ---------------------------------------------------------------------------
    def _performance(self, perf: etree._Element) -> int:
        n = 0
        for resp in self.kids(perf, "ProductionResponse"):
            n += 1
            rid = self.text(resp, "ID")
            src = Source(self.file, where(resp))
            problems = list(self.bad.get(resp, []))
            actuals: list[ConsumedRec] = []
            stack = self.kids(resp, "SegmentResponse")
            while stack:
                sr = stack.pop(0)
                seg = self.text(sr, "ProcessSegmentID") or self.text(sr, "ID")
                for ma in [*self.kids(sr, "MaterialActual"), *self.kids(sr, "MaterialConsumedActual")]:
                    use = self.text(ma, "MaterialUse") if _ln(ma) == "MaterialActual" else "Consumed"
                    if use != "Consumed":
                        self.used.discard(ma)
                        continue
                    mid = self.text(ma, "MaterialDefinitionID")
                    qty = self.quantities(ma, problems)
                    if not mid or qty is None:
                        problems.append(f"MaterialActual line {ma.sourceline}: consumed material needs"
                                        " MaterialDefinitionID and a quantity")
                        continue
                    actuals.append(ConsumedRec(material=mid, quantity=qty[0], unit=qty[1],
                                               src=Source(self.file, where(ma)), lot=self.text(ma, "MaterialLotID"),
                                               sublot=self.text(ma, "MaterialSubLotID"), response=rid, segment=seg,
                                               reported=self.created))
                stack.extend(self.kids(sr, "SegmentResponse"))
            if problems:
                self.report.reject(src, f"production response {rid}", "; ".join(problems))
                continue
            self.inp.consumed.extend(actuals)
        return n

    # ---- what was not used -------------------------------------------------------------------------------------------
    def _ignored(self, nouns: list[etree._Element]) -> None:
        def walk(el: etree._Element) -> None:
            for c in el:
                if not isinstance(c.tag, str):
                    continue
                if c in self.used:
                    walk(c)
                else:
                    name = _ln(c) if etree.QName(c).namespace == self.ns else etree.QName(c).text
                    self.report.ignore(self.file, name)

        for n in nouns:
            walk(n)


def _error_element(tree: etree._ElementTree, err: etree._LogEntry,
                   by_line: dict[int, etree._Element]) -> etree._Element | None:
    """The element a schema error is about (via its XPath, else its line)."""
    path = getattr(err, "path", None)
    if path:
        root = tree.getroot()
        nsmap = {k: v for k, v in root.nsmap.items() if k}
        try:
            found = tree.xpath(path, namespaces=nsmap)
            if found and isinstance(found[0], etree._Element):
                return found[0]
        except etree.XPathError:
            pass
    return by_line.get(err.line)


def record_of(el: etree._Element, records: set[str] = RECORDS) -> etree._Element | None:
    """The innermost ancestor-or-self of ``el`` whose local name is one of ``records``; None in the envelope."""
    node: etree._Element | None = el
    while node is not None:
        if isinstance(node.tag, str) and _ln(node) in records:
            return node
        node = node.getparent()
    return None


# ---- performance messages (read for the MES adapter, paichan.adapters.performance) -------------------------------
PERFORMANCE_RECORDS = {"ProductionResponse", "OperationsResponse", "SegmentResponse", "SegmentResponseChild"}


@dataclass
class SegmentInfo:
    """What one ``SegmentResponse`` says, before it becomes an event (for custom operation ids)."""

    response_id: str
    segment_id: str
    path: str  # "ProductionResponse 53107 / SegmentResponse Weighing"
    process_segment_ids: list[str]
    segment_requirement_ids: list[str]
    request_ids: list[str]
    equipment_ids: list[str]
    state: str | None
    actual_start: datetime | None
    actual_end: datetime | None
    consumed_material: bool


@dataclass
class PerformanceDocument:
    """What a Production/OperationsPerformance document says, segment by segment, and what could not be used."""

    version: str  # namespace of the document, e.g. http://www.wbf.org/xml/B2MML-V0401
    message_time: datetime | None = None  # ApplicationArea/CreationDateTime, else PublishedDate
    segments: list[SegmentInfo] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)


def read_performance(source: str | Path | bytes, name: str, assume_tz: tzinfo | None = None,
                     lenient: bool = True) -> PerformanceDocument:
    """The ``SegmentResponse`` elements (nested ones included) of a performance document, XSD-validated.

    A schema error inside a response or segment leaves that record (and what it contains) out,
    with an issue naming the file (``name`` for bytes) and element; one in the envelope is an issue
    (``lenient``) or raises :class:`B2MMLError`. Date-times without offset are read in
    ``assume_tz``, or skipped with an issue without one. Raises :class:`B2MMLError` if not well-formed.
    """
    if isinstance(source, Path | str):
        name, data = Path(source).name, Path(source).read_bytes()
    else:
        data = source
    try:
        tree = parse_xml(data)
    except etree.XMLSyntaxError as exc:
        raise B2MMLError(f"{name}: not well-formed XML: {exc}") from None
    return _PerformanceReader(name, tree, assume_tz).read(lenient)


class _PerformanceReader:
    """One performance document: its schema verdict, its times and the walk over its segments."""

    def __init__(self, name: str, tree: etree._ElementTree, tz: tzinfo | None):
        self.name, self.tree, self.tz = name, tree, tz
        self.ns = etree.QName(tree.getroot()).namespace or ""
        self.out = PerformanceDocument(version=self.ns)
        self.bad: set[etree._Element] = set()  # records with schema errors: left out
        self.notes: list[str] = []  # said after the content issues

    def read(self, lenient: bool) -> PerformanceDocument:
        root = self.tree.getroot()
        self.check_schema(lenient)
        self.out.message_time = self.message_time(root)
        responses = [el for el in root.iter() if isinstance(el.tag, str)
                     and _ln(el) in ("ProductionResponse", "OperationsResponse") and el not in self.bad]
        if not responses:
            self.out.issues.append(f"no ProductionResponse or OperationsResponse found under <{_ln(root)}>")
        for resp in responses:
            rid = self.first(resp, "ID") or "?"
            for seg in children(resp, "SegmentResponse", self.ns):
                self.segment(seg, resp, rid, f"{_ln(resp)} {rid}")
        self.out.issues.extend(self.notes)
        return self.out

    def texts(self, el: etree._Element, name: str) -> list[str]:
        return [t for c in children(el, name, self.ns) if (t := (c.text or "").strip())]

    def first(self, el: etree._Element, name: str) -> str | None:
        return next(iter(self.texts(el, name)), None)

    def check_schema(self, lenient: bool) -> None:
        """Validate against the packaged XSD; drop records with errors, report or refuse envelope errors."""
        tree = self.tree
        root = tree.getroot()
        version = NAMESPACES.get(self.ns)
        parts = split_root(root.tag, PERFORMANCE_NOUNS)
        if version is None or parts is None:
            self.notes.append(f"{self.name}: <{_ln(root)}> is not a B2MML ProductionPerformance or"
                              " OperationsPerformance message; not schema-checked")
            return
        try:
            sch = schema(version, parts[1])
        except ValueError as exc:
            self.notes.append(f"{self.name}: {exc}; not schema-checked")
            return
        envelope: list[str] = []
        for el, line, msg in schema_errors(tree, sch):
            record = record_of(el, PERFORMANCE_RECORDS) if el is not None else None
            if record is None:
                envelope.append(f"{self.name}: {where(el) if el is not None else f'line {line}'}: {msg.rstrip('.')}")
            elif record not in self.bad:
                self.bad.add(record)
                self.out.issues.append(f"{self.name}: {where(record)}: {msg.rstrip('.')}; {_ln(record)} not used")
        if envelope and not lenient:
            raise B2MMLError("; ".join(envelope))
        self.out.issues.extend(f"{e}; read anyway" for e in envelope)

    def when(self, text: str, where: str) -> datetime | None:
        """xsd:dateTime -> aware datetime, or None with an issue (no offset and no ``assume_tz``)."""
        try:
            value, naive = parse_datetime(text, self.tz or UTC)
        except ValueError:
            self.out.issues.append(f"{where}: '{text}' is not an xsd:dateTime; ignored")
            return None
        if naive and self.tz is None:
            self.out.issues.append(f"{where}: '{text}' has no time-zone offset; ignored (pass assume_tz to accept it)")
            return None
        return value

    def message_time(self, root: etree._Element) -> datetime | None:
        for area in children(root, "ApplicationArea", self.ns):
            text = self.first(area, "CreationDateTime")
            if text:
                return self.when(text, "ApplicationArea/CreationDateTime")
        for el in root.iter():
            if isinstance(el.tag, str) and _ln(el) == "PublishedDate" and (el.text or "").strip():
                return self.when((el.text or "").strip(), "PublishedDate")
        return None

    def segment(self, seg: etree._Element, resp: etree._Element, rid: str, parent: str) -> None:
        """One SegmentResponse and, below it, its children, as SegmentInfo."""
        if seg in self.bad:
            return
        ns = self.ns
        sid = self.first(seg, "ID") or "?"
        path = f"{parent} / SegmentResponse {sid}"
        equipment = [e for ea in children(seg, "EquipmentActual", ns) for e in self.texts(ea, "EquipmentID")]
        consumed = any(
            (self.first(ma, "MaterialUse") or "").lower() == "consumed" for ma in children(seg, "MaterialActual", ns)
        ) or bool(children(seg, "MaterialConsumedActual", ns))
        start, end = self.first(seg, "ActualStartTime"), self.first(seg, "ActualEndTime")
        info = SegmentInfo(
            response_id=rid,
            segment_id=sid,
            path=path,
            process_segment_ids=self.texts(seg, "ProcessSegmentID"),
            segment_requirement_ids=self.texts(seg, "SegmentRequirementID"),
            request_ids=self.texts(seg, "OperationsRequestID") or self.texts(resp, "ProductionRequestID")
            or self.texts(resp, "OperationsRequestID"),
            equipment_ids=list(dict.fromkeys(equipment)),
            state=self.first(seg, "SegmentState"),
            actual_start=self.when(start, f"{path}/ActualStartTime") if start else None,
            actual_end=self.when(end, f"{path}/ActualEndTime") if end else None,
            consumed_material=consumed,
        )
        self.out.segments.append(info)
        for child in [*children(seg, "SegmentResponse", ns), *children(seg, "SegmentResponseChild", ns)]:
            self.segment(child, resp, rid, path)


def read_b2mml(path: Path, opts: ImportOptions, report: ImportReport) -> Inputs:
    """Records from one B2MML file; its rejects, warnings and unused elements go to ``report``."""
    return _FileReader(path, opts, report).read()
