"""Writing a schedule as B2MML (V0600 ProductionSchedule, V0700 OperationsSchedule) and as JSON.

The message is the *schedule*: one ProductionRequest / OperationsRequest per order, one
SegmentRequirement per operation with the chosen machine (EquipmentRequirement/EquipmentID),
the planned start and end (EarliestStartTime / LatestEndTime), the processing time (Duration),
pools as further EquipmentRequirements with a Quantity, consumed materials, and the product as a
Produced MaterialRequirement on the order's last operation. The schedule's StartTime is the
problem's origin, so reading the message back gives the same time axis. Every document is
validated against the packaged XSD before it is returned; docs/ADAPTERS.md lists the mapping.
``write_b2mml_per_plant`` splits the same message by plant (the first segment of a machine id).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from lxml import etree

from paichan.adapters.b2mml import NAMESPACE_OF, validate
from paichan.adapters.values import UNIT_MINUTES, as_utc, iso_duration, iso_utc
from paichan.domain import Operation, OperationStatus, Order, Problem, Schedule, ScheduledOperation


class ExportError(ValueError):
    """The schedule and problem cannot be written as asked (named operation, missing origin...)."""


# Orders with their (operation, scheduled entry) pairs, in the problem's order.
Pairs = list[tuple[Order, list[tuple[Operation, ScheduledOperation]]]]
DEFAULT_PLANT = "default"


def _pairs(problem: Problem, schedule: Schedule) -> Pairs:
    """Orders with their operations and scheduled entries, checking the schedule covers the problem exactly."""
    by_op = schedule.by_operation()
    known = {op.id for _, op in problem.operations()}
    extra = sorted(set(by_op) - known)
    if extra:
        raise ExportError(f"the schedule has operation(s) the problem does not: {', '.join(extra[:5])}")
    missing = [op.id for _, op in problem.operations() if op.id not in by_op]
    if missing:
        raise ExportError(f"the schedule lacks {len(missing)} operation(s) of the problem, e.g. {missing[0]}")
    out = [(o, [(op, by_op[op.id]) for op in o.operations]) for o in problem.orders if o.operations]
    if not out:
        raise ExportError("nothing to export: the problem has no operations")
    return out


class _Clock:
    def __init__(self, problem: Problem, origin: datetime | None):
        o = origin or problem.origin
        if o is None:
            raise ExportError("the problem has no origin, so its times cannot be written as date-times;"
                              " give --origin")
        if problem.time_unit not in UNIT_MINUTES:
            raise ExportError(f"time unit '{problem.time_unit}' has no length; B2MML needs minutes, seconds or hours")
        self.origin = as_utc(o)
        self.minutes = UNIT_MINUTES[problem.time_unit]

    def at(self, t: int) -> str:
        return iso_utc(self.origin + timedelta(minutes=t * self.minutes))

    def dur(self, t: int) -> str:
        return iso_duration(t * self.minutes)


def decimal_text(value: float) -> str:
    """xsd:decimal text (no exponent, no trailing zeros) that reads back as the same float."""
    s = format(Decimal(repr(float(value))), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def _local(op: Operation, order: Order) -> str:
    """The SegmentRequirement ID: the operation id without its 'ORDER/' prefix (the reader adds it back)."""
    prefix = f"{order.id}/"
    return op.id[len(prefix):] if op.id.startswith(prefix) else op.id


def plant_of(resource_id: str) -> str:
    """The plant of a resource: the first segment of ``plant/line/machine`` (the ids ``paichan run`` gives).

    A resource id without ``/`` belongs to plant ``"default"`` (Resource has no site attribute).
    """
    head, sep, _ = resource_id.partition("/")
    return head if sep and head else DEFAULT_PLANT


def write_b2mml(problem: Problem, schedule: Schedule, version: Literal["0600", "0700"],
                created: datetime | None = None, origin: datetime | None = None) -> bytes:
    """The schedule as a B2MML ``ProcessProductionSchedule`` (V0600) or ``ProcessOperationsSchedule`` (V0700)."""
    _check_version(version)
    clock = _Clock(problem, origin)
    return _document(problem, _pairs(problem, schedule), version, clock, created or datetime.now(UTC), problem.name)


def write_b2mml_per_plant(problem: Problem, schedule: Schedule, version: Literal["0600", "0700"],
                          origin: datetime | None = None, created: datetime | None = None) -> dict[str, bytes]:
    """One XSD-valid B2MML document per plant (:func:`plant_of` the machine), sorted by plant.

    Each holds the operations scheduled on that plant's machines, so every plant's MES gets its own
    dispatch; an order whose operations run in two plants is in both, each with its own segments (the
    Produced material stays on the order's last operation, wherever it runs). The schedule must cover the
    problem, as for :func:`write_b2mml`; the schedule ID is ``PROBLEM/PLANT``.
    """
    _check_version(version)
    clock, stamp = _Clock(problem, origin), created or datetime.now(UTC)
    by_plant: dict[str, Pairs] = {}
    for order, pairs in _pairs(problem, schedule):
        for plant in sorted({plant_of(s.resource) for _, s in pairs}):
            here = [(op, s) for op, s in pairs if plant_of(s.resource) == plant]
            by_plant.setdefault(plant, []).append((order, here))
    return {plant: _document(problem, orders, version, clock, stamp, f"{problem.name}/{plant}")
            for plant, orders in sorted(by_plant.items())}


def _check_version(version: str) -> None:
    if version not in ("0600", "0700"):
        raise ExportError(f"B2MML version {version} is not written (0600 or 0700)")


def _document(problem: Problem, orders: Pairs, version: Literal["0600", "0700"], clock: _Clock, created: datetime,
              schedule_id: str) -> bytes:
    """The B2MML message of ``orders`` (all of the schedule or one plant's part), validated against the XSD."""
    units = {m.id: m.unit for m in problem.materials}
    ns = NAMESPACE_OF[version]
    v7 = version == "0700"
    stamp = iso_utc(created)

    def E(parent: etree._Element, name: str, text: str | None = None, **attrs: str) -> etree._Element:
        el = etree.SubElement(parent, f"{{{ns}}}{name}", **attrs)
        if text is not None:
            el.text = text
        return el

    def quantity(parent: etree._Element, value: float, unit: str = "") -> None:
        q = E(parent, "Quantity")
        E(q, "QuantityString", decimal_text(value))
        E(q, "DataType", "decimal")
        if unit:
            E(q, "UnitOfMeasure", unit)

    noun = "OperationsSchedule" if v7 else "ProductionSchedule"
    root = etree.Element(f"{{{ns}}}Process{noun}", nsmap={None: ns}, releaseID="7.0" if v7 else "6.0")
    area = E(root, "ApplicationArea")
    E(E(area, "Sender"), "LogicalID", "paichan")
    E(area, "CreationDateTime", stamp)
    data = E(root, "DataArea")
    E(data, "Process")
    sched = E(data, noun)
    E(sched, "ID", schedule_id)
    end_all = max(s.end for _, pairs in orders for _, s in pairs)
    E(sched, "PublishedDate", stamp)
    E(sched, "StartTime", iso_utc(clock.origin))
    E(sched, "EndTime", clock.at(end_all))
    if v7:
        E(sched, "OperationsType", "Production")
        E(sched, "ScheduleState", "Released")
    for order, pairs in orders:
        req = E(sched, "OperationsRequest" if v7 else "ProductionRequest")
        E(req, "ID", order.id)
        E(req, "StartTime", clock.at(min(s.start for _, s in pairs)))
        E(req, "EndTime", clock.at(max(s.end for _, s in pairs)))
        if v7:
            E(req, "OperationsType", "Production")
        E(req, "Priority", str(order.priority))
        if v7:
            E(req, "RequestState", "Released")
            if order.product:
                E(req, "OperationsDefinitionID", order.product)
        for op, s in pairs:
            local = _local(op, order)
            mode = op.modes[s.mode]
            seg = E(req, "SegmentRequirement")
            E(seg, "ID", local)
            if not v7:
                E(seg, "ProcessSegmentID", op.name or local)
            E(seg, "EarliestStartTime", clock.at(s.start))
            E(seg, "LatestEndTime", clock.at(s.end))
            if v7:
                E(seg, "OperationsType", "Production")
                E(seg, "ProcessSegmentID", op.name or local)
            E(seg, "Duration", clock.dur(mode.duration))
            if v7:
                E(seg, "OperationsDefinitionID", order.product or order.id)
                E(seg, "OperationsSegmentID", op.name or local)
                E(seg, "SegmentState", {OperationStatus.STARTED: "Running", OperationStatus.DONE: "Completed"}.get(
                    op.status, "Released"))
            if s.setup_before:
                par = E(seg, "SegmentParameter") if v7 else E(E(seg, "ProductionParameter"), "Parameter")
                E(par, "ID", "SetupTime")
                val = E(par, "Value")
                E(val, "ValueString", clock.dur(s.setup_before))
                E(val, "DataType", "duration")
            uses = [(s.resource, 1), *((p.resource, p.amount) for p in mode.secondary)]
            for i, (rid, amount) in enumerate(uses):
                er = E(seg, "EquipmentRequirement")
                if v7:
                    E(er, "ID", f"{local}/equipment/{i + 1}")
                E(er, "EquipmentID", rid)
                if i:
                    quantity(er, amount)
            mats: list[tuple[str, float, str, str]] = [(m.material, m.quantity, units.get(m.material, ""), "Consumed")
                                                       for m in op.materials]
            if op.id == order.operations[-1].id and order.product:
                mats.append((order.product, order.quantity, "", "Produced"))
            for j, (mid, q, unit, use) in enumerate(mats):
                mr = E(seg, "MaterialRequirement")
                if v7:
                    E(mr, "ID", f"{local}/material/{j + 1}")
                E(mr, "MaterialDefinitionID", mid)
                E(mr, "MaterialUse", use)
                quantity(mr, q, unit)
            if not v7:
                E(seg, "SegmentState", "Released")
        if not v7:
            E(req, "RequestState", "Released")
    if not v7:
        E(sched, "ScheduleState", "Released")
    doc = etree.ElementTree(root)
    errors = validate(doc)
    if errors:
        raise RuntimeError("internal error: the B2MML written does not validate: " + "; ".join(errors[:5]))
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def schedule_json(problem: Problem, schedule: Schedule, origin: datetime | None = None) -> dict[str, Any]:
    """The schedule as a dispatch list with absolute UTC times (and the time units beside them)."""
    clock = _Clock(problem, origin)
    orders = _pairs(problem, schedule)
    out_orders, out_ops = [], []
    for order, pairs in orders:
        end = max(s.end for _, s in pairs)
        out_orders.append({
            "order": order.id, "product": order.product, "quantity": order.quantity, "priority": order.priority,
            "start": clock.at(min(s.start for _, s in pairs)), "end": clock.at(end),
            "due": clock.at(order.due) if order.due is not None else None,
            "deadline": clock.at(order.deadline) if order.deadline is not None else None,
            "late_by": max(0, end - order.due) if order.due is not None else 0,
        })
        for op, s in pairs:
            out_ops.append({
                "order": order.id, "operation": op.id, "segment": op.name or _local(op, order),
                "resource": s.resource, "secondary": [p.model_dump() for p in op.modes[s.mode].secondary],
                "start": clock.at(s.start), "end": clock.at(s.end), "start_units": s.start, "end_units": s.end,
                "duration": op.modes[s.mode].duration, "setup_before": s.setup_before,
                "materials": [m.model_dump() for m in op.materials], "status": op.status.value,
            })
    out_ops.sort(key=lambda d: (d["start_units"], d["resource"]))
    return {"problem": problem.name, "origin": iso_utc(clock.origin), "time_unit": problem.time_unit,
            "orders": out_orders, "operations": out_ops}
