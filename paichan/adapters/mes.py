"""MES side of the shop floor: machine-state mappings and JSON webhooks.

Shop-floor facts reach paichan as the event types of :mod:`paichan.domain.events`
(then :func:`~paichan.domain.events.apply_events`); this module holds the MES vocabularies:

* **State models.** :data:`MACHINERY_STATES` (OPC 40001-1 ``MachineryItemState``)
  and :data:`PACKML_STATES` (OPC 30050 / ISA-TR88.00.02) map every state,
  by name or number, to a :class:`~paichan.domain.events.MachineState`.
  The table and the reasoning are in docs/ADAPTERS_MES.md.
* **Webhooks.** :class:`WebhookEvent` is the JSON an MES posts (schema:
  docs/mes-webhook.schema.json). :func:`parse_webhook_batch` keeps every good
  event and reports every bad one by index, field and reason; a bad event is
  dropped whole, never half-converted.

B2MML performance messages are XML and are read by the B2MML reader:
:func:`paichan.adapters.performance.parse_performance` (also importable from here, as before).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, cast

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from paichan.adapters.performance import (  # re-exported: the performance reader lived here before
    B2MMLError,
    PerformanceResult,
    SegmentInfo,
    default_operation_id,
    parse_performance,
)
from paichan.domain.errors import field_path
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
        named = _BY_NAME[m].get(_key(text))
        if named is not None:
            return named.state, f"{m}:{named.name}"
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
        json_schema_extra={"oneOf": cast(list[JsonValue], _SCHEMA_ONE_OF)},
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
                fieldname = str(ctx.get("field") or field_path(e["loc"], top=""))
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


__all__ = [
    "MACHINERY_STATES", "PACKML_STATES", "STATE_MODELS", "B2MMLError", "PerformanceResult", "SegmentInfo",
    "StateInfo", "UnknownState", "WebhookBatch", "WebhookError", "WebhookEvent", "WebhookPayloadError",
    "default_operation_id", "lookup_state", "map_state", "parse_performance", "parse_webhook_batch",
    "resolve_any_state", "webhook_json_schema",
]
