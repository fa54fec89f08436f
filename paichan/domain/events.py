"""Shop-floor events (machine states, operation progress) and how they update a problem.

Adapters (OPC UA, MES webhooks, B2MML performance messages) turn what the shop
floor reports into these two event types; :func:`apply_events` folds a batch
of them into a copy of a :class:`~paichan.domain.problem.Problem` so the
solver can re-plan around what actually happened:

* a machine going ``DOWN`` (or ``HELD``) at ``t`` gets a ``breakdown`` downtime
  from ``t`` until a later ``AVAILABLE``/``BUSY`` event for that machine, or,
  when none came yet, until an expected-repair estimate;
* ``started``/``done`` progress events set ``Operation.status`` and ``actual``.

Rules chosen on purpose (see docs/ADAPTERS_MES.md):

* **Idempotent by event id.** A repeated id in the batch, or the id of an event
  whose downtime is already in the problem (ids are kept in the downtime's
  ``reason``), is ignored and reported.
* **Out of order.** Events are applied in event-time order, not arrival order.
  A machine event older than a state change this function recorded earlier
  (the end of an event-made downtime) is stale and ignored. A ``started``
  event for an operation already ``done`` is stale too.
* **Time.** Event datetimes are tz-aware UTC; they become integer time units
  from ``Problem.origin`` (a naive origin is read as UTC), rounded outward
  (starts down, ends up) so a downtime is never shorter than reported.
  Events later than ``now`` (beyond a small clock-skew allowance) are rejected.
* **Open downtime.** A machine still down at ``now`` is down until
  ``t + estimate``; when that has passed already (an overdue repair), until
  ``now + estimate``: it is re-estimated from now rather than assumed finished.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paichan.domain.problem import (
    Actual,
    Downtime,
    DowntimeKind,
    Operation,
    OperationStatus,
    Order,
    Problem,
    Resource,
    ResourceKind,
)


class MachineState(str, Enum):
    """What a machine's reported state means for scheduling.

    Derived from the OPC UA Machinery ``MachineryItemState`` and PackML state
    models (mapping tables in :mod:`paichan.adapters.mes`):

    * ``AVAILABLE``: functional and idle, can start work now;
    * ``BUSY``: functional and working; it stays schedulable (its current work
      is known to the scheduler through operation progress);
    * ``HELD``: functional but stopped for an internal reason that an operator
      clears (jam, consumables, pause): a short unplanned stop;
    * ``DOWN``: not functional or not ready to run (fault, aborted, stopped,
      switched off): a breakdown until it reports otherwise.
    """

    AVAILABLE = "available"
    BUSY = "busy"
    HELD = "held"
    DOWN = "down"

    @property
    def schedulable(self) -> bool:
        """True when new work may be planned on the machine from this state on."""
        return self in (MachineState.AVAILABLE, MachineState.BUSY)


RawModel = Literal["machinery", "packml", "webhook", "b2mml"]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (e.g. '2026-11-23T08:00:00Z' or '+01:00')")
    return value.astimezone(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, description="Unique id; a repeated id is ignored (idempotency)")
    source: str = Field(min_length=1, description="Who reported it: adapter and endpoint, MES name, ...")
    time: datetime = Field(description="When it happened on the shop floor (tz-aware; stored in UTC)")

    @field_validator("time")
    @classmethod
    def _time_utc(cls, v: datetime) -> datetime:
        return _utc(v)


class MachineStateEvent(_Event):
    """A machine changed state (from OPC UA, a webhook, ...)."""

    kind: Literal["machine_state"] = "machine_state"
    machine: str = Field(min_length=1)
    state: MachineState
    raw_state: str = Field(description="The state as the source named it, e.g. 'OutOfService' or 'packml:11'")
    raw_model: RawModel


class ProgressStatus(str, Enum):
    STARTED = "started"
    DONE = "done"


class OperationProgressEvent(_Event):
    """An operation started or finished.

    ``machine`` may be omitted when the operation has a single mode.
    ``actual_start`` defaults to ``time`` for ``started`` (and to the start
    already known for ``done``); ``actual_end`` defaults to ``time`` for ``done``.
    """

    kind: Literal["operation_progress"] = "operation_progress"
    operation: str = Field(min_length=1)
    status: ProgressStatus
    machine: str | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None

    @field_validator("actual_start", "actual_end")
    @classmethod
    def _actual_utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _utc(v)

    @model_validator(mode="after")
    def _consistent(self) -> OperationProgressEvent:
        if self.status == ProgressStatus.STARTED and self.actual_end is not None:
            raise ValueError("a 'started' event has no actual_end")
        if self.actual_start is not None and self.actual_end is not None and self.actual_end < self.actual_start:
            raise ValueError(f"actual_end {self.actual_end} is before actual_start {self.actual_start}")
        return self


ShopFloorEvent = Annotated[MachineStateEvent | OperationProgressEvent, Field(discriminator="kind")]
"""Either event type; ``kind`` tells them apart when (de)serialising."""


class EventsError(ValueError):
    """The events cannot be applied to this problem at all (e.g. no ``origin``)."""


_UNIT = {"minute": timedelta(minutes=1), "second": timedelta(seconds=1), "hour": timedelta(hours=1)}
_DOWN_STATES = (MachineState.DOWN, MachineState.HELD)
# Downtimes made here end their reason with "[events:<id>,<id>]" (closed) or "[events:<id>;open]" (end
# estimated): the ids make re-applied events idempotent across calls, "open" lets a later batch close it.
_MARK = "[events:"
_ESTIMATED = ", end estimated"


def _marker(reason: str) -> tuple[str, list[str], bool]:
    """Split a downtime reason into (text, event ids, open?); no ids for downtimes not made here."""
    at = reason.rfind(_MARK)
    if at < 0 or not reason.endswith("]"):
        return reason, [], False
    body, _, flag = reason[at + len(_MARK) : -1].partition(";")
    return reason[:at].rstrip(), [unquote(i) for i in body.split(",") if i], flag == "open"


def _reason(text: str, ids: list[str], open_: bool) -> str:
    quoted = ",".join(quote(i, safe=":/._-@+=") for i in ids)  # ',', ';', ']' in ids cannot break the marker
    return f"{text} {_MARK}{quoted}{';open' if open_ else ''}]"


def without_event_downtimes(problem: Problem, machines: Iterable[str]) -> Problem:
    """A copy of ``problem`` in which the named machines have none of the downtimes events made.

    A caller that keeps each machine's events can re-apply them all, in time order, to this copy: the
    answer then does not depend on the order in which batches arrived (a repair delivered before the
    breakdown it ends included).
    """
    out = problem.model_copy(deep=True)
    names = set(machines)
    for r in out.resources:
        if r.id in names:
            r.calendar.downtimes = [d for d in r.calendar.downtimes if not _marker(d.reason)[1]]
    return out


def apply_events(
    problem: Problem,
    events: Iterable[MachineStateEvent | OperationProgressEvent],
    now_minutes: int,
    *,
    repair_estimate: timedelta = timedelta(minutes=60),
    hold_estimate: timedelta = timedelta(minutes=15),
    clock_skew: timedelta = timedelta(minutes=2),
) -> tuple[Problem, list[str]]:
    """Fold shop-floor events into a copy of ``problem``; return it and a report.

    ``now_minutes`` is the current time in the problem's time units from
    ``Problem.origin`` (minutes unless ``time_unit`` says otherwise); the copy's
    ``now`` is set to it. ``repair_estimate`` bounds a ``DOWN`` machine that
    has not come back, ``hold_estimate`` a ``HELD`` one. Events up to
    ``clock_skew`` after now are taken as happening now; later ones are rejected.

    The report has one line per event, starting with ``applied:``,
    ``duplicate:``, ``stale:`` or ``rejected:`` (with the reason), plus
    ``note:`` lines about consequences a planner should know (a breakdown under
    running work, a started operation whose predecessor is still planned, ...).
    The input problem is never modified. Raises :class:`EventsError` when the
    problem has no ``origin`` or a time unit without wall-clock length.
    """
    clock = _Clock(problem, now_minutes, clock_skew)
    out = problem.model_copy(deep=True)
    out.now = now_minutes
    report: list[str] = []

    resources = {r.id: r for r in out.resources}
    seen: set[str] = set()
    for r in out.resources:
        for d in r.calendar.downtimes:
            seen.update(_marker(d.reason)[1])

    batch: list[tuple[datetime, int, MachineStateEvent | OperationProgressEvent]] = []
    for i, ev in enumerate(events):
        if ev.event_id in seen:
            report.append(f"duplicate: event '{ev.event_id}' was already applied; ignored")
            continue
        seen.add(ev.event_id)
        late = [t for t in (ev.time, getattr(ev, "actual_start", None), getattr(ev, "actual_end", None))
                if t is not None and t > clock.limit]
        if late:
            report.append(
                f"rejected: event '{ev.event_id}': {late[0].isoformat()} is after now ({now_minutes} = "
                f"{(clock.limit - clock_skew).isoformat()})"
            )
            continue
        batch.append((ev.time, i, ev))
    batch.sort(key=lambda x: (x[0], x[1]))  # event time, then arrival: out-of-order delivery is undone here

    machine_events: dict[str, list[MachineStateEvent]] = {}
    progress: list[OperationProgressEvent] = []
    for _, _, ev in batch:
        if isinstance(ev, OperationProgressEvent):
            progress.append(ev)
            continue
        found = resources.get(ev.machine)
        if found is None:
            report.append(f"rejected: event '{ev.event_id}': unknown machine '{ev.machine}'")
        elif found.kind != ResourceKind.MACHINE:
            report.append(f"rejected: event '{ev.event_id}': '{ev.machine}' is a pool, not a machine")
        else:
            machine_events.setdefault(ev.machine, []).append(ev)

    for r in out.resources:  # machines still down from earlier calls are re-estimated against the new now
        if any(_marker(d.reason)[2] for d in r.calendar.downtimes):
            machine_events.setdefault(r.id, [])
    for machine, evs in machine_events.items():
        _apply_machine(resources[machine], evs, clock, (repair_estimate, hold_estimate), report)
    ops = {op.id: (o, op) for o, op in out.operations()}
    touched: set[str] = set()
    for ev in progress:
        if _apply_progress(out, ops, ev, clock, report):
            touched.add(ev.operation)
    _notes(out, touched, set(machine_events), report)
    return out, report


class _Clock:
    """Converts event datetimes to integer time units from the problem origin."""

    def __init__(self, problem: Problem, now: int, skew: timedelta):
        if problem.origin is None:
            raise EventsError("Problem.origin is not set: event times cannot be placed on the problem's time axis")
        if problem.time_unit not in _UNIT:
            raise EventsError(f"time_unit '{problem.time_unit}' has no wall-clock length; use minute, second or hour")
        origin = problem.origin
        self.origin = origin.replace(tzinfo=UTC) if origin.tzinfo is None else origin.astimezone(UTC)
        self.unit = _UNIT[problem.time_unit]
        self.now = now
        self.limit = self.origin + now * self.unit + skew

    def floor(self, t: datetime) -> int:
        """Start-like times: rounded down, never after now."""
        return min(math.floor((t - self.origin) / self.unit), self.now)

    def ceil(self, t: datetime) -> int:
        """End-like times: rounded up, never after now."""
        return min(math.ceil((t - self.origin) / self.unit), self.now)

    def units(self, d: timedelta) -> int:
        return max(1, math.ceil(d / self.unit))

    def end_after(self, t: datetime, d: timedelta) -> int:
        """Time unit (rounded up, not clamped) at which ``d`` after ``t`` has passed."""
        return math.ceil((t + d - self.origin) / self.unit)

    def at(self, units: int) -> datetime:
        return self.origin + units * self.unit


def _apply_machine(
    resource: Resource,
    events: list[MachineStateEvent],
    clock: _Clock,
    estimates: tuple[timedelta, timedelta],
    report: list[str],
) -> None:
    """Turn one machine's time-ordered states into breakdown windows on its calendar."""
    cal = resource.calendar
    down_since: int | None = None
    down_at = clock.origin  # when it went down (datetime), for the repair estimate
    down_ids: list[str] = []
    down_state = MachineState.DOWN
    down_text = ""
    last_change = -math.inf  # latest state change recorded by earlier calls
    keep: list[Downtime] = []
    for d in cal.downtimes:
        text, ids, open_ = _marker(d.reason)
        if ids and open_:  # an estimated window from an earlier call: this batch may close or extend it
            down_since, down_ids, down_text = d.start, ids, text.removesuffix(_ESTIMATED)
            down_at = clock.at(d.start)
            down_state = MachineState.HELD if text.startswith(MachineState.HELD.value) else MachineState.DOWN
            last_change = max(last_change, d.start)
            continue
        if ids:
            last_change = max(last_change, d.end)
        keep.append(d)
    cal.downtimes = keep

    for ev in events:
        t0, t1 = clock.floor(ev.time), clock.ceil(ev.time)
        tag = f"event '{ev.event_id}': {ev.machine} {ev.state.value} ({ev.raw_state})"
        if t0 < last_change:
            report.append(f"stale: {tag} at {t0} is older than the change already recorded at {last_change}; ignored")
            continue
        if ev.state in _DOWN_STATES:
            if down_since is None:
                down_at = min(ev.time, clock.at(clock.now))  # within the clock-skew allowance: now
                down_since, down_ids, down_state = t0, [ev.event_id], ev.state
                down_text = f"{ev.state.value}: {ev.raw_model} {ev.raw_state} from {ev.source}"
                report.append(f"applied: {tag} at {t0}")
            else:
                down_ids.append(ev.event_id)
                if ev.state == MachineState.DOWN and down_state == MachineState.HELD:
                    down_state = MachineState.DOWN  # held, then down: the repair estimate applies
                    down_text = f"{MachineState.DOWN.value}: {ev.raw_model} {ev.raw_state} from {ev.source}"
                report.append(f"applied: {tag} at {t0}; already unavailable since {down_since}")
        elif down_since is not None:
            end = max(t1, down_since + 1)
            _add_downtime(cal.downtimes, down_since, end, _reason(down_text, [*down_ids, ev.event_id], False))
            report.append(f"applied: {tag} at {t1}; breakdown [{down_since}, {end}) recorded")
            down_since, down_ids = None, []
        else:
            report.append(f"applied: {tag} at {t0}; no change to availability")

    if down_since is not None:
        span = estimates[0] if down_state == MachineState.DOWN else estimates[1]
        estimate = clock.units(span)
        end = clock.end_after(down_at, span)
        overdue = end <= clock.now
        if overdue:
            end = clock.now + estimate
        _add_downtime(cal.downtimes, down_since, end, _reason(down_text + _ESTIMATED, down_ids, True))
        if overdue:
            report.append(
                f"note: {resource.id} has been {down_state.value} since {down_since}, longer than the estimate "
                f"({estimate}); expected back at now + {estimate} = {end}"
            )
        else:
            report.append(f"note: {resource.id} {down_state.value}: breakdown [{down_since}, {end}) (end estimated)")


def _add_downtime(downtimes: list[Downtime], start: int, end: int, reason: str) -> None:
    start = max(0, start)  # went down before the origin: only the part after it matters
    downtimes.append(Downtime(start=start, end=max(end, start + 1), kind=DowntimeKind.BREAKDOWN, reason=reason))


def _apply_progress(
    problem: Problem,
    ops: dict[str, tuple[Order, Operation]],
    ev: OperationProgressEvent,
    clock: _Clock,
    report: list[str],
) -> bool:
    """Set status and actuals of one operation; report why not (and return False) when impossible."""
    found = ops.get(ev.operation)
    if found is None:
        report.append(f"rejected: event '{ev.event_id}': unknown operation '{ev.operation}'")
        return False
    order, op = found
    prior = op.actual
    machine = ev.machine or (prior.resource if prior is not None else None)
    if machine is None:
        if len(op.modes) != 1:
            report.append(
                f"rejected: event '{ev.event_id}': no machine reported and operation '{op.id}' has "
                f"{len(op.modes)} modes"
            )
            return False
        machine = op.modes[0].resource
    allowed = sorted({m.resource for m in op.modes})
    if machine not in allowed:
        report.append(
            f"rejected: event '{ev.event_id}': machine '{machine}' is not one of operation '{op.id}' modes "
            f"({', '.join(allowed)})"
        )
        return False

    end: int | None = None
    if ev.status == ProgressStatus.STARTED:
        if op.status == OperationStatus.DONE:
            report.append(f"stale: event '{ev.event_id}': operation '{op.id}' is already done; 'started' ignored")
            return False
        start = clock.floor(ev.actual_start or ev.time)
    else:
        if ev.actual_start is not None:
            start = clock.floor(ev.actual_start)
        elif prior is not None and prior.resource == machine:
            start = prior.start
        else:
            report.append(
                f"rejected: event '{ev.event_id}': 'done' for '{op.id}' has no actual_start and the operation "
                f"was not reported started on '{machine}'"
            )
            return False
        end = max(clock.ceil(ev.actual_end or ev.time), start)
    if start < 0:
        report.append(f"rejected: event '{ev.event_id}': operation '{op.id}' start {start} lies before Problem.origin")
        return False

    if op.status == OperationStatus.PLANNED:
        _consume(problem, op, report)
    op.actual = Actual(resource=machine, start=start, end=end)
    op.status = OperationStatus.DONE if end is not None else OperationStatus.STARTED
    what = f"done [{start}, {end})" if end is not None else f"started at {start}"
    report.append(f"applied: event '{ev.event_id}': operation '{op.id}' (order {order.id}) on {machine} {what}")
    return True


def _consume(problem: Problem, op: Operation, report: list[str]) -> None:
    """A planned operation that starts has consumed its materials (at start): take them from stock now."""
    mats = {m.id: m for m in problem.materials}
    for use in op.materials:
        m = mats.get(use.material)
        if m is None:
            continue
        if m.stock + 1e-9 < use.quantity:
            report.append(
                f"note: operation '{op.id}' started but stock of '{m.id}' ({m.stock:g}) is below its use "
                f"({use.quantity:g}); stock set to 0 until the WMS reports a count"
            )
        m.stock = max(0.0, m.stock - use.quantity)


def _notes(problem: Problem, ops: set[str], machines: set[str], report: list[str]) -> None:
    """Warn about consequences of this batch that the scheduler cannot fix by itself."""
    status = {op.id: op.status for _, op in problem.operations()}
    res = {r.id: r for r in problem.resources}
    for order in problem.orders:
        for k, op in enumerate(order.operations):
            if op.actual is None or op.status == OperationStatus.PLANNED:
                continue
            if op.id in ops:
                preds = [p.operation for p in op.predecessors or []]
                if op.predecessors is None and k > 0:
                    preds = [order.operations[k - 1].id]
                for p in preds:
                    if status.get(p) == OperationStatus.PLANNED:
                        report.append(
                            f"note: operation '{op.id}' is {op.status.value} but its predecessor '{p}' is still "
                            "planned; the problem is infeasible until that predecessor is reported"
                        )
            r = res[op.actual.resource] if op.actual.resource in res else None
            if op.status != OperationStatus.STARTED or r is None or (op.id not in ops and r.id not in machines):
                continue
            run = next((m.duration for m in op.modes if m.resource == r.id), 0)
            end = op.actual.start + run
            if end < problem.now:
                report.append(
                    f"note: operation '{op.id}' started at {op.actual.start} should have ended at {end} "
                    f"< now ({problem.now}); the plan assumes that end until the shop floor reports 'done'"
                )
            for d in r.calendar.downtimes:
                if _marker(d.reason)[1] and d.start < end and d.end > op.actual.start:
                    effect = (
                        "it pauses over the breakdown (it may span breaks)" if op.can_span_breaks
                        else "it may not span breaks, so the plan keeps its end; its real end will be later"
                    )
                    report.append(
                        f"note: {r.id} is unavailable [{d.start}, {d.end}) while operation '{op.id}' runs on it "
                        f"(planned end {end}): {effect}; report its progress"
                    )
