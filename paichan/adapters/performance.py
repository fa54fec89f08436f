"""B2MML performance messages as progress events: what the shop floor says it has started and done.

:func:`parse_performance` reads the ``SegmentResponse`` elements of a B2MML
ProductionPerformance (V0401, V0600) or OperationsPerformance (V0700) and turns actual
start/end, equipment actuals and segment state into
:class:`~paichan.domain.events.OperationProgressEvent` objects. The document is parsed and
validated against its packaged XSD by :mod:`paichan.adapters.b2mml` (the one B2MML reader):
a schema error inside a response or segment drops that record with an issue naming the file
and element; one in the envelope (root attributes, ApplicationArea; the Courbon PES example
lacks the required ``releaseID``) is an issue too, or a :class:`B2MMLError` with
``lenient=False``. Whatever it could not use is said in ``issues``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from lxml import etree
from pydantic import ValidationError

from paichan.adapters.b2mml import (
    NAMESPACES,
    PERFORMANCE_NOUNS,
    B2MMLError,
    children,
    parse_xml,
    record_of,
    schema,
    schema_errors,
    split_root,
    where,
)
from paichan.adapters.values import parse_datetime
from paichan.domain.errors import validation_messages
from paichan.domain.events import OperationProgressEvent, ProgressStatus

_DONE_STATES = {"completed", "closed"}
_RUNNING_STATES = {"running", "held", "paused", "suspended"}
_WAITING_STATES = {"waiting", "ready"}
_RESPONSES = ("ProductionResponse", "OperationsResponse")
_SEGMENTS = ("SegmentResponse", "SegmentResponseChild")


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


def default_operation_id(seg: SegmentInfo) -> str:
    """Operation id as the B2MML schedule import makes it: ``'<request id>/<segment>'``.

    The segment is the single ``SegmentRequirementID`` the response names, else
    the ``SegmentResponse/ID``; the request is the single ``OperationsRequestID``
    / ``ProductionRequestID`` (without one, the segment alone).
    """
    key = seg.segment_requirement_ids[0] if len(seg.segment_requirement_ids) == 1 else seg.segment_id
    if len(seg.request_ids) == 1 and not key.startswith(f"{seg.request_ids[0]}/"):
        return f"{seg.request_ids[0]}/{key}"
    return key


@dataclass
class PerformanceResult:
    """Progress events from a performance message, everything it could not use, and the raw segments."""

    events: list[OperationProgressEvent] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    segments: list[SegmentInfo] = field(default_factory=list)
    version: str = ""  # namespace of the document, e.g. http://www.wbf.org/xml/B2MML-V0401


def _texts(el: etree._Element, name: str, ns: str) -> list[str]:
    return [t for c in children(el, name, ns) if (t := (c.text or "").strip())]


def _text(el: etree._Element, name: str, ns: str) -> str | None:
    return next(iter(_texts(el, name, ns)), None)


def _ln(el: etree._Element) -> str:
    return etree.QName(el).localname


def parse_performance(
    source: str | Path | bytes,
    *,
    source_name: str = "b2mml",
    operation_id: Callable[[SegmentInfo], str] = default_operation_id,
    known_machines: Collection[str] | None = None,
    assume_tz: tzinfo | None = None,
    infer_from_consumption: bool = True,
    lenient: bool = True,
) -> PerformanceResult:
    """Progress events from a B2MML Production/OperationsPerformance document (file path or bytes).

    The document is validated against its packaged XSD first. A schema error inside a
    ``ProductionResponse``/``OperationsResponse`` or ``SegmentResponse`` leaves that record (and
    what it contains) out, with an issue naming the file and element; an envelope error is an
    issue (``lenient``, the default, since real files deviate there) or raises :class:`B2MMLError`.

    Status of each ``SegmentResponse`` (nested ones included):

    * V0700 ``SegmentState`` Completed/Closed -> done; Running/Held/Paused/Suspended
      -> started; Waiting/Ready -> no event; Aborted -> no event, an issue (a planner decides).
    * without a state (V0401/V0600 have none): ``ActualEndTime`` -> done,
      ``ActualStartTime`` -> started.
    * neither, but consumed material actuals: with ``infer_from_consumption``
      the segment has started (paichan consumes material at operation start);
      the event time is the message ``CreationDateTime`` (or ``PublishedDate``) and
      the actual start defaults to it — a conservative upper bound, flagged in issues.

    The machine is the single ``EquipmentActual/EquipmentID`` (restricted to
    ``known_machines`` when given); none or several leave it unset (apply_events
    then needs a single-mode operation). Timestamps without offset are skipped
    with an issue unless ``assume_tz`` is given. Event ids are
    ``'<source_name>:<response>/<segment>:<status>'``, so a resent message is a duplicate.
    """
    if isinstance(source, Path | str):
        name, data = Path(source).name, Path(source).read_bytes()
    else:
        name, data = f"({source_name} document)", source
    try:
        tree = parse_xml(data)
    except etree.XMLSyntaxError as exc:
        raise B2MMLError(f"{name}: not well-formed XML: {exc}") from None
    root = tree.getroot()
    ns = etree.QName(root).namespace or ""
    out = PerformanceResult(version=ns)
    doc = _Document(name, ns, out, assume_tz)
    doc.check_schema(tree, lenient)
    message_time = doc.message_time(root)
    responses = [el for el in root.iter() if isinstance(el.tag, str) and _ln(el) in _RESPONSES
                 and el not in doc.bad]
    if not responses:
        out.issues.append(f"no ProductionResponse or OperationsResponse found under <{_ln(root)}>")
    for resp in responses:
        rid = _text(resp, "ID", ns) or "?"
        for seg in children(resp, "SegmentResponse", ns):
            doc.segment(seg, resp, rid, f"{_ln(resp)} {rid}", message_time, source_name, operation_id,
                        known_machines, infer_from_consumption)
    out.issues.extend(doc.notes)
    return out


class _Document:
    """One performance document: its schema verdict, its times and the walk over its segments."""

    def __init__(self, name: str, ns: str, out: PerformanceResult, tz: tzinfo | None):
        self.name, self.ns, self.out, self.tz = name, ns, out, tz
        self.bad: set[etree._Element] = set()  # records with schema errors: left out
        self.notes: list[str] = []  # said after the content issues

    def check_schema(self, tree: etree._ElementTree, lenient: bool) -> None:
        """Validate against the packaged XSD; drop records with errors, report or refuse envelope errors."""
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
            record = record_of(el, {*_RESPONSES, *_SEGMENTS}) if el is not None else None
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
            text = _text(area, "CreationDateTime", self.ns)
            if text:
                return self.when(text, "ApplicationArea/CreationDateTime")
        for el in root.iter():
            if isinstance(el.tag, str) and _ln(el) == "PublishedDate" and (el.text or "").strip():
                return self.when((el.text or "").strip(), "PublishedDate")
        return None

    def segment(self, seg: etree._Element, resp: etree._Element, rid: str, parent: str,
                message_time: datetime | None, source_name: str, operation_id: Callable[[SegmentInfo], str],
                known_machines: Collection[str] | None, infer: bool) -> None:
        """One SegmentResponse (and, below it, its children) as SegmentInfo and, where it says enough, an event."""
        if seg in self.bad:
            return
        ns = self.ns
        sid = _text(seg, "ID", ns) or "?"
        path = f"{parent} / SegmentResponse {sid}"
        equipment = [e for ea in children(seg, "EquipmentActual", ns) for e in _texts(ea, "EquipmentID", ns)]
        consumed = any(
            (_text(ma, "MaterialUse", ns) or "").lower() == "consumed" for ma in children(seg, "MaterialActual", ns)
        ) or bool(children(seg, "MaterialConsumedActual", ns))
        start, end = _text(seg, "ActualStartTime", ns), _text(seg, "ActualEndTime", ns)
        info = SegmentInfo(
            response_id=rid,
            segment_id=sid,
            path=path,
            process_segment_ids=_texts(seg, "ProcessSegmentID", ns),
            segment_requirement_ids=_texts(seg, "SegmentRequirementID", ns),
            request_ids=_texts(seg, "OperationsRequestID", ns) or _texts(resp, "ProductionRequestID", ns)
            or _texts(resp, "OperationsRequestID", ns),
            equipment_ids=list(dict.fromkeys(equipment)),
            state=_text(seg, "SegmentState", ns),
            actual_start=self.when(start, f"{path}/ActualStartTime") if start else None,
            actual_end=self.when(end, f"{path}/ActualEndTime") if end else None,
            consumed_material=consumed,
        )
        self.out.segments.append(info)
        _to_event(info, self.out, message_time, source_name, operation_id, known_machines, infer)
        for child in [*children(seg, "SegmentResponse", ns), *children(seg, "SegmentResponseChild", ns)]:
            self.segment(child, resp, rid, path, message_time, source_name, operation_id, known_machines, infer)


def _to_event(
    seg: SegmentInfo,
    out: PerformanceResult,
    message_time: datetime | None,
    source_name: str,
    operation_id: Callable[[SegmentInfo], str],
    known_machines: Collection[str] | None,
    infer: bool,
) -> None:
    state = (seg.state or "").strip().lower()
    status: ProgressStatus | None = None
    start, end = seg.actual_start, seg.actual_end
    if state in _DONE_STATES or (not state and end is not None):
        status = ProgressStatus.DONE
        if end is None:
            out.issues.append(f"{seg.path}: state {seg.state} without a usable ActualEndTime; no event")
            return
    elif state in _RUNNING_STATES or (not state and start is not None):
        status = ProgressStatus.STARTED
        if start is None:
            out.issues.append(f"{seg.path}: state {seg.state} without a usable ActualStartTime; no event")
            return
    elif state in _WAITING_STATES:
        out.issues.append(f"{seg.path}: state {seg.state}, not started; no event")
        return
    elif state == "aborted":
        out.issues.append(f"{seg.path}: segment aborted; no event (the operation stays planned: a planner decides)")
        return
    elif seg.consumed_material and infer and message_time is not None:
        status = ProgressStatus.STARTED
        out.issues.append(
            f"{seg.path}: no state or actual times; material was consumed, so it is taken as started, "
            f"at the latest at the message time {message_time.isoformat()}"
        )
    else:
        what = f"state '{seg.state}'" if seg.state else "no state"
        out.issues.append(f"{seg.path}: {what} and no actual start/end time; no event")
        return

    machines = seg.equipment_ids
    if known_machines is not None:
        machines = [m for m in machines if m in known_machines]
    machine = machines[0] if len(machines) == 1 else None
    if len(machines) > 1:
        out.issues.append(f"{seg.path}: several equipment actuals ({', '.join(machines)}); machine left unset")
    elif not machines:
        note = f" (none of {', '.join(seg.equipment_ids)} is a known machine)" if seg.equipment_ids else ""
        out.issues.append(f"{seg.path}: no equipment actual{note}; machine left unset")

    time = end if status == ProgressStatus.DONE else start
    time = time or message_time
    assert time is not None
    try:
        ev = OperationProgressEvent(
            event_id=f"{source_name}:{seg.response_id}/{seg.segment_id}:{status.value}",
            source=source_name,
            time=time,
            operation=operation_id(seg),
            status=status,
            machine=machine,
            actual_start=start,
            actual_end=end if status == ProgressStatus.DONE else None,
        )
    except ValidationError as exc:
        out.issues.append(f"{seg.path}: {validation_messages(exc, 1)[0]}; no event")
        return
    out.events.append(ev)
