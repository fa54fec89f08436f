"""B2MML performance messages as progress events: what the shop floor says it has started and done.

:func:`parse_performance` reads the ``SegmentResponse`` elements of a B2MML
ProductionPerformance (V0401, V0600) or OperationsPerformance (V0700) and turns actual
start/end, equipment actuals and segment state into
:class:`~paichan.domain.events.OperationProgressEvent` objects. The document is parsed and
validated against its packaged XSD and read by :mod:`paichan.adapters.b2mml` (the one B2MML reader):
a schema error inside a response or segment drops that record with an issue naming the file
and element; one in the envelope (root attributes, ApplicationArea; the Courbon PES example
lacks the required ``releaseID``) is an issue too, or a :class:`B2MMLError` with
``lenient=False``. Whatever it could not use is said in ``issues``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

from pydantic import ValidationError

from paichan.adapters.b2mml import B2MMLError, SegmentInfo, read_performance
from paichan.domain.errors import validation_messages
from paichan.domain.events import OperationProgressEvent, ProgressStatus

_DONE_STATES = {"completed", "closed"}
_RUNNING_STATES = {"running", "held", "paused", "suspended"}
_WAITING_STATES = {"waiting", "ready"}


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
    doc = read_performance(source, f"({source_name} document)", assume_tz, lenient)
    out = PerformanceResult(issues=doc.issues, segments=doc.segments, version=doc.version)
    for seg in doc.segments:
        _to_event(seg, out, doc.message_time, source_name, operation_id, known_machines, infer_from_consumption)
    return out


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


__all__ = ["B2MMLError", "PerformanceResult", "SegmentInfo", "default_operation_id", "parse_performance"]
