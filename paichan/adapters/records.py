"""The adapter records: what readers produce and assembly consumes, format-neutral and still unconverted.

Readers (B2MML, CSV/JSON) turn each message or row into these plain records (values still in
minutes and date-times, parse problems noted on the record); :mod:`paichan.adapters.assemble`
turns them into a :class:`~paichan.domain.Problem`. Keeping them apart lets a reader depend on
the record shapes without depending on the assembly rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from paichan.adapters.report import ImportReport, Source
from paichan.domain import Problem, Schedule, ScheduledOperation

TimeRef = datetime | int  # an aware UTC date-time, or time units counted from the origin


@dataclass
class ImportOptions:
    """How to read: origin and time zone, strictness, and the policies that are a matter of choice."""

    origin: datetime | None = None  # default: midnight (in `timezone`) of the earliest order date-time
    timezone: str = "UTC"  # for date-times without offset and for shift clock times
    time_unit: Literal["minute", "second", "hour"] = "minute"
    lenient: bool = False  # accept envelope/extension schema errors with a warning instead of rejecting
    latest_end: Literal["deadline", "due"] = "deadline"  # what a segment's LatestEndTime becomes
    untracked_materials: Literal["ignore", "zero"] = "ignore"  # materials with no stock/receipt data at all
    lot_status: dict[str, str] = field(default_factory=dict)  # extra status -> available|blocked|expected
    name: str = "imported"


@dataclass
class EquipmentUse:
    resource: str
    amount: int = 1


@dataclass
class MaterialReq:
    material: str
    quantity: float
    unit: str
    src: Source


@dataclass
class SegmentRec:
    """One operation as a message or routing describes it (values still in minutes / date-times)."""

    local_id: str
    name: str
    key: str  # routing-master lookup key: process/product segment id ('' when the segment names none)
    src: Source
    earliest: TimeRef | None = None
    latest: TimeRef | None = None
    duration: float | None = None  # minutes
    equipment: list[EquipmentUse] = field(default_factory=list)
    personnel: list[EquipmentUse] = field(default_factory=list)
    materials: list[MaterialReq] = field(default_factory=list)
    family: str | None = None
    from_master: bool = False  # exploded from a product routing: machines/durations are not 'missing'


@dataclass
class OrderRec:
    """One production order (ProductionRequest / OperationsRequest / orders.csv row)."""

    id: str
    src: Source
    product: str = ""
    quantity: float | None = None
    release: TimeRef | None = None
    due: TimeRef | None = None
    deadline: TimeRef | None = None
    latest_end: TimeRef | None = None  # max segment LatestEndTime; becomes deadline or due (ImportOptions)
    priority: int | None = None
    segments: list[SegmentRec] | None = None  # None: take the product's routing from the routing master
    problems: list[str] = field(default_factory=list)
    message: bool = False  # from a message that should have carried its operations (B2MML)


@dataclass
class RoutingRow:
    """Routing master data: one (product, segment, machine) mode; blank product/segment match any."""

    product: str
    segment: str
    src: Source
    seq: float | None = None
    name: str = ""
    machine: str = ""
    duration: float | None = None  # minutes
    family: str | None = None
    secondary: list[EquipmentUse] = field(default_factory=list)
    min_lag: float | None = None
    max_lag: float | None = None
    can_span_breaks: bool | None = None
    consumes: list[tuple[str, float, str]] = field(default_factory=list)  # per unit of order quantity
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"product {self.product or '*'}", f"segment {self.segment or '*'}"]
        if self.machine:
            parts.append(f"machine {self.machine}")
        return f"{self.src} ({', '.join(parts)})"


@dataclass
class ResourceRec:
    id: str
    src: Source
    name: str = ""
    kind: str = "machine"
    capacity: int = 1
    calendar: str = ""
    initial_family: str | None = None
    default_setup: float = 0.0
    problems: list[str] = field(default_factory=list)


@dataclass
class SetupRec:
    resource: str
    from_family: str
    to_family: str
    minutes: float
    src: Source


@dataclass
class ShiftRec:
    calendar: str
    period: float  # minutes
    start: float  # local clock minutes within the period
    end: float
    src: Source


@dataclass
class DowntimeRec:
    start: TimeRef
    end: TimeRef
    src: Source
    calendar: str = ""
    resource: str = ""
    kind: str = "maintenance"
    reason: str = ""


@dataclass
class MaterialRec:
    id: str
    src: Source
    name: str = ""
    unit: str = ""


@dataclass
class LotRec:
    """Stock: a lot (sublot '') or sublot with quantity and status, as of ``snapshot``."""

    material: str
    lot: str
    sublot: str
    src: Source
    quantity: float | None = None
    unit: str = ""
    status: str | None = None
    location: str = ""
    expiry: datetime | None = None
    available_at: TimeRef | None = None
    snapshot: datetime | None = None


@dataclass
class ReceiptRec:
    material: str
    quantity: float
    unit: str
    time: TimeRef
    src: Source
    source: str = ""


@dataclass
class ConsumedRec:
    """Material consumption the shop floor reported (B2MML MaterialActual, MaterialUse Consumed)."""

    material: str
    quantity: float
    unit: str
    src: Source
    lot: str = ""
    sublot: str = ""
    response: str = ""
    segment: str = ""
    reported: datetime | None = None
    applied: str = ""  # what the import did with it


@dataclass
class Inputs:
    """Everything the readers collected, before assembly."""

    orders: list[OrderRec] = field(default_factory=list)
    routings: list[RoutingRow] = field(default_factory=list)
    resources: list[ResourceRec] = field(default_factory=list)
    setups: list[SetupRec] = field(default_factory=list)
    shifts: list[ShiftRec] = field(default_factory=list)
    downtimes: list[DowntimeRec] = field(default_factory=list)
    materials: list[MaterialRec] = field(default_factory=list)
    lots: list[LotRec] = field(default_factory=list)
    receipts: list[ReceiptRec] = field(default_factory=list)
    consumed: list[ConsumedRec] = field(default_factory=list)
    origin_candidates: list[datetime] = field(default_factory=list)  # order date-times
    schedule_starts: list[datetime] = field(default_factory=list)  # a schedule message's StartTime (its horizon)
    fallback_origins: list[datetime] = field(default_factory=list)  # message creation times

    def extend(self, other: Inputs) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


@dataclass
class ImportResult:
    """The problem, the report, and what else the input said (planned times, consumption actuals)."""

    problem: Problem
    report: ImportReport
    planned: list[ScheduledOperation] = field(default_factory=list)
    consumed: list[ConsumedRec] = field(default_factory=list)

    def planned_schedule(self) -> Schedule | None:
        """The schedule the input itself carried (e.g. a paichan export read back), if it covers every operation."""
        ops = {op.id for _, op in self.problem.operations()}
        if not ops or {p.operation for p in self.planned} != ops:
            return None
        return Schedule(problem=self.problem.name, operations=list(self.planned))
