"""The scheduling problem: resources, calendars, orders, operations, materials.

Time is integer *time units* counted from ``Problem.origin`` (minutes unless
``time_unit`` says otherwise). Every id is a string, unique within its kind.
These models are the boundary every other package builds on; validation here
is structural (types, ranges). Cross-record checks that need the whole problem
(unknown references, precedence cycles, unreachable supply) live in
:mod:`paichan.domain.validation`, so that their errors can name the record.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class TimeWindow(_Model):
    """A half-open interval ``[start, end)`` in time units."""

    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class DowntimeKind(str, Enum):
    HOLIDAY = "holiday"
    MAINTENANCE = "maintenance"
    BREAKDOWN = "breakdown"
    BREAK = "break"


class Downtime(TimeWindow):
    """A window in which the resource cannot work (planned or not)."""

    kind: DowntimeKind = DowntimeKind.MAINTENANCE
    reason: str = ""


class Calendar(_Model):
    """When a resource works.

    ``shifts`` are working windows inside one ``period`` (e.g. 1440 for a daily
    pattern, 10080 for a weekly one) repeated from time 0; with no shifts the
    resource works around the clock. ``downtimes`` (holidays, planned
    maintenance, breakdowns) are removed from working time on top.
    """

    period: int | None = Field(default=None, gt=0)
    shifts: list[TimeWindow] = Field(default_factory=list)
    downtimes: list[Downtime] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shifts_fit_period(self) -> Calendar:
        if self.shifts and self.period is None:
            raise ValueError("shifts need a period")
        for i, s in enumerate(self.shifts):
            if self.period is not None and (s.start < 0 or s.end > self.period):
                raise ValueError(f"shifts[{i}] [{s.start}, {s.end}) lies outside the period 0..{self.period}")
        return self

    def unavailable(self, horizon: int) -> list[tuple[int, int]]:
        """Merged, sorted non-working windows intersecting ``[0, horizon)``."""
        windows: list[tuple[int, int]] = []
        if self.shifts and self.period:
            working = sorted((s.start, s.end) for s in self.shifts)
            k = 0
            while k * self.period < horizon:
                base = k * self.period
                cursor = base
                for s, e in working:
                    if s + base > cursor:
                        windows.append((cursor, s + base))
                    cursor = max(cursor, e + base)
                if cursor < base + self.period:
                    windows.append((cursor, base + self.period))
                k += 1
        windows.extend((d.start, d.end) for d in self.downtimes)
        return merge_windows([(max(0, s), min(e, horizon)) for s, e in windows if e > 0 and s < horizon])


def merge_windows(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or touching half-open windows."""
    merged: list[tuple[int, int]] = []
    for s, e in sorted(w for w in windows if w[1] > w[0]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


class SetupTime(_Model):
    """Changeover time on a machine from one product family to the next."""

    from_family: str
    to_family: str
    time: int = Field(ge=0)


class ResourceKind(str, Enum):
    MACHINE = "machine"  # disjunctive: one operation at a time
    POOL = "pool"  # renewable capacity: operators, tools, fixtures


class Resource(_Model):
    """A machine (capacity 1, may have setups) or a renewable pool."""

    id: str = Field(min_length=1)
    name: str = ""
    kind: ResourceKind = ResourceKind.MACHINE
    capacity: int = Field(default=1, ge=1)
    calendar: Calendar = Field(default_factory=Calendar)
    setups: list[SetupTime] = Field(default_factory=list)
    default_setup: int = Field(default=0, ge=0)
    initial_family: str | None = None

    @model_validator(mode="after")
    def _machine_capacity(self) -> Resource:
        if self.kind == ResourceKind.MACHINE and self.capacity != 1:
            raise ValueError("a machine has capacity 1; use kind 'pool' for more")
        if self.kind == ResourceKind.POOL and (self.setups or self.default_setup):
            raise ValueError("setups apply to machines only")
        return self

    def setup_time(self, from_family: str | None, to_family: str | None) -> int:
        """Changeover time between two families (0 if either is unknown or equal)."""
        if from_family is None or to_family is None or from_family == to_family:
            return 0
        for s in self.setups:
            if s.from_family == from_family and s.to_family == to_family:
                return s.time
        return self.default_setup

    @property
    def has_setups(self) -> bool:
        return bool(self.setups) or self.default_setup > 0


class SecondaryUse(_Model):
    """A pool the operation also holds for its whole duration (e.g. 1 operator)."""

    resource: str
    amount: int = Field(default=1, ge=1)


class Mode(_Model):
    """One way to run an operation: on this machine, taking this long."""

    resource: str
    duration: int = Field(ge=0)
    secondary: list[SecondaryUse] = Field(default_factory=list)
    group: str | None = None  # e.g. the production line; see Order.one_group


class MaterialUse(_Model):
    """Material consumed when the operation starts."""

    material: str
    quantity: float = Field(gt=0)


class Predecessor(_Model):
    """End-to-start link: ``min_lag <= start(this) - end(pred) <= max_lag``."""

    operation: str
    min_lag: int = 0
    max_lag: int | None = None

    @model_validator(mode="after")
    def _lags(self) -> Predecessor:
        if self.max_lag is not None and self.max_lag < self.min_lag:
            raise ValueError(f"max_lag ({self.max_lag}) is below min_lag ({self.min_lag})")
        return self


class OperationStatus(str, Enum):
    PLANNED = "planned"
    STARTED = "started"
    DONE = "done"


class Actual(_Model):
    """What the shop floor reports for a started or finished operation.

    A started operation ends at start + duration, or, if it may span breaks,
    once it has had ``duration`` of working time (it pauses over breaks and
    breakdowns and resumes after them).
    """

    resource: str
    start: int
    end: int | None = None  # set for done operations


class Pin(_Model):
    """A planner's lock on a planned operation: it runs on ``resource`` from ``start``.

    The scheduler plans around it and never moves it (frePPLe's "locked" flag);
    the checker holds the schedule to it. Everything else about the operation
    (calendars, setups, pools, materials, precedence) still applies to it.
    """

    resource: str
    start: int = Field(ge=0)
    reason: str = ""


class Operation(_Model):
    """A step of an order's routing, with alternative modes.

    ``predecessors=None`` means "after the previous operation of the same order"
    (a linear routing); an explicit list (possibly empty) replaces that.
    ``can_span_breaks`` lets the operation pause over non-working time
    (its elapsed time then stretches by the break); otherwise it must fit
    wholly inside working time.
    """

    id: str = Field(min_length=1)
    name: str = ""
    modes: list[Mode]
    family: str | None = None
    predecessors: list[Predecessor] | None = None
    materials: list[MaterialUse] = Field(default_factory=list)
    can_span_breaks: bool = False
    status: OperationStatus = OperationStatus.PLANNED
    actual: Actual | None = None
    pin: Pin | None = None  # planned operations only; see Pin

    @model_validator(mode="after")
    def _actual_matches_status(self) -> Operation:
        if self.status != OperationStatus.PLANNED and self.actual is None:
            raise ValueError(f"status '{self.status.value}' needs 'actual' (resource and start)")
        if self.status == OperationStatus.DONE and self.actual is not None and self.actual.end is None:
            raise ValueError("a done operation needs actual.end")
        return self


class Order(_Model):
    """A production order (job): a routing of operations and its dates."""

    id: str = Field(min_length=1)
    product: str = ""
    quantity: float = Field(default=1, gt=0)
    release: int = Field(default=0, ge=0)
    due: int | None = None
    deadline: int | None = None  # hard: the order must end by then
    priority: int = Field(default=1, ge=0)  # weight in weighted tardiness
    one_group: bool = False  # all operations run in modes of one group (one line, one plant)
    operations: list[Operation]


class Receipt(_Model):
    """An expected delivery of material (purchase order, transfer)."""

    time: int = Field(ge=0)
    quantity: float = Field(gt=0)
    source: str = ""


class Material(_Model):
    """Stock now plus time-phased receipts; operations consume it."""

    id: str = Field(min_length=1)
    name: str = ""
    unit: str = ""
    stock: float = Field(default=0, ge=0)
    receipts: list[Receipt] = Field(default_factory=list)


class ObjectiveName(str, Enum):
    MAKESPAN = "makespan"
    WEIGHTED_TARDINESS = "weighted_tardiness"
    SETUP = "setup"
    STABILITY = "stability"


class Objective(_Model):
    """What to minimise.

    ``weights`` combine terms into one sum. With ``lexicographic`` set, terms
    are optimised in that order, each later stage keeping the earlier optimum
    (within the time left); ``weights`` are then ignored.
    """

    weights: dict[ObjectiveName, int] = Field(default_factory=lambda: {ObjectiveName.MAKESPAN: 1})
    lexicographic: list[ObjectiveName] | None = None

    @model_validator(mode="after")
    def _non_empty(self) -> Objective:
        if self.lexicographic is not None and not self.lexicographic:
            raise ValueError("lexicographic must name at least one term")
        if self.lexicographic is None and not any(w > 0 for w in self.weights.values()):
            raise ValueError("weights must give at least one term a positive weight")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights must not be negative")
        return self

    def terms(self) -> list[ObjectiveName]:
        if self.lexicographic is not None:
            return list(self.lexicographic)
        return [t for t, w in self.weights.items() if w > 0]


class Problem(_Model):
    """A complete scheduling problem, as read from ERP/MES/WMS or a file."""

    name: str = "problem"
    origin: datetime | None = None
    time_unit: Literal["minute", "second", "hour", "unit"] = "minute"
    now: int = Field(default=0, ge=0)  # planned operations start at or after now
    resources: list[Resource]
    orders: list[Order]
    materials: list[Material] = Field(default_factory=list)
    objective: Objective = Field(default_factory=Objective)

    def operations(self) -> list[tuple[Order, Operation]]:
        """All operations with their order, in file order."""
        return [(o, op) for o in self.orders for op in o.operations]
