"""MES side of the shop floor: machine-state mappings, JSON webhooks, B2MML performance.

Three ways shop-floor facts reach paichan, all ending in the event types of
:mod:`paichan.domain.events` (then :func:`~paichan.domain.events.apply_events`):

* **State models.** :data:`MACHINERY_STATES` (OPC 40001-1 ``MachineryItemState``)
  and :data:`PACKML_STATES` (OPC 30050 / ISA-TR88.00.02) map every state,
  by name or number, to a :class:`~paichan.domain.events.MachineState`.
  The table and the reasoning are in docs/ADAPTERS_MES.md.
* **Webhooks.** :class:`WebhookEvent` is the JSON an MES posts (schema:
  docs/mes-webhook.schema.json). :func:`parse_webhook_batch` keeps every good
  event and reports every bad one by index, field and reason; a bad event is
  dropped whole, never half-converted.
* **B2MML performance.** :func:`parse_performance` reads ``SegmentResponse``
  elements of B2MML ProductionPerformance (V0401, V0600) or
  OperationsPerformance (V0600, V0700) in any namespace and turns actual
  start/end, equipment actuals and segment state into
  :class:`~paichan.domain.events.OperationProgressEvent` objects. It is lenient
  with real files (the Courbon PES example lacks the required ``releaseID``) and
  says what it could not use in ``issues``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal, NamedTuple

from lxml import etree
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from paichan.domain.events import MachineState, MachineStateEvent, OperationProgressEvent, ProgressStatus

# ----------------------------------------------------------------------------------------------- state models


class StateInfo(NamedTuple):
    """One state of a standard state model and what it means for scheduling."""

    number: int
    name: str
    state: MachineState
    why: str


MACHINERY_STATES: dict[int, StateInfo] = {
    s.number: s
    for s in [
        StateInfo(0, "NotAvailable", MachineState.DOWN,
                  "switched off or in energy-saving mode: cannot take work until it reports another state"),
        StateInfo(1, "OutOfService", MachineState.DOWN, "not functional (error, blocked): a breakdown"),
        StateInfo(2, "NotExecuting", MachineState.AVAILABLE, "functional and idle, waiting for a start"),
        StateInfo(3, "Executing", MachineState.BUSY,
                  "functional and working; stays schedulable, its current job is known through progress events"),
    ]
}
"""OPC 40001-1 ``MachineryItemState_StateMachineType`` (ns Machinery, i=1002); numbers are ``StateNumber``."""

PACKML_STATES: dict[int, StateInfo] = {
    s.number: s
    for s in [
        StateInfo(1, "Clearing", MachineState.DOWN, "recovering from an abort; next stop is Stopped, not Idle"),
        StateInfo(2, "Stopped", MachineState.DOWN, "stationary; needs a Reset before it can run"),
        StateInfo(3, "Starting", MachineState.BUSY, "on its way into Execute"),
        StateInfo(4, "Idle", MachineState.AVAILABLE, "reset and ready: waits for Start"),
        StateInfo(5, "Suspended", MachineState.BUSY,
                  "machine healthy, waiting on upstream starvation or downstream blockage (external): "
                  "a flow delay of the running job, not a machine outage"),
        StateInfo(6, "Execute", MachineState.BUSY, "producing"),
        StateInfo(7, "Stopping", MachineState.DOWN, "on its way to Stopped"),
        StateInfo(8, "Aborting", MachineState.DOWN, "emergency stop in progress"),
        StateInfo(9, "Aborted", MachineState.DOWN, "aborted (fault, e-stop): a breakdown"),
        StateInfo(10, "Holding", MachineState.HELD, "on its way to Held"),
        StateInfo(11, "Held", MachineState.HELD,
                  "stopped for an internal reason an operator clears (jam, refill, pause): a short stop"),
        StateInfo(12, "Unholding", MachineState.BUSY, "returning to Execute"),
        StateInfo(13, "Suspending", MachineState.BUSY, "on its way to Suspended (external wait)"),
        StateInfo(14, "Unsuspending", MachineState.BUSY, "returning to Execute"),
        StateInfo(15, "Resetting", MachineState.AVAILABLE, "on its way to Idle (seconds)"),
        StateInfo(16, "Completing", MachineState.BUSY, "finishing its job"),
        StateInfo(17, "Complete", MachineState.AVAILABLE, "job finished; a Reset brings it to Idle"),
        StateInfo(18, "Running", MachineState.AVAILABLE,
                  "super-state around Idle..Complete: functional; only used when the inner state is unknown"),
        StateInfo(19, "Cleared", MachineState.AVAILABLE,
                  "super-state: not aborted; only used when the inner states are unknown"),
    ]
}
"""OPC 30050 PackML / ISA-TR88.00.02 states with their ``StateNumber`` (18, 19 are super-states)."""

STATE_MODELS: dict[str, dict[int, StateInfo]] = {"machinery": MACHINERY_STATES, "packml": PACKML_STATES}

def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


_BY_NAME: dict[str, dict[str, StateInfo]] = {
    model: {_key(s.name): s for s in table.values()} for model, table in STATE_MODELS.items()
}


class UnknownState(ValueError):
    """A state name or number that the given state model does not define."""


def lookup_state(value: str | int, model: Literal["machinery", "packml"]) -> StateInfo:
    """The :class:`StateInfo` for a state name (any case, spaces/underscores ignored) or number."""
    table = STATE_MODELS[model]
    text = str(value).strip()
    if isinstance(value, int) or text.isdigit():
        info = table.get(int(text))
        if info is None:
            raise UnknownState(f"{model} has no state number {text} (known: {', '.join(map(str, table))})")
        return info
    info = _BY_NAME[model].get(_key(text))
    if info is None:
        names = ", ".join(s.name for s in table.values())
        raise UnknownState(f"'{text}' is not a {model} state (known: {names})")
    return info


def map_state(value: str | int, model: Literal["machinery", "packml"]) -> MachineState:
    """Scheduling meaning of a Machinery or PackML state given by name or number."""
    return lookup_state(value, model).state


def resolve_any_state(value: str | int, model: Literal["machinery", "packml"] | None) -> tuple[MachineState, str]:
    """Resolve a webhook state: a :class:`MachineState` value, or a Machinery/PackML name (or number with a model).

    Returns the state and a canonical raw label like ``'packml:Held'``. The names
    of the three vocabularies do not overlap, so a name needs no model; a number does.
    """
    if model is not None:
        info = lookup_state(value, model)
        return info.state, f"{model}:{info.name}"
    text = str(value).strip()
    if isinstance(value, int) or text.isdigit():
        raise UnknownState(f"state number {text} needs 'state_model' ('machinery' or 'packml')")
    try:
        return MachineState(text.lower()), text.lower()
    except ValueError:
        pass
    for m in ("machinery", "packml"):
        info = _BY_NAME[m].get(_key(text))
        if info is not None:
            return info.state, f"{m}:{info.name}"
    raise UnknownState(
        f"'{text}' is neither a paichan state ({', '.join(s.value for s in MachineState)}) "
        "nor a Machinery or PackML state name"
    )


# ----------------------------------------------------------------------------------------------- webhooks

_SCHEMA_ONE_OF = [
    {
        "title": "machine state",
        "required": ["machine", "state"],
        "properties": {
            "machine": {"type": "string"}, "state": {"type": ["string", "integer"]},
            "operation": {"type": "null"}, "status": {"type": "null"},
            "actual_start": {"type": "null"}, "actual_end": {"type": "null"},
        },
    },
    {
        "title": "operation progress",
        "required": ["operation", "status"],
        "properties": {
            "operation": {"type": "string"}, "status": {"type": "string"},
            "state": {"type": "null"}, "state_model": {"type": "null"},
        },
    },
]


def _err(fieldname: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("webhook_event", message, {"field": fieldname})


class WebhookEvent(BaseModel):
    """One event an MES posts: a machine changed state, or an operation started/finished.

    A machine-state event has ``machine`` and ``state``; a progress event has
    ``operation`` and ``status`` (``machine`` optional when the operation has one
    mode). ``state`` is a paichan state (available, busy, held, down) or a
    Machinery/PackML state name; a state *number* needs ``state_model``.
    The idempotency key is ``source`` + ``event_id``.
    """

    model_config = ConfigDict(
        extra="forbid",
        title="paichan MES webhook event",
        json_schema_extra={"oneOf": _SCHEMA_ONE_OF},
    )

    event_id: StrictStr = Field(min_length=1, max_length=200, description="Unique per source; resending is safe")
    source: StrictStr = Field(min_length=1, max_length=200, description="Sending system, e.g. 'mes-hall-2'")
    time: AwareDatetime = Field(description="When it happened, RFC 3339 with offset, e.g. 2026-11-23T08:15:00Z")
    machine: StrictStr | None = Field(default=None, min_length=1, description="Machine (resource) id")
    state: StrictStr | StrictInt | None = Field(
        default=None,
        description="New machine state: available|busy|held|down, a Machinery or PackML state name, "
        "or a state number together with state_model",
    )
    state_model: Literal["machinery", "packml"] | None = Field(
        default=None, description="Which standard 'state' comes from (needed for numbers)"
    )
    operation: StrictStr | None = Field(default=None, min_length=1, description="Operation id")
    status: Literal["started", "done"] | None = Field(default=None, description="Operation progress")
    actual_start: AwareDatetime | None = Field(default=None, description="Defaults to 'time' for 'started'")
    actual_end: AwareDatetime | None = Field(default=None, description="Defaults to 'time' for 'done'")

    @model_validator(mode="after")
    def _shape(self) -> WebhookEvent:
        if self.state is not None and self.operation is not None:
            raise _err("operation", "give either a machine 'state' or operation progress, not both")
        if self.state is None and self.operation is None:
            raise _err("state", "missing: either 'machine' and 'state', or 'operation' and 'status'")
        if self.state is not None:
            if self.machine is None:
                raise _err("machine", "a machine-state event needs 'machine'")
            for name in ("status", "actual_start", "actual_end"):
                if getattr(self, name) is not None:
                    raise _err(name, f"'{name}' belongs to operation progress, not to a machine-state event")
            try:
                resolve_any_state(self.state, self.state_model)
            except UnknownState as exc:
                raise _err("state", str(exc)) from None
        else:
            if self.status is None:
                raise _err("status", "an operation-progress event needs 'status' (started or done)")
            if self.state_model is not None:
                raise _err("state_model", "'state_model' belongs to machine-state events")
            if self.status == "started" and self.actual_end is not None:
                raise _err("actual_end", "a 'started' event has no actual_end")
            if self.actual_start and self.actual_end and self.actual_end < self.actual_start:
                raise _err("actual_end", "actual_end is before actual_start")
        return self

    def to_event(self) -> MachineStateEvent | OperationProgressEvent:
        """The domain event (event id becomes ``'<source>:<event_id>'``)."""
        eid = f"{self.source}:{self.event_id}"
        if self.state is not None:
            assert self.machine is not None
            state, raw = resolve_any_state(self.state, self.state_model)
            return MachineStateEvent(
                event_id=eid, source=self.source, time=self.time, machine=self.machine,
                state=state, raw_state=raw, raw_model="webhook",
            )
        assert self.operation is not None and self.status is not None
        return OperationProgressEvent(
            event_id=eid, source=self.source, time=self.time, operation=self.operation,
            status=ProgressStatus(self.status), machine=self.machine,
            actual_start=self.actual_start, actual_end=self.actual_end,
        )


class WebhookError(BaseModel):
    """Why the event at ``index`` of a batch was dropped."""

    index: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"events[{self.index}]" + (f".{self.field}" if self.field else "")
        return f"{where}: {self.reason}"


@dataclass
class WebhookBatch:
    """Good events in batch order, and one error per problem found in the bad ones."""

    events: list[MachineStateEvent | OperationProgressEvent] = field(default_factory=list)
    errors: list[WebhookError] = field(default_factory=list)


class WebhookPayloadError(ValueError):
    """The payload as a whole is unusable (not JSON, not a list of events)."""


def parse_webhook_batch(payload: str | bytes | list[Any] | dict[str, Any]) -> WebhookBatch:
    """Parse a JSON array of events (or ``{"events": [...]}``), keeping good ones and reporting bad ones.

    Each bad event is reported with its index, the field at fault and the
    reason (one entry per problem); it is left out entirely. Raises
    :class:`WebhookPayloadError` only when the payload is not a list of events.
    """
    data: Any = payload
    if isinstance(payload, str | bytes):
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise WebhookPayloadError(f"payload is not JSON: {exc}") from None
    if isinstance(data, dict):
        if "events" not in data:
            raise WebhookPayloadError("payload object has no 'events' list")
        data = data["events"]
    if not isinstance(data, list):
        raise WebhookPayloadError(f"payload must be a list of events, got {type(data).__name__}")
    out = WebhookBatch()
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            reason = f"an event is an object, got {type(item).__name__}"
            out.errors.append(WebhookError(index=i, field="", reason=reason))
            continue
        try:
            out.events.append(WebhookEvent.model_validate(item).to_event())
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                ctx = e.get("ctx") or {}
                loc = ".".join(str(p) for p in e["loc"])
                fieldname = str(ctx.get("field") or loc or "")
                out.errors.append(WebhookError(index=i, field=fieldname, reason=_reason(e)))
    return out


def _reason(e: Any) -> str:
    msg = str(e["msg"])
    if e["type"] == "extra_forbidden":
        return "unknown field"
    return msg.removeprefix("Value error, ")


def webhook_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of one webhook event; docs/mes-webhook.schema.json is this, pretty-printed.

    A batch is a JSON array of such events, or an object ``{"events": [...]}``.
    """
    schema = WebhookEvent.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:paichan:mes-webhook-event",
        **schema,
    }


# ----------------------------------------------------------------------------------------------- B2MML

_TRANSACTION = re.compile(r"^(Sync|Process|Show|Respond|Change|Acknowledge|Cancel|Get)\w+$")
_DONE_STATES = {"completed", "closed"}
_RUNNING_STATES = {"running", "held", "paused", "suspended"}
_WAITING_STATES = {"waiting", "ready"}


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


class B2MMLError(ValueError):
    """The document is not well-formed XML."""


def _local(el: Any) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _kids(el: Any, name: str) -> Iterator[Any]:
    return (c for c in el if _local(c) == name)


def _text(el: Any, name: str) -> str | None:
    for c in _kids(el, name):
        t = (c.text or "").strip()
        if t:
            return t
    return None


def _texts(el: Any, name: str) -> list[str]:
    return [t for c in _kids(el, name) if (t := (c.text or "").strip())]


def parse_performance(
    source: str | Path | bytes,
    *,
    source_name: str = "b2mml",
    operation_id: Callable[[SegmentInfo], str] = default_operation_id,
    known_machines: Collection[str] | None = None,
    assume_tz: tzinfo | None = None,
    infer_from_consumption: bool = True,
) -> PerformanceResult:
    """Progress events from a B2MML Production/OperationsPerformance document (file path or bytes).

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
    data = Path(source).read_bytes() if isinstance(source, Path | str) else source
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise B2MMLError(f"not well-formed XML: {exc}") from None
    out = PerformanceResult(version=etree.QName(root).namespace or "")
    rname = _local(root)
    if _TRANSACTION.match(rname) and root.get("releaseID") is None:
        out.issues.append(f"{rname} has no releaseID attribute (required by B2MML); read anyway")
    message_time = _message_time(root, out.issues, assume_tz)

    responses = [el for el in root.iter() if _local(el) in ("ProductionResponse", "OperationsResponse")]
    if not responses:
        out.issues.append(f"no ProductionResponse or OperationsResponse found under <{rname}>")
    for resp in responses:
        rid = _text(resp, "ID") or "?"
        base = f"{_local(resp)} {rid}"
        for seg in _kids(resp, "SegmentResponse"):
            _segment(seg, resp, rid, base, out, message_time, source_name, operation_id, known_machines, assume_tz,
                     infer_from_consumption)
    return out


def _message_time(root: Any, issues: list[str], tz: tzinfo | None) -> datetime | None:
    for area in _kids(root, "ApplicationArea"):
        text = _text(area, "CreationDateTime")
        if text:
            return _when(text, "ApplicationArea/CreationDateTime", issues, tz)
    for el in root.iter():
        if _local(el) == "PublishedDate" and (el.text or "").strip():
            return _when(el.text.strip(), "PublishedDate", issues, tz)
    return None


def _when(text: str, where: str, issues: list[str], tz: tzinfo | None) -> datetime | None:
    """xsd:dateTime -> aware datetime (fractions beyond microseconds are cut), or None with an issue."""
    t = text.strip()
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", t)
    if m and m.group(2) and len(m.group(2)) > 7:
        t = m.group(1) + m.group(2)[:7] + m.group(3)
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        issues.append(f"{where}: '{text}' is not an xsd:dateTime; ignored")
        return None
    if value.tzinfo is None:
        if tz is None:
            issues.append(f"{where}: '{text}' has no time-zone offset; ignored (pass assume_tz to accept it)")
            return None
        value = value.replace(tzinfo=tz)
    return value


def _segment(
    seg: Any,
    resp: Any,
    rid: str,
    parent: str,
    out: PerformanceResult,
    message_time: datetime | None,
    source_name: str,
    operation_id: Callable[[SegmentInfo], str],
    known_machines: Collection[str] | None,
    tz: tzinfo | None,
    infer: bool,
) -> None:
    sid = _text(seg, "ID") or "?"
    path = f"{parent} / SegmentResponse {sid}"
    equipment = [e for ea in _kids(seg, "EquipmentActual") for e in _texts(ea, "EquipmentID")]
    consumed = any(
        (_text(ma, "MaterialUse") or "").lower() == "consumed" for ma in _kids(seg, "MaterialActual")
    ) or any(True for _ in _kids(seg, "MaterialConsumedActual"))
    start, end = _text(seg, "ActualStartTime"), _text(seg, "ActualEndTime")
    info = SegmentInfo(
        response_id=rid,
        segment_id=sid,
        path=path,
        process_segment_ids=_texts(seg, "ProcessSegmentID"),
        segment_requirement_ids=_texts(seg, "SegmentRequirementID"),
        request_ids=_texts(seg, "OperationsRequestID") or _texts(resp, "ProductionRequestID")
        or _texts(resp, "OperationsRequestID"),
        equipment_ids=list(dict.fromkeys(equipment)),
        state=_text(seg, "SegmentState"),
        actual_start=_when(start, f"{path}/ActualStartTime", out.issues, tz) if start else None,
        actual_end=_when(end, f"{path}/ActualEndTime", out.issues, tz) if end else None,
        consumed_material=consumed,
    )
    out.segments.append(info)
    _to_event(info, out, message_time, source_name, operation_id, known_machines, infer)
    for child in [*_kids(seg, "SegmentResponse"), *_kids(seg, "SegmentResponseChild")]:
        _segment(child, resp, rid, path, out, message_time, source_name, operation_id, known_machines, tz, infer)


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
        out.issues.append(f"{seg.path}: {exc.errors(include_url=False)[0]['msg']}; no event")
        return
    out.events.append(ev)
