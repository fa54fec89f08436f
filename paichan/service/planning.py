"""What a replan solves and what a planner reviews: the repair problem, pins, proposals, explanations.

Pure functions over domain types (no Redis, no threads), so the live service
(:mod:`paichan.service.engine`) and the repair benchmark use the same rules:

* **Repair problem.** The current problem (shop-floor events applied) with ``now``
  advanced; every planned operation outside the replan's scope, inside the freeze
  window, or under a planner's pin gets a :class:`~paichan.domain.Pin` at its released
  place, so the solver moves only what the replan may move. The released plan is the
  warm start and the anchor of the stability term.
* **Proposal.** A solved plan as a diff against the released one: operations moved,
  machines changed, orders that end later or earlier, KPIs before and after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paichan.adapters.b2mml_write import plant_of
from paichan.checker import check
from paichan.domain import (
    KPIs,
    ObjectiveName,
    Operation,
    OperationStatus,
    Order,
    Pin,
    Predecessor,
    Problem,
    Schedule,
    ScheduledOperation,
)

Scope = Literal["line", "plant", "all"]
_UNIT = {"minute": timedelta(minutes=1), "second": timedelta(seconds=1), "hour": timedelta(hours=1)}


def line_of(resource: str) -> str:
    """Line of a machine id ``plant/line/machine`` (``plant/line``); a bare id is its own line."""
    parts = resource.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else resource


def in_scope(resource: str, scope: Scope, target: str | None) -> bool:
    """Whether a machine is inside a replan's scope (``target`` names the line or plant)."""
    if scope == "all" or target is None:
        return True
    return (line_of(resource) if scope == "line" else plant_of(resource)) == target


class Clock:
    """Maps wall-clock datetimes to the problem's integer time units (from ``Problem.origin``)."""

    def __init__(self, problem: Problem) -> None:
        origin = problem.origin or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.origin = origin.replace(tzinfo=UTC) if origin.tzinfo is None else origin.astimezone(UTC)
        self.unit = _UNIT.get(problem.time_unit, timedelta(minutes=1))

    def units(self, t: datetime) -> int:
        """Whole units from the origin to ``t`` (rounded down)."""
        tt = t.replace(tzinfo=UTC) if t.tzinfo is None else t
        return int((tt - self.origin) // self.unit)

    def at(self, units: int) -> datetime:
        return self.origin + units * self.unit


# ----------------------------------------------------------------------------- pins


class PinRequest(BaseModel):
    """A planner's pin (``POST /pins``).

    * ``operation``: the operation stays where it is in the released plan, or, with
      ``resource``/``start`` given, goes there (a manual move the engine plans around);
    * ``sequence``: the planned operations on ``machine`` keep their released order and stay on it;
    * ``before``: every planned operation released to start before ``until`` stays where it is
      (a freeze window of the planner's choosing, kept as the freeze window is: work after an operation
      that has to move, e.g. one not started by now, is planned again and the replan's notes say so).

    Times are problem time units from the plan's origin, or RFC 3339 datetimes.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["operation", "sequence", "before"]
    operation: str | None = Field(default=None, min_length=1)
    resource: str | None = Field(default=None, min_length=1)
    start: int | datetime | None = None
    machine: str | None = Field(default=None, min_length=1)
    until: int | datetime | None = None
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _fields(self) -> PinRequest:
        need = {"operation": "operation", "sequence": "machine", "before": "until"}[self.kind]
        if getattr(self, need) is None:
            raise ValueError(f"a '{self.kind}' pin needs '{need}'")
        return self


class PinRecord(PinRequest):
    """A pin as stored: who set it and when; times resolved to problem units."""

    id: str
    created_by: str
    created_at: datetime


def resolve_time(value: int | datetime | None, clock: Clock) -> int | None:
    return clock.units(value) if isinstance(value, datetime) else value


def pin_place(pin: PinRequest, released: ScheduledOperation | None, clock: Clock) -> tuple[str | None, int | None]:
    """Where an ``operation`` pin puts its operation: the given machine/start, else the released one."""
    resource = pin.resource or (released.resource if released else None)
    start = resolve_time(pin.start, clock) if pin.start is not None else (released.start if released else None)
    return resource, start


def pin_findings(problem: Problem, released: Schedule, pin: PinRequest, clock: Clock) -> list[str]:
    """Why ``pin`` cannot be set on this plan (field named), or nothing."""
    ops = {op.id: (o, op) for o, op in problem.operations()}
    machines = {r.id for r in problem.resources}
    if pin.kind == "operation":
        assert pin.operation is not None
        if pin.operation not in ops:
            return [f"operation: unknown operation '{pin.operation}'"]
        order, op = ops[pin.operation]
        if op.status != OperationStatus.PLANNED:
            return [f"operation: '{op.id}' is {op.status.value}; the shop floor fixes it already"]
        resource, start = pin_place(pin, released.by_operation().get(op.id), clock)
        if resource is None or start is None:
            return ["start: the operation has no released place; give 'resource' and 'start'"]
        if resource not in {m.resource for m in op.modes}:
            return [f"resource: '{resource}' is not one of operation '{op.id}' machines "
                    f"({', '.join(sorted({m.resource for m in op.modes}))})"]
        earliest = max(order.release, problem.now)
        if start < earliest:
            return [f"start: {start} is before the operation's earliest start {earliest} (max of release and now)"]
    elif pin.kind == "sequence" and pin.machine not in machines:
        return [f"machine: unknown machine '{pin.machine}'"]
    return []


# ----------------------------------------------------------------------------- repair problem


class RepairSpec(BaseModel):
    """What one replan may change (``POST /replans``)."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope = "all"
    target: str | None = Field(default=None, description="the line (plant/line) or plant of a scoped replan")
    weights: dict[ObjectiveName, int] | None = Field(
        default=None, description="objective weights; default: the problem's, plus stability")
    freeze_minutes: int = Field(default=0, ge=0, description="work starting before now + this never moves")
    time_limit: float = Field(default=10.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _target(self) -> RepairSpec:
        if self.scope != "all" and not self.target:
            raise ValueError(f"a '{self.scope}' replan needs 'target' (the {self.scope} id)")
        if self.weights is not None and (any(w < 0 for w in self.weights.values())
                                         or not any(w > 0 for w in self.weights.values())):
            raise ValueError("weights: at least one positive weight, none negative")
        return self


def _preds(order: Order, op: Operation) -> list[Predecessor]:
    """The operation's predecessors, the implicit "previous operation of the order" made explicit."""
    if op.predecessors is not None:
        return op.predecessors
    k = next(i for i, x in enumerate(order.operations) if x.id == op.id)
    return [Predecessor(operation=order.operations[k - 1].id)] if k > 0 else []


def _shop_floor_busy(p: Problem) -> dict[str, list[tuple[int, int]]]:
    """Per machine, the time started and done work occupies (a started one at least until now)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for _, op in p.operations():
        if op.status == OperationStatus.PLANNED or op.actual is None:
            continue
        run = max((m.duration for m in op.modes if m.resource == op.actual.resource), default=0)
        end = op.actual.end if op.actual.end is not None else max(op.actual.start + run, p.now + 1)
        out.setdefault(op.actual.resource, []).append((op.actual.start, end))
    return out


def _fits(problem: Problem, resource: str, start: int, end: int) -> bool:
    """The released place still lies clear of the machine's breakdowns (a frozen place on a broken machine moves)."""
    res = next((r for r in problem.resources if r.id == resource), None)
    if res is None:
        return False
    return not any(d.start < max(end, start + 1) and d.end > start for d in res.calendar.downtimes
                   if d.kind.value == "breakdown")


def repair_problem(problem: Problem, released: Schedule, pins: list[PinRecord], now: int, spec: RepairSpec,
                   clock: Clock, stability: int = 1) -> tuple[Problem, list[str]]:
    """The problem a replan solves, and notes on pins that could not be kept.

    Planned work outside the scope or starting before ``now + freeze`` is pinned at its
    released place (unless a breakdown now covers that place, or it lies before now);
    the planner's pins are applied on top.
    """
    p = problem.model_copy(deep=True)
    p.now = max(p.now, now)
    rel = released.by_operation()
    notes: list[str] = []
    orders = {op.id: o for o, op in p.operations()}
    ops_by_id = {op.id: op for _, op in p.operations()}
    margin = {r.id: max([r.default_setup, *(x.time for x in r.setups)]) for r in p.resources}

    def place(op_id: str, resource: str, start: int, why: str) -> None:
        order, op = orders[op_id], next(x for x in orders[op_id].operations if x.id == op_id)
        if op.status != OperationStatus.PLANNED:
            return
        if start < max(order.release, p.now) or resource not in {m.resource for m in op.modes}:
            notes.append(f"{why}: '{op_id}' cannot stay at {resource} {start} (before now {p.now} or not its "
                         "machine); it is planned again")
            return
        op.pin = Pin(resource=resource, start=start, reason=why)

    freeze_until = p.now + spec.freeze_minutes
    # the planner's "before" pins are freeze windows of its choosing: kept under the same guards
    holds = sorted((resolve_time(pin.until, clock) or 0, pin.id) for pin in pins if pin.kind == "before")
    # the planner's manual moves, placed last; a successor kept in a window waits for them only where
    # the operation stays at its released place
    manual: dict[str, tuple[str, int]] = {}
    for pin in pins:
        if pin.kind == "operation" and pin.operation in orders:
            resource, start = pin_place(pin, rel.get(pin.operation), clock)
            if resource is not None and start is not None:
                manual[pin.operation] = (resource, start)
    for _, op in p.operations():
        r = rel.get(op.id)
        if op.status == OperationStatus.PLANNED and spec.scope != "all" and (r is None or in_scope(
                r.resource, spec.scope, spec.target)):
            local = [m for m in op.modes if in_scope(m.resource, spec.scope, spec.target)]
            op.modes = local or op.modes  # a local repair keeps the line's (plant's) work on its machines
    # automatic pins, in released start order, only where they still hold: clear of breakdowns and of
    # started/done work on the machine, and after every predecessor that is itself fixed or kept
    busy = _shop_floor_busy(p)
    kept_end: dict[str, int] = {}
    after_moving: list[str] = []
    for _, op in p.operations():
        if op.status != OperationStatus.PLANNED and op.actual is not None:
            run = max((m.duration for m in op.modes if m.resource == op.actual.resource), default=0)
            kept_end[op.id] = op.actual.end if op.actual.end is not None else op.actual.start + run
    for s in sorted(released.operations, key=lambda s: s.start):
        planned = ops_by_id.get(s.operation)
        if planned is None or planned.status != OperationStatus.PLANNED or s.start < p.now:
            continue
        op = planned
        if op.id in manual:
            if manual[op.id] == (s.resource, s.start):
                kept_end[op.id] = s.end
            continue
        held = next((pid for until, pid in holds if s.start < until), None)  # the earliest window holding it
        why = ("freeze window" if s.start < freeze_until else
               f"pin {held}" if held else
               None if in_scope(s.resource, spec.scope, spec.target) else
               f"outside the {spec.scope} replan of {spec.target}")
        if why is None or not _fits(p, s.resource, s.start, s.end):
            continue
        gap = margin[s.resource]
        if any(a - gap < s.end and s.start < b + gap for a, b in busy.get(s.resource, ())):
            continue  # the shop floor has something else on this machine now
        preds = _preds(orders[op.id], op)
        if all(q.operation in kept_end and kept_end[q.operation] + q.min_lag <= s.start for q in preds):
            place(op.id, s.resource, s.start, why)
            if op.pin is not None:
                kept_end[op.id] = s.end
        else:
            after_moving.append(op.id)
    if after_moving:
        notes.append(f"{len(after_moving)} operation(s) outside the scope, in the freeze window or before a "
                     f"'before' pin's time follow work that moves (e.g. '{after_moving[0]}'): planned again")

    for pin in pins:
        if pin.kind == "operation" and pin.operation in manual:
            place(pin.operation, *manual[pin.operation], f"pin {pin.id}")
        elif pin.kind == "sequence":
            _keep_sequence(p, released, pin, notes)

    weights = dict(spec.weights or p.objective.weights)
    if p.objective.lexicographic is None:
        weights.setdefault(ObjectiveName.STABILITY, stability)
        p.objective = p.objective.model_copy(update={"weights": weights})
    return p, notes


def reference_for(repaired: Problem, problem: Problem, released: Schedule) -> Schedule:
    """The released plan with the repair problem's mode indices (a scoped replan narrows modes to the
    scope's machines); an operation whose released mode is not among them is left out (no warm start)."""
    orig = {op.id: op for _, op in problem.operations()}
    rep = {op.id: op for _, op in repaired.operations()}
    out = []
    for s in released.operations:
        o, r = orig.get(s.operation), rep.get(s.operation)
        if o is None or r is None or s.mode >= len(o.modes) or o.modes[s.mode] not in r.modes:
            continue
        out.append(s.model_copy(update={"mode": r.modes.index(o.modes[s.mode])}))
    return Schedule(problem=released.problem, operations=out)


def original_modes(problem: Problem, repaired: Problem, schedule: Schedule) -> Schedule:
    """``schedule`` (solved on the repair problem, whose operations may have fewer modes) with mode
    indices of ``problem``'s operations."""
    orig = {op.id: op for _, op in problem.operations()}
    rep = {op.id: op for _, op in repaired.operations()}
    out = schedule.model_copy(deep=True)
    for s in out.operations:
        if s.operation in orig and s.operation in rep and s.mode < len(rep[s.operation].modes):
            s.mode = orig[s.operation].modes.index(rep[s.operation].modes[s.mode])
    return out


def _keep_sequence(p: Problem, released: Schedule, pin: PinRecord, notes: list[str]) -> None:
    """The machine's planned operations stay on it, each after the one before it in the released plan."""
    planned = {op.id: op for _, op in p.operations() if op.status == OperationStatus.PLANNED}
    seq = sorted((s for s in released.operations if s.resource == pin.machine and s.operation in planned),
                 key=lambda s: s.start)
    orders = {op.id: o for o, op in p.operations()}
    prev: str | None = None
    for s in seq:
        op = planned[s.operation]
        op.modes = [m for m in op.modes if m.resource == pin.machine]
        if prev is not None:
            if op.predecessors is None:  # materialise "after the previous operation of the order"
                k = next(i for i, x in enumerate(orders[op.id].operations) if x.id == op.id)
                op.predecessors = [Predecessor(operation=orders[op.id].operations[k - 1].id)] if k > 0 else []
            op.predecessors.append(Predecessor(operation=prev))
        prev = op.id
    if not seq:
        notes.append(f"pin {pin.id}: no planned operation on '{pin.machine}'")


# ----------------------------------------------------------------------------- proposals


class Move(BaseModel):
    operation: str
    order: str
    from_resource: str | None
    to_resource: str
    from_start: int | None
    to_start: int
    delta: int | None  # to_start - from_start


class OrderChange(BaseModel):
    order: str
    due: int | None
    before_end: int | None
    after_end: int
    delta: int | None


class Diff(BaseModel):
    moved: list[Move]
    machines_changed: int
    later: list[OrderChange]
    earlier: list[OrderChange]
    sum_abs_delta: int
    tardiness_worse: list[str]  # orders whose tardiness grows


def diff(problem: Problem, before: Schedule, after: Schedule) -> Diff:
    """What changes from ``before`` (the released plan) to ``after``."""
    b = before.by_operation()
    moved: list[Move] = []
    for s in after.operations:
        old = b.get(s.operation)
        if old is None or old.start != s.start or old.resource != s.resource:
            moved.append(Move(operation=s.operation, order=s.order, to_resource=s.resource, to_start=s.start,
                              from_resource=old.resource if old else None, from_start=old.start if old else None,
                              delta=s.start - old.start if old else None))
    ends_b: dict[str, int] = {}
    for s in before.operations:
        ends_b[s.order] = max(ends_b.get(s.order, 0), s.end)
    ends_a: dict[str, int] = {}
    for s in after.operations:
        ends_a[s.order] = max(ends_a.get(s.order, 0), s.end)
    due = {o.id: o.due for o in problem.orders}
    later, earlier, worse = [], [], []
    for oid, end in sorted(ends_a.items()):
        prev = ends_b.get(oid)
        change = OrderChange(order=oid, due=due.get(oid), before_end=prev, after_end=end,
                             delta=None if prev is None else end - prev)
        if prev is None or end > prev:
            later.append(change)
        elif end < prev:
            earlier.append(change)
        d = due.get(oid)
        if d is not None and max(0, end - d) > (max(0, prev - d) if prev is not None else 0):
            worse.append(oid)
    return Diff(moved=moved, machines_changed=sum(1 for m in moved if m.from_resource not in (None, m.to_resource)),
                later=later, earlier=earlier, sum_abs_delta=sum(abs(m.delta or 0) for m in moved),
                tardiness_worse=worse)


def kpis_of(problem: Problem, schedule: Schedule) -> tuple[KPIs | None, list[str]]:
    """The checker's KPIs and violations of ``schedule`` on ``problem`` (the released plan may have gone stale)."""
    report = check(problem, schedule)
    return report.kpis, [str(v) for v in report.violations]


# ----------------------------------------------------------------------------- explain


class ExplainIndex:
    """The lookups :func:`explain_order` needs, built once per plan (a page explains every late order)."""

    def __init__(self, problem: Problem, schedule: Schedule) -> None:
        self.by_op = schedule.by_operation()
        self.ops = {op.id: op for _, op in problem.operations()}
        self.owner = {op.id: o for o, op in problem.operations()}
        self.mats = {m.id: m for m in problem.materials}
        self.on_machine: dict[str, list[tuple[int, int, str]]] = {}
        for s in schedule.operations:
            self.on_machine.setdefault(s.resource, []).append((s.start, s.end, s.operation))
        for v in self.on_machine.values():
            v.sort()


def explain_order(problem: Problem, schedule: Schedule, order_id: str,
                  index: ExplainIndex | None = None) -> dict[str, object]:
    """Where an order is and why it ends when it does: its critical chain, bottleneck and material waits.

    The chain is walked back from the order's last operation: each link is what its start waited
    for (the order's previous operation, the machine's previous operation plus setup, a material
    receipt, the release or now, or a calendar gap).
    """
    order = next((o for o in problem.orders if o.id == order_id), None)
    if order is None:
        raise KeyError(order_id)
    ix = index or ExplainIndex(problem, schedule)
    by_op, ops, owner, mats, on_machine = ix.by_op, ix.ops, ix.owner, ix.mats, ix.on_machine
    status = [{"operation": op.id, "status": op.status.value,
               "machine": by_op[op.id].resource if op.id in by_op else None,
               "start": by_op[op.id].start if op.id in by_op else None,
               "end": by_op[op.id].end if op.id in by_op else None} for op in order.operations]
    end = max((by_op[op.id].end for op in order.operations if op.id in by_op), default=None)
    chain: list[dict[str, object]] = []
    waited: list[dict[str, object]] = []
    cur = max((op.id for op in order.operations if op.id in by_op), key=lambda i: by_op[i].end, default=None)
    seen: set[str] = set()
    while cur is not None and cur not in seen:
        seen.add(cur)
        s, op = by_op[cur], ops[cur]
        link: dict[str, object] = {"operation": cur, "machine": s.resource, "start": s.start, "end": s.end}
        nxt: str | None = None
        # the predecessor whose end (plus its lag) is this start: the order waited for it
        tight = [q.operation for q in _preds(owner[cur], op)
                 if q.operation in by_op and by_op[q.operation].end + q.min_lag >= s.start]
        prev_m = [x for x in on_machine.get(s.resource, []) if x[1] <= s.start and x[2] != cur]
        if tight:
            nxt, link["waited_for"] = tight[0], f"previous operation {tight[0]}"
        elif prev_m and prev_m[-1][1] + s.setup_before >= s.start:
            nxt = prev_m[-1][2]
            link["waited_for"] = f"machine {s.resource} busy with {nxt}" + (
                f" then setup {s.setup_before}" if s.setup_before else "")
        else:
            for use in op.materials:
                m = mats.get(use.material)
                if m and any(r.time == s.start for r in m.receipts):
                    link["waited_for"] = f"material {m.id} received at {s.start}"
                    waited.append({"material": m.id, "operation": cur, "received": s.start})
            if "waited_for" not in link:
                link["waited_for"] = ("release/now" if s.start <= max(order.release, problem.now)
                                      else "working time (calendar) or a free slot")
        chain.append(link)
        cur = nxt
    counts: dict[str, int] = {}
    for link in chain:
        counts[str(link["machine"])] = counts.get(str(link["machine"]), 0) + 1
    bottleneck = max(counts, key=lambda k: counts[k]) if counts else None
    return {"order": order.id, "due": order.due, "priority": order.priority, "end": end,
            "late_by": None if end is None or order.due is None else max(0, end - order.due),
            "operations": status, "critical_chain": chain, "bottleneck": bottleneck, "material_waits": waited}
